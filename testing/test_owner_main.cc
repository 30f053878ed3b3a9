// hostd_test_owner STATE_DIR N TEST_PROC: owns a ProcessProcManager with N procs
// (each with a grandchild and a setsid() grandchild), prints what it made, then
// waits to be killed. The test that SIGKILLs it checks nothing survives.
//   stdout: "janitor <pid>", "proc <pid>" per proc, "ready"
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "manager/process_proc_manager.h"

int main(int argc, char** argv) {
  int n = 0;
  if (argc != 4 || !absl::SimpleAtoi(argv[2], &n)) {
    std::fprintf(stderr, "usage: hostd_test_owner STATE_DIR N TEST_PROC\n");
    return 2;
  }
  using namespace hostd;
  auto mgr = manager::ProcessProcManager::Create({.state_dir = argv[1]});
  if (!mgr.ok()) {
    std::fprintf(stderr, "%s\n", std::string(mgr.status().message()).c_str());
    return 1;
  }
  std::printf("janitor %d\n", (*mgr)->janitor_pid());
  channel::ChannelAddr backend = *channel::ChannelAddr::Parse("unix:@hostd-test-owner-backend");
  for (int i = 0; i < n; ++i) {
    manager::SpawnSpec spec;
    spec.program = argv[3];
    spec.args = {"--grandchild", "--grandchild-setsid"};
    auto h = (*mgr)->Spawn(*proc::ProcId::Parse(absl::StrCat("unix:@owner,c", i)), backend, spec);
    if (!h.ok()) {
      std::fprintf(stderr, "%s\n", std::string(h.status().message()).c_str());
      return 1;
    }
    std::printf("proc %d\n", (*h)->status().pid);
  }
  std::printf("ready\n");
  std::fflush(stdout);
  while (true) pause();
}
