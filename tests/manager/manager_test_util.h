// Shared set-up for manager tests: a fake host backend, and a way to spawn the same
// behaviour as a real process (hostd_test_proc) or as an in-process proc.
#ifndef HOSTD_TESTS_MANAGER_MANAGER_TEST_UTIL_H_
#define HOSTD_TESTS_MANAGER_MANAGER_TEST_UTIL_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/small_file.h"
#include "channel/event_loop.h"
#include "channel/listener.h"
#include "gtest/gtest.h"
#include "manager/launcher.h"
#include "manager/local_proc_manager.h"
#include "manager/process_proc_manager.h"
#include "testing/eventually.h"
#include "testing/temp_dir.h"

namespace hostd::manager {

using ::hostd::testing::Eventually;
using ::hostd::testing::HangGuard;

// What a test proc does, in either manager.
struct Behaviour {
  int exit_after_ms = -1;  // exit on its own
  int exit_code = 0;
  bool ignore_stop = false;
  bool ignore_sigterm = false;               // process manager only
  std::vector<std::string> extra_args = {};  // process manager only
};

enum class Kind { kProcess, kLocal };

inline std::string KindName(Kind k) { return k == Kind::kProcess ? "Process" : "Local"; }

class ManagerHarness {
 public:
  explicit ManagerHarness(Kind kind, ProcessProcManagerOptions opts = {}) : kind_(kind) {
    backend_ = *channel::Listener::Serve(*loop_, channel::ChannelAddr::Local(0), host_inbox_);
    if (kind == Kind::kProcess) {
      // The process manager's procs dial the backend over a real socket.
      unix_backend_ = *channel::Listener::Serve(*loop_, *channel::ChannelAddr::Parse("unix:"), host_inbox_);
      opts.state_dir = dir_.path();
      auto m = ProcessProcManager::Create(opts);
      EXPECT_TRUE(m.ok()) << m.status();
      process_ = *std::move(m);
    } else {
      local_ = std::make_unique<LocalProcManager>();
    }
  }

  ProcManager& manager() { return kind_ == Kind::kProcess ? static_cast<ProcManager&>(*process_) : *local_; }
  BulkTerminate& bulk() { return kind_ == Kind::kProcess ? static_cast<BulkTerminate&>(*process_) : *local_; }
  ProcessProcManager& process() { return *process_; }
  channel::Inbox& host_inbox() { return host_inbox_; }
  const testing::TempDir& dir() const { return dir_; }
  const channel::ChannelAddr& backend() const {
    return kind_ == Kind::kProcess ? unix_backend_->addr() : backend_->addr();
  }

  proc::ProcId Id(const std::string& name) { return *proc::ProcId::Parse("unix:@test-frontend," + name); }

  SpawnSpec Spec(const Behaviour& b) {
    SpawnSpec spec;
    if (kind_ == Kind::kProcess) {
      spec.program = HOSTD_TEST_PROC;
      if (b.exit_after_ms >= 0) spec.args.push_back(absl::StrCat("--exit-after-ms=", b.exit_after_ms));
      spec.args.push_back(absl::StrCat("--exit-code=", b.exit_code));
      if (b.ignore_stop) spec.args.push_back("--ignore-stop");
      if (b.ignore_sigterm) spec.args.push_back("--ignore-sigterm");
      spec.args.insert(spec.args.end(), b.extra_args.begin(), b.extra_args.end());
      return spec;
    }
    spec.local_main = [b](proc::ProcRuntime& rt, const absl::Notification& killed) {
      absl::Time until =
          b.exit_after_ms >= 0 ? absl::Now() + absl::Milliseconds(b.exit_after_ms) : absl::InfiniteFuture();
      if (b.ignore_stop) {
        killed.WaitForNotificationWithDeadline(until);
        return b.exit_code;
      }
      (void)rt.WaitForStopRequest(until);
      return b.exit_code;
    };
    return spec;
  }

  absl::StatusOr<std::shared_ptr<ProcHandle>> Spawn(const std::string& name, const Behaviour& b = {}) {
    return manager().Spawn(Id(name), backend(), Spec(b));
  }

