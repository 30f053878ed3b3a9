// The orphan reaper (manager/orphan_reaper.h) through ProcessProcManager: the zombies
// of procs' orphans are reaped, nobody else's, without signal handlers.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <functional>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/launcher.h"
#include "manager/proc_mark.h"
#include "manager_test_util.h"
#include "testing/status_matchers.h"

namespace hostd::manager {
namespace {

using ::hostd::testing::IsOk;
using ::testing::HasSubstr;

// Zombie children of this process but `except` (the janitor).
std::vector<pid_t> ZombieChildren(pid_t except) {
  std::vector<pid_t> out;
  for (pid_t p : ChildrenOfThisProcess()) {
    if (p != except && ProcessGone(p)) out.push_back(p);
  }
  return out;
}

SpawnSpec Shell(const std::string& script) {
  SpawnSpec spec;
  spec.program = "/bin/sh";
  spec.args = {"-c", script};
  spec.readiness = ReadinessMode::kExec;
  return spec;
}

class OrphanReapingTest : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(CgroupsOnOff, OrphanReapingTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Cgroups" : "ProcessGroups"; });

TEST_P(OrphanReapingTest, DaemonisedOrphansAreReapedWhileTheProcRunsAndAfter) {
  ManagerHarness h(Kind::kProcess, {.use_cgroups = GetParam()});
  pid_t janitor = h.process().janitor_pid();
  // The subshell forks `sleep` and exits: the orphan comes back to this process,
  // which must reap it when it exits, while the proc still runs. The reaper sweeps
  // asynchronously, on the manager's loop.
  const std::string pid_file = h.dir().Join("orphan.pid");
  auto handle = h.manager().Spawn(h.Id("daemonizer"), h.backend(),
                                  Shell("(sleep 0.1 & echo $! > " + pid_file + "); exec sleep 30"));
  ASSERT_THAT(handle, IsOk());
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(ReadFile(pid_file), "\n"); }));
  int orphan = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(pid_file)), &orphan));
  // Reaped, not merely exited: a zombie stays listed in /proc.
  EXPECT_TRUE(Eventually([&] { return !std::filesystem::exists(absl::StrCat("/proc/", orphan)); }))
      << "orphan " << orphan << " left a zombie while the proc runs";
  EXPECT_TRUE(ZombieChildren(janitor).empty()) << "zombie while the proc runs";
  ASSERT_THAT((*handle)->Terminate(absl::Seconds(30), "test"), IsOk());
  EXPECT_TRUE(NoChildrenLeft(janitor));
}

// ScanMarked finds exactly the processes whose environment holds the token's mark as
// an entry of its own, wherever that entry is and however large the environment.
TEST(ProcMarkTest, ScanFindsExactlyTheMarkedProcesses) {
  const std::string token = NewMarkToken();
  ASSERT_EQ(token.size(), kMarkTokenLength);
  EXPECT_NE(token, NewMarkToken());
  const std::string mark = absl::StrCat(kEnvProcMark, "=", MarkValue(token, 7));
  const std::string big(100000, 'x');  // the mark straddles read buffers after it
  const std::vector<std::vector<std::string>> envs = {
      {mark},                                                                           // 0: found, serial 7
      {"A=1", "BIG=" + big, absl::StrCat(kEnvProcMark, "=", MarkValue(token, 12345))},  // 1: found, serial 12345
      {absl::StrCat("OTHER=", mark)},                                                   // 2: inside another value
      {absl::StrCat(kEnvProcMark, "=", MarkValue(NewMarkToken(), 7))},                  // 3: another manager's
      {mark + "x"},                                                                     // 4: not a serial
      {"A=1"},                                                                          // 5: no mark at all
  };
  std::vector<pid_t> pids;
  for (const auto& env : envs) {
    std::vector<char*> envp;
    for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
      char* argv[] = {const_cast<char*>("sleep"), const_cast<char*>("30"), nullptr};
      ::execve("/bin/sleep", argv, envp.data());
      ::_exit(127);
    }
    ASSERT_GT(pid, 0);
    pids.push_back(pid);
  }
  // Until each has exec'd (before that, its environ is this test's).
  auto exec_done = [&] {
    for (pid_t p : pids) {
      if (!absl::StartsWith(ReadFile(absl::StrCat("/proc/", p, "/comm")), "sleep")) return false;
    }
    return true;
  };
  ASSERT_TRUE(Eventually(exec_done));
  std::vector<std::pair<pid_t, uint64_t>> found;
  int n = ScanMarked(
      token.c_str(),
      [](pid_t pid, uint64_t serial, void* context) {
        static_cast<std::vector<std::pair<pid_t, uint64_t>>*>(context)->emplace_back(pid, serial);
      },
      &found);
  for (pid_t p : pids) {
    ::kill(p, SIGKILL);
    ::waitpid(p, nullptr, 0);
  }
  EXPECT_EQ(n, 2);
  EXPECT_THAT(found, ::testing::UnorderedElementsAre(std::pair<pid_t, uint64_t>(pids[0], 7),
                                                     std::pair<pid_t, uint64_t>(pids[1], 12345)));
}

