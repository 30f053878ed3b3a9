// control_bench: hostd's control plane and memory (scenarios 8-9 of bench/README.md).
//
//   8. gRPC SpawnProc latency (p50, sequential) against the library call
//      Host::Spawn on the same manager; ListProcs with 1000 procs: its server time
//      (the hostd-server-time-us trailer the service sends) and round trip.
//   9. The real hostd binary's resident size, idle and with 1000 ready procs.
//
//   build/default/bench/control_bench [--quick] [--filter=SpawnProc|ListProcs|resident]
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/small_file.h"
#include "base/unique_fd.h"
#include "base/unix_addr.h"
#include "base/lock_checks.h"
#include "bench/bench_util.h"
#include "daemon/host.h"
#include "daemon/host_service.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/server_builder.h"
#include "manager/process_proc_manager.h"
#include "testing/fake_proc_manager.h"
#include "testing/temp_dir.h"

namespace hostd::bench {
namespace {

constexpr char kChild[] = HOSTD_TEST_PROC;
constexpr char kHostd[] = HOSTD_BIN;

// An in-process control plane on a unix socket.
struct Server {
  Server(manager::ProcManager& mgr, manager::BulkTerminate& bulk, const std::string& sock)
      : host(*daemon::Host::Start(mgr, bulk, {})), service(*host, {}) {
    grpc::ServerBuilder b;
    b.AddListeningPort("unix:" + sock, grpc::InsecureServerCredentials());
    b.RegisterService(&service);
    server = b.BuildAndStart();
    stub = v1::HostService::NewStub(grpc::CreateChannel("unix:" + sock, grpc::InsecureChannelCredentials()));
  }
  ~Server() { server->Shutdown(); }
  std::unique_ptr<daemon::Host> host;
  daemon::HostService service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::HostService::Stub> stub;
};

std::pair<Samples, Samples> SpawnLatency(int n) {
  testing::TempDir dir;
  auto mgr = *manager::ProcessProcManager::Create({.state_dir = dir.Join("state")});
  Server s(*mgr, *mgr, dir.Join("grpc.sock"));
  manager::SpawnSpec spec;
  spec.program = kChild;
  Samples lib, rpc;
  for (int i = 0; i < n; ++i) {
    absl::Time t0 = absl::Now();
    if (!s.host->Spawn(absl::StrCat("lib", i), spec).ok()) std::fprintf(stderr, "library spawn failed\n");
    lib.Add(absl::ToDoubleSeconds(absl::Now() - t0));
    v1::SpawnProcRequest req;
    req.set_name(absl::StrCat("rpc", i));
    req.mutable_spec()->set_program(kChild);
    v1::SpawnProcResponse resp;
    grpc::ClientContext ctx;
    t0 = absl::Now();
    if (!s.stub->SpawnProc(&ctx, req, &resp).ok()) std::fprintf(stderr, "grpc spawn failed\n");
    rpc.Add(absl::ToDoubleSeconds(absl::Now() - t0));
  }
  s.host->TerminateChildren(absl::ZeroDuration(), 64, "bench");
  return {lib, rpc};
}

// ListProcs over `procs` (fake) procs: {the server's own time (its
// hostd-server-time-us trailer), the client's round trip}, medians in seconds.
std::pair<double, double> ListTime(int procs, int reps) {
  testing::TempDir dir;
  testing::FakeProcManager mgr;
  Server s(mgr, mgr, dir.Join("grpc.sock"));
  for (int i = 0; i < procs; ++i) (void)s.host->Spawn(absl::StrCat("p", i), {});
  Samples server, rtt;
  for (int r = 0; r < reps; ++r) {
    v1::ListProcsResponse lr;
    grpc::ClientContext ctx;
    absl::Time t0 = absl::Now();
    (void)s.stub->ListProcs(&ctx, v1::ListProcsRequest(), &lr);
    rtt.Add(absl::ToDoubleSeconds(absl::Now() - t0));
    auto it = ctx.GetServerTrailingMetadata().find("hostd-server-time-us");
    int64_t us = 0;
    if (it != ctx.GetServerTrailingMetadata().end() &&
        absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &us)) {
      server.Add(us * 1e-6);
    }
  }
  s.host->TerminateChildren(absl::ZeroDuration(), 64, "bench");
  return {server.Median(), rtt.Median()};
}

int64_t RssKiB(pid_t pid) {
  std::string text = base::ReadSmallFile(absl::StrCat("/proc/", pid, "/status")).value_or("");
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    int64_t kib = 0;
    if (absl::ConsumePrefix(&line, "VmRSS:") && absl::ConsumeSuffix(&line, "kB") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kib)) {
      return kib;
    }
  }
  return -1;
}