 private:
  Kind kind_;
  testing::TempDir dir_;
  std::unique_ptr<channel::EventLoop> loop_ = channel::EventLoop::Start("test-host");
  channel::Inbox host_inbox_;
  std::unique_ptr<channel::Listener> backend_;
  std::unique_ptr<channel::Listener> unix_backend_;
  std::unique_ptr<ProcessProcManager> process_;
  std::unique_ptr<LocalProcManager> local_;
};

// Children of this process (live or zombie), from /proc.
inline std::vector<pid_t> ChildrenOfThisProcess() {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    std::string s = base::ReadSmallFile(entry.path() / "stat").value_or("");
    size_t close = s.rfind(')');
    if (close == std::string::npos) continue;
    std::vector<std::string> fields = absl::StrSplit(s.substr(close + 2), ' ');
    int ppid = 0;
    if (fields.size() > 1 && absl::SimpleAtoi(fields[1], &ppid) && ppid == getpid()) out.push_back(pid);
  }
  return out;
}

// True when no child process is left, not even a zombie, but `except` (the janitor).
inline bool NoChildrenLeft(pid_t except = 0) {
  for (pid_t p : ChildrenOfThisProcess()) {
    if (p != except) return false;
  }
  return true;
}

// True when `pid` is gone (or a zombie: it ran nothing any more).
inline bool ProcessGone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  absl::StatusOr<std::string> stat = base::ReadSmallFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return true;  // it went away while we looked
  const std::string& s = *stat;
  size_t close = s.rfind(')');
  return close != std::string::npos && close + 2 < s.size() && s[close + 2] == 'Z';
}

inline std::string ReadFile(const std::string& path) { return base::ReadSmallFile(path, 64 << 20).value_or(""); }

// Runs the test `name` of this binary again as pid 1 of a private pid namespace
// (with its own /proc), where pids can be steered through ns_last_pid; returns
// its output. Unavailable if this host does not allow such a namespace. The test
// body checks getpid() == 1 to know it is the run inside.
inline absl::StatusOr<std::string> RunAsPidOneOfANewNamespace(const std::string& name, const testing::TempDir& dir) {
  absl::StatusOr<std::string> unshare = ResolveProgram("unshare", "/usr/bin:/bin");
  if (!unshare.ok()) return absl::UnavailableError(unshare.status().message());
  std::string out_path = dir.Join("pidns.out");
  base::UniqueFd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  LaunchRequest req;
  req.path = *unshare;
  req.argv = {req.path, "-pf", "--mount-proc", std::filesystem::read_symlink("/proc/self/exe").string(),
              absl::StrCat("--gtest_filter=", name)};
  req.envp = {"PATH=/usr/bin:/bin"};
  req.stdout_fd = out.get();
  req.stderr_fd = out.get();
  absl::StatusOr<Launched> child = Launch(req);
  if (!child.ok()) return child.status();
  pollfd pfd{child->pidfd.get(), POLLIN, 0};
  if (::poll(&pfd, 1, absl::ToInt64Milliseconds(absl::Seconds(150))) != 1) {
    ::syscall(SYS_pidfd_send_signal, child->pidfd.get(), SIGKILL, nullptr, 0);
  }
  siginfo_t info{};
  ::waitid(P_PIDFD, static_cast<id_t>(child->pidfd.get()), &info, WEXITED);
  std::string text = ReadFile(out_path);
  if (text.find("unshare failed") != std::string::npos) return absl::UnavailableError(text);
  if (info.si_code != CLD_EXITED || info.si_status != 0) {
    return absl::InternalError(absl::StrCat("the test in a pid namespace failed (wait code ", info.si_code, ", status ",
                                            info.si_status, "):\n", text));
  }
  return text;
}

// For tests that must own the pid space: in the test process, reruns test `self`
// as pid 1 of a private pid namespace, checks that it passed there (or skips the
// test where namespaces are not allowed) and returns false: the caller returns. In
// the rerun it returns true: the caller runs the body.
inline bool RunningAsPidOne(const std::string& self) {
  if (::getpid() == 1) return true;
  testing::TempDir dir;
  absl::StatusOr<std::string> out = RunAsPidOneOfANewNamespace(self, dir);
  if (absl::IsUnavailable(out.status())) {
    [&] { GTEST_SKIP() << "no private pid namespace here: " << out.status(); }();
    return false;
  }
  EXPECT_TRUE(out.ok()) << out.status();
  if (out.ok()) {
    EXPECT_NE(out->find("[       OK ] " + self), std::string::npos) << *out;
  }
  return false;
}

}  // namespace hostd::manager

#endif  // HOSTD_TESTS_MANAGER_MANAGER_TEST_UTIL_H_