// A descendant that calls setsid() leaves its proc's process group: group signals
// miss it. It dies with its proc all the same, with cgroups or without (the mark in
// its environment, manager/proc_mark.h), and its zombie is reaped.
TEST_P(OrphanReapingTest, SetsidEscapeesDieWithTheirProc) {
  ManagerHarness h(Kind::kProcess, {.use_cgroups = GetParam()});
  const std::string orphaned = h.dir().Join("orphaned.pid");
  const std::string child = h.dir().Join("child.pid");
  const std::string bystander = h.dir().Join("bystander.pid");
  // One escapee orphaned at once (its parent subshell exits), one still the proc's child.
  auto handle = h.manager().Spawn(
      h.Id("escaper"), h.backend(),
      Shell("(setsid sh -c 'echo $$ > " + orphaned + "; exec sleep 300' &); setsid sh -c 'echo $$ > " + child +
            "; exec sleep 300' & exec sleep 300"));
  ASSERT_THAT(handle, IsOk());
  // Another proc's escapee: it must survive the first proc's end.
  auto other =
      h.manager().Spawn(h.Id("other"), h.backend(),
                        Shell("(setsid sh -c 'echo $$ > " + bystander + "; exec sleep 300' &); exec sleep 300"));
  ASSERT_THAT(other, IsOk());
  std::vector<pid_t> escapees;
  for (const std::string& f : {orphaned, child, bystander}) {
    ASSERT_TRUE(Eventually([&] { return absl::StrContains(ReadFile(f), "\n"); })) << f;
    int pid = 0;
    ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(f)), &pid));
    escapees.push_back(pid);
    ASSERT_FALSE(ProcessGone(pid));
    ASSERT_EQ(::getsid(pid), pid) << "it leads a session of its own";
  }
  ASSERT_THAT((*handle)->Terminate(absl::Seconds(30), "test"), IsOk());
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(Eventually([&] { return !std::filesystem::exists(absl::StrCat("/proc/", escapees[i])); }))
        << "escapee " << escapees[i] << " outlived its proc, or its zombie was not reaped";
  }
  EXPECT_FALSE(ProcessGone(escapees[2])) << "another proc's escapee was killed";
  ASSERT_THAT((*other)->Terminate(absl::Seconds(30), "test"), IsOk());
  EXPECT_TRUE(Eventually([&] { return !std::filesystem::exists(absl::StrCat("/proc/", escapees[2])); }));
  EXPECT_TRUE(Eventually([&] { return NoChildrenLeft(h.process().janitor_pid()); }));
}

TEST_P(OrphanReapingTest, ChildTheProcNeverReapedIsReapedWhenItEnds) {
  ManagerHarness h(Kind::kProcess, {.use_cgroups = GetParam()});
  // sh forks `sleep 0.1`, then execs `sleep 0.5`, which never reaps it.
  auto handle = h.manager().Spawn(h.Id("zparent"), h.backend(), Shell("sleep 0.1 & exec sleep 0.5"));
  ASSERT_THAT(handle, IsOk());
  ASSERT_THAT((*handle)->Wait(HangGuard()), IsOk());
  EXPECT_TRUE(Eventually([&] { return NoChildrenLeft(h.process().janitor_pid()); }));
}

// Orphans reparented to this process exit while the main thread (the one they are
// reparented to) sits in poll(): no signal handler of the manager's may interrupt it.
TEST(OrphanReapingSignalsTest, OrphansExitingDoNotInterruptOtherThreadsSystemCalls) {
  ManagerHarness h(Kind::kProcess);
  std::string pids = h.dir().Join("orphans");
  auto handle = h.manager().Spawn(
      h.Id("orphans"), h.backend(),
      Shell("for i in 1 2 3 4 5 6 7 8 9 10; do (sleep 0.05 & echo $! >> " + pids + "); done; exec sleep 30"));
  ASSERT_THAT(handle, IsOk());
  auto orphans = [&] {
    std::vector<pid_t> out;
    for (absl::string_view line : absl::StrSplit(ReadFile(pids), '\n', absl::SkipEmpty())) {
      int pid = 0;
      if (absl::SimpleAtoi(line, &pid)) out.push_back(pid);
    }
    return out;
  };
  int eintr = 0;
  auto poll_until = [&](const std::function<bool()>& done) {
    for (absl::Time guard = HangGuard(); !done() && absl::Now() < guard;) {
      if (::poll(nullptr, 0, 10) < 0 && errno == EINTR) ++eintr;
    }
    return done();
  };
  ASSERT_TRUE(poll_until([&] { return orphans().size() == 10; }));
  // Reaped, not merely exited: a zombie stays listed in /proc.
  EXPECT_TRUE(poll_until([&] {
    for (pid_t p : orphans()) {
      if (std::filesystem::exists(absl::StrCat("/proc/", p))) return false;
    }
    return true;
  }));
  EXPECT_EQ(eintr, 0) << "poll() in the thread the orphans came back to failed with EINTR";
  EXPECT_FALSE((*handle)->status().terminal());
}