// Starts the real hostd and returns {idle RSS, RSS with `procs` ready procs}.
std::pair<int64_t, int64_t> HostdMemory(int procs) {
  testing::TempDir dir;
  std::string notify = dir.Join("notify");
  base::UniqueFd nfd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  absl::StatusOr<base::UnixAddr> sa = base::UnixAddr::Create(notify);
  if (sa.ok()) bind(nfd.get(), sa->get(), sa->size());
  std::string grpc = "unix:" + dir.Join("h.sock");
  pid_t pid = fork();
  if (pid == 0) {
    setenv("NOTIFY_SOCKET", notify.c_str(), 1);
    std::string fe = "unix:" + dir.Join("fe.sock"), be = "unix:" + dir.Join("be.sock"), st = dir.Join("state");
    execl(kHostd, kHostd, "--grpc", grpc.c_str(), "--frontend", fe.c_str(), "--backend", be.c_str(), "--state-dir",
          st.c_str(), "--log-level", "warn", nullptr);
    _exit(127);
  }
  pollfd p{nfd.get(), POLLIN, 0};
  if (poll(&p, 1, 30000) != 1) return {-1, -1};
  auto stub = v1::HostService::NewStub(grpc::CreateChannel(grpc, grpc::InsecureChannelCredentials()));
  {
    v1::HostInfo info;
    grpc::ClientContext ctx;
    (void)stub->GetHostInfo(&ctx, v1::GetHostInfoRequest(), &info);  // the gRPC server warm
  }
  int64_t idle = RssKiB(pid);
  v1::SpawnProcsRequest req;
  req.set_max_in_flight(16);
  for (int i = 0; i < procs; ++i) {
    v1::SpawnProcRequest* one = req.add_procs();
    one->set_name(absl::StrCat("m", i));
    one->mutable_spec()->set_program(kChild);
  }
  v1::SpawnProcsResponse resp;
  grpc::ClientContext ctx;
  (void)stub->SpawnProcs(&ctx, req, &resp);
  for (const auto& r : resp.results()) {
    if (r.code() != 0) {
      std::fprintf(stderr, "memory: %d spawns failed; first: %s: %s\n", resp.failed(), r.name().c_str(),
                   r.error().c_str());
      break;
    }
  }
  int64_t loaded = RssKiB(pid);
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  return {idle, loaded};
}

}  // namespace
}  // namespace hostd::bench

int main(int argc, char** argv) {
  hostd::base::SkipLockOrderChecks();
  using namespace hostd::bench;
  const bool quick = QuickMode(argc, argv);
  const std::string filter = FilterArg(argc, argv);  // "SpawnProc", "ListProcs" or "resident"
  auto want = [&](const char* what) { return filter.empty() || filter == what; };
  signal(SIGPIPE, SIG_IGN);

  if (want("SpawnProc")) {
    auto [lib, rpc] = SpawnLatency(quick ? 3 : 50);
    Row("8. SpawnProc over gRPC vs the library call: p50", Ms(lib.Median()), Ms(rpc.Median()),
        rpc.Median() / lib.Median(), "-", true);
  }
  if (want("ListProcs")) {
    const int procs = quick ? 50 : 1000;
    auto [list, list_rtt] = ListTime(procs, quick ? 5 : 200);
    Row(absl::StrFormat("8. ListProcs(%d): server time (client round trip %s)", procs, Ms(list_rtt)), "1 ms (goal)",
        Ms(list), list / 1e-3, "<= 1 ms", list <= 1e-3);
  }
  if (!want("resident")) return 0;

  const int mem_procs = quick ? 20 : 1000;
  auto [idle, loaded] = HostdMemory(mem_procs);
  double idle_mib = idle / 1024.0;
  double per_proc = static_cast<double>(loaded - idle) / mem_procs;
  Row("9. hostd resident size, idle", "50 MiB (goal)", absl::StrFormat("%.1f MiB", idle_mib), idle_mib / 50,
      "<= 50 MiB", idle_mib <= 50);
  Row(absl::StrFormat("9. hostd resident size per proc (%d ready procs)", mem_procs), "20 KiB (goal)",
      absl::StrFormat("%.1f KiB", per_proc), per_proc / 20, "<= 20 KiB", per_proc <= 20);
  return 0;
}