std::atomic<int> embedder_sigchlds{0};
void CountSigchld(int) { ++embedder_sigchlds; }

TEST(OrphanReapingSignalsTest, TheEmbeddersSigchldHandlerStaysInstalled) {
  struct sigaction mine {
  }, saved{};
  mine.sa_handler = CountSigchld;
  mine.sa_flags = SA_RESTART;
  ::sigemptyset(&mine.sa_mask);
  ASSERT_EQ(::sigaction(SIGCHLD, &mine, &saved), 0);
  auto handler_now = [] {
    struct sigaction now {};
    ::sigaction(SIGCHLD, nullptr, &now);
    return now.sa_handler;
  };
  {
    ManagerHarness h(Kind::kProcess);
    EXPECT_EQ(handler_now(), &CountSigchld) << "after the manager was created";
    auto handle = h.Spawn("child", {.exit_after_ms = 0});
    ASSERT_THAT(handle, IsOk());
    ASSERT_THAT((*handle)->Wait(HangGuard()), IsOk());
    EXPECT_EQ(handler_now(), &CountSigchld) << "after a proc ended";
  }
  EXPECT_EQ(handler_now(), &CountSigchld) << "after the manager was destroyed";
  EXPECT_TRUE(Eventually([] { return embedder_sigchlds.load() > 0; }))
      << "the proc's exit reached the embedder's handler";
  ::sigaction(SIGCHLD, &saved, nullptr);
}

// An orphan may get the pid of a proc leader that has ended (pids are recycled); it
// is an orphan like any other and must be reaped while its proc still runs.
TEST(OrphanPidReuseTest, OrphanWithAnEndedLeadersPidIsReaped) {
  const std::string self = "OrphanPidReuseTest.OrphanWithAnEndedLeadersPidIsReaped";
  if (!RunningAsPidOne(self)) return;
  // Pid 1 of a private pid namespace: nothing else here takes pids.
  ManagerHarness h(Kind::kProcess, {.use_cgroups = false});
  auto first = h.manager().Spawn(h.Id("first"), h.backend(), Shell("exit 0"));
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT((*first)->Wait(HangGuard()), IsOk());
  const pid_t ended_leader = (*first)->status().pid;
  ASSERT_EQ(::mkfifo(h.dir().Join("go").c_str(), 0600), 0);
  // A subshell that, once told to go, forks `sleep` and exits: `sleep` is orphaned
  // and comes back to this process.
  auto second =
      h.manager().Spawn(h.Id("second"), h.backend(),
                        Shell("(echo > forked; read x < go; sleep 0.1 & echo $! > orphan.pid); exec sleep 300"));
  ASSERT_THAT(second, IsOk());
  ASSERT_TRUE(Eventually([&] { return std::filesystem::exists(h.dir().Join("forked")); }));
  { std::ofstream("/proc/sys/kernel/ns_last_pid") << ended_leader - 1; }  // the next pid is the ended leader's
  { std::ofstream(h.dir().Join("go")) << "go\n"; }
  ASSERT_TRUE(Eventually([&] { return !ReadFile(h.dir().Join("orphan.pid")).empty(); }));
  int orphan = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(h.dir().Join("orphan.pid"))), &orphan));
  ASSERT_EQ(orphan, ended_leader) << "the orphan must reuse the ended leader's pid for this test to mean anything";
  // It exits after 0.1 s; only its parent, this process, can make it disappear.
  EXPECT_TRUE(Eventually([&] { return !std::filesystem::exists(absl::StrCat("/proc/", orphan)); }))
      << "orphan " << orphan << " (an ended leader's pid) was left a zombie";
  EXPECT_FALSE((*second)->status().terminal()) << "reaped while its proc runs";
  ASSERT_THAT((*second)->Kill(), IsOk());
  EXPECT_TRUE(NoChildrenLeft(h.process().janitor_pid()));
}

}  // namespace
}  // namespace hostd::manager
