#include "manager/process_proc_manager.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <limits>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/log.h"
#include "boost/asio/posix/stream_descriptor.hpp"
#include "channel/sender.h"
#include "manager/launcher.h"
#include "manager/proc_handle_base.h"
#include "proc/bootstrap.h"

namespace hostd::manager {

namespace asio = boost::asio;
using proc::ProcStatus;

namespace {

constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";
constexpr size_t kMaxReadyReport = 4096;

// The last `bytes` of the file, but nothing before offset `start`.
std::string ReadTail(const std::string& path, off_t start, size_t bytes) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st {};
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || st.st_size < start) return "";
  off_t from = std::max<off_t>(start, st.st_size - static_cast<off_t>(bytes));
  std::string out(static_cast<size_t>(st.st_size - from), '\0');
  ssize_t n = ::pread(fd.get(), out.data(), out.size(), from);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// The state for a proc's next incarnation, on a sealed memfd at offset 0: the proc
// reads it as it is, and nothing else can change it.
absl::StatusOr<base::UniqueFd> StateMemfd(const std::string& name, const std::string& state) {
  base::UniqueFd fd(::memfd_create(absl::StrCat("hostd-state-", name).c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return Errno("memfd for the initial state");
  for (size_t off = 0; off < state.size();) {
    ssize_t n = ::write(fd.get(), state.data() + off, state.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("writing the initial state");
    off += static_cast<size_t>(n);
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    return Errno("sealing the initial state");
  }
  if (::lseek(fd.get(), 0, SEEK_SET) != 0) return Errno("rewinding the initial state");
  return fd;
}

}  // namespace

// One OS process. State touched by the exit monitor and readiness readers lives on
// the manager's loop; what other threads read is under mu_ or in the status cell.
class ProcessHandle final : public ProcHandleBase, public std::enable_shared_from_this<ProcessHandle> {
 public:
  ProcessHandle(ProcessProcManager* mgr, proc::ProcId id, std::string command)
      : ProcHandleBase(std::move(id)), mgr_(mgr), loop_thread_(mgr->loop_thread_), command_(std::move(command)) {}

  // On the manager's loop thread (a watcher that Kills or Terminates its proc) the
  // exit monitor cannot run while this waits, so the exit is observed right here.
  absl::StatusOr<ProcStatus> Wait(absl::Time deadline) override {
    if (std::this_thread::get_id() == loop_thread_ && exit_watch_ != nullptr) ObserveExitHere(deadline);
    return ProcHandleBase::Wait(deadline);
  }

  // Set by Spawn before the launch (which orders it before any use on the loop).
  void set_cgroup_dir(std::string dir) { cgroup_dir_ = std::move(dir); }
  // Where this spawn's output begins in the stderr log (Spawn, before the launch).
  void set_stderr_start(off_t offset) { stderr_start_ = offset; }

  const std::string& command() const { return command_; }
  const std::string& cgroup_dir() const { return cgroup_dir_; }

  std::string ready_problem() const {
    absl::MutexLock lock(&mu_);
    return ready_problem_;
  }

  // Loop thread: the child exec'd.
  void Started(pid_t pid, base::UniqueFd pidfd) {
    {
      absl::MutexLock lock(&mu_);
      pid_ = pid;
    }
    if (mgr_->janitor_) mgr_->janitor_->Track(pid);  // the proc's process group
    mgr_->reaper_->LeaderStarted(pid);
    (void)cell().Transition(ProcStatus::Running(pid, absl::Now()));
    exit_watch_ = std::make_unique<asio::posix::stream_descriptor>(mgr_->loop_->context(), pidfd.release());
    AwaitExit();
  }

  // Loop thread: READY <addr> on the pipe, or EOF.
  void WatchHandshake(base::UniqueFd read_end) {
    ready_pipe_ = std::make_unique<asio::posix::stream_descriptor>(mgr_->loop_->context(), read_end.release());
    ReadReport();
  }

  // Loop thread: "READY=1" datagrams on the notify socket.
  void WatchNotify(base::UniqueFd sock) {
    notify_ = std::make_unique<asio::posix::stream_descriptor>(mgr_->loop_->context(), sock.release());
    AwaitNotify();
  }

  // The manager's destructor: SIGKILL now, if it has not ended; its exit is observed
  // by the monitor or, at the latest, by ReleaseWithManager.
  void KillWithoutWaiting() {
    if (status().terminal()) return;
    (void)cell().Transition(ProcStatus::Stopping());
    SignalKill();
  }

  // The manager's destructor, before it releases the handle on the loop: from now on
  // calls from other threads do not reach the manager (they find the proc ended).
  void DetachFromManager() {
    absl::MutexLock lock(&mgr_mu_);
    mgr_gone_ = true;
  }

  // Loop thread, when the manager goes (after DetachFromManager): a leader whose exit
  // the monitor has not seen yet (the loop was busy, say) is reaped here, within
  // kKillWait, and its real terminal status published; then everything bound to the
  // loop is dropped. The handle ends terminal whatever happens, so a caller that
  // still holds it never waits forever.
  void ReleaseWithManager() {
    if (exit_watch_ != nullptr) {
      ::syscall(SYS_pidfd_send_signal, exit_watch_->native_handle(), SIGKILL, nullptr, 0);
      if (!ObserveExitHere(absl::Now() + kKillWait)) {
        base::Log().warn("proc {} (pid {}) did not end after SIGKILL; its manager is going without it",
                         proc_id().ToString(), status().pid);
      }
    }
    exit_watch_.reset();
    ready_pipe_.reset();
    notify_.reset();
    ReleaseAgentLink();
    (void)cell().Transition(ProcStatus::Failed("its manager was destroyed before its exit was observed"));
  }

  void MarkReady(std::optional<channel::ChannelAddr> addr) {
    ProcStatus ready;
    ready.state = proc::ProcState::kReady;
    ready.addr = std::move(addr);
    (void)cell().Transition(std::move(ready));
  }

 protected:
  bool RequestStop(absl::string_view reason) override {
    absl::ReaderMutexLock lock(&mgr_mu_);
    if (mgr_gone_) return false;  // its loop is gone: no agent to ask
    return SendAgentStop(*mgr_->loop_, reason);
  }

  void SignalTerm() override { Signal(SIGTERM); }

  void SignalKill() override {
    Signal(SIGKILL);
    if (!cgroup_dir_.empty()) CgroupTree::KillAll(cgroup_dir_);
  }

  // Its cgroup's processes, or its process group's. Read under mu_ so that the
  // leader cannot be reaped meanwhile, which would free its pid (and group id).
  ProcUsage Usage() const override {
    absl::MutexLock lock(&mu_);
    if (pid_ <= 0 || leader_exited_) return {};
    return ReadUsage(cgroup_dir_.empty() ? ProcessGroupMembers(pid_) : CgroupTree::Pids(cgroup_dir_));
  }

 private:
  // Until OnExit takes over, the leader is not reaped (at worst it is a zombie), so
  // the group's id is still its own: it cannot have been reused.
  void Signal(int sig) {
    absl::MutexLock lock(&mu_);
    if (pid_ > 0 && !leader_exited_) ::kill(-pid_, sig);
  }

  void ReadReport() {
    ready_buf_.resize(kMaxReadyReport);
    auto self = shared_from_this();
    ready_pipe_->async_read_some(
        asio::buffer(ready_buf_.data() + ready_len_, ready_buf_.size() - ready_len_),
        [self](boost::system::error_code ec, size_t n) {
          if (ec == asio::error::operation_aborted || !self->ready_pipe_) return;  // the proc ended first
          self->ready_len_ += n;
          absl::string_view got(self->ready_buf_.data(), self->ready_len_);
          size_t nl = got.find('\n');
          if (nl == absl::string_view::npos && !ec && self->ready_len_ < kMaxReadyReport) return self->ReadReport();
          self->ready_pipe_->close();
          if (nl == absl::string_view::npos) {
            if (self->ready_len_ > 0) self->SetReadyProblem(absl::StrCat("incomplete readiness report \"", got, "\""));
            return;  // EOF without a report: the exit monitor says what happened
          }
          absl::string_view line = got.substr(0, nl);
          if (!absl::ConsumePrefix(&line, "READY ")) {
            return self->SetReadyProblem(absl::StrCat("malformed readiness report \"", line, "\""));
          }
          absl::StatusOr<channel::ChannelAddr> addr = channel::ChannelAddr::Parse(line);
          if (!addr.ok()) return self->SetReadyProblem(absl::StrCat("readiness report: ", addr.status().message()));
          self->MarkReady(*addr);
        });
  }

  void AwaitNotify() {
    auto self = shared_from_this();
    notify_->async_wait(asio::posix::descriptor_base::wait_read, [self](boost::system::error_code ec) {
      if (ec || !self->notify_) return;
      char buf[4096];
      while (true) {
        ssize_t n = ::recv(self->notify_->native_handle(), buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0) break;
        for (absl::string_view line : absl::StrSplit(absl::string_view(buf, static_cast<size_t>(n)), '\n')) {
          if (line == "READY=1") {
            self->notify_->close();
            return self->MarkReady(std::nullopt);
          }
        }
      }
      self->AwaitNotify();
    });
  }

  void SetReadyProblem(std::string problem) {
    absl::MutexLock lock(&mu_);
    ready_problem_ = std::move(problem);
  }

  // Loop thread, instead of the monitor: waits until the leader exits or `deadline`,
  // then handles the exit as the monitor would. True if it exited.
  bool ObserveExitHere(absl::Time deadline) {
    const int pidfd = exit_watch_->native_handle();
    pollfd exited{pidfd, POLLIN, 0};
    while (true) {
      absl::Duration left = std::max(deadline - absl::Now(), absl::ZeroDuration());
      int ms = left == absl::InfiniteDuration() ? -1 : static_cast<int>(std::min<int64_t>(
                                                            absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))),
                                                            std::numeric_limits<int>::max()));
      int ready = ::poll(&exited, 1, ms);
      if (ready > 0 || ms == 0 || (ready < 0 && errno != EINTR)) break;
    }
    siginfo_t info{};
    if (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) {
      return false;
    }
    OnExit({});
    return true;
  }

  // Loop thread: waits for the leader's pidfd to become readable, then looks at its
  // exit without reaping it (OnExit does, once the rest of its group is killed). The
  // wait may complete with no exit behind it (epoll can report a stale readiness,
  // e.g. for a descriptor recycled while a launched child still held a copy of the
  // one closed): then it waits again. A blocking wait here would stall the loop, and
  // every spawn with it, until that proc ended.
  void AwaitExit() {
    auto self = shared_from_this();
    exit_watch_->async_wait(asio::posix::descriptor_base::wait_read, [self](boost::system::error_code ec) {
      if (ec == asio::error::operation_aborted || self->exit_watch_ == nullptr) return;  // released by the manager
      if (!ec) {
        siginfo_t info{};
        const int pidfd = self->exit_watch_->native_handle();
        if (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
          ec = boost::system::error_code(errno, boost::system::system_category());
        } else if (info.si_pid == 0) {
          return self->AwaitExit();  // still running
        }
      }
      self->OnExit(ec);
    });
  }

  // Loop thread: the leader has exited and is not reaped yet (or the wait failed:
  // `ec`). Its zombie keeps its process group's id from being reused while the rest
  // of the proc is killed; only then is it reaped.
  void OnExit(boost::system::error_code ec) {
    pid_t pid;
    {
      absl::MutexLock lock(&mu_);
      leader_exited_ = true;  // from here on this alone signals the group
      pid = pid_;
    }
    const int pidfd = exit_watch_->native_handle();
    // What the proc leaves behind goes too, before anyone is told it ended.
    std::vector<pid_t> rest;
    if (!cgroup_dir_.empty()) {
      rest = CgroupTree::Pids(cgroup_dir_);
      CgroupTree::KillAll(cgroup_dir_);
    } else if (!ec) {
      ::kill(-pid, SIGKILL);  // without ec the leader's zombie still holds the id
    }
    siginfo_t leader{};
    if (!ec && ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &leader, WEXITED | WNOHANG) != 0) {
      ec = boost::system::error_code(errno, boost::system::system_category());
    }
    exit_watch_.reset();
    siginfo_t member{};
    if (!cgroup_dir_.empty()) {
      for (pid_t p : rest) {
        ::waitid(P_PID, static_cast<id_t>(p), &member, WEXITED);  // ECHILD unless it was reparented to us
      }
      // Its group's zombies that had come back to us (cgroup.procs lists no zombie).
      while (!ec && ::waitid(P_PGID, static_cast<id_t>(pid), &member, WEXITED | WNOHANG) == 0 && member.si_pid != 0) {
        member = {};
      }
      if (absl::Status s = CgroupTree::Remove(cgroup_dir_); !s.ok()) base::Log().warn("{}", s.message());
    } else if (!ec) {
      while (::waitid(P_PGID, static_cast<id_t>(pid), &member, WEXITED) == 0) {
      }
    }
    if (mgr_->janitor_) mgr_->janitor_->Untrack(pid);
    // Anything else of the proc's (a setsid() orphan's zombie) goes in a sweep soon.
    mgr_->reaper_->LeaderReaped(pid);
    std::string tail =
        ReadTail(mgr_->LogPath(proc_id().name(), true), stderr_start_, mgr_->options_.stderr_tail_bytes);
    ProcStatus end;
    if (ec) {
      end = ProcStatus::Failed(absl::StrCat("exit monitor failed: ", ec.message()));
    } else if (leader.si_code == CLD_KILLED || leader.si_code == CLD_DUMPED) {
      end = ProcStatus::Killed(leader.si_status, leader.si_code == CLD_DUMPED, std::move(tail));
    } else {
      end = ProcStatus::Stopped(leader.si_status, std::move(tail));
    }
    if (ready_pipe_) ready_pipe_->close();
    if (notify_) notify_->close();
    ReleaseAgentLink();
    mgr_->procs_.Remove(proc_id().name(), this);
    (void)cell().Transition(std::move(end));
  }

  // Loop-thread code runs only while the manager exists; other threads reach it
  // only through RequestStop, which checks mgr_gone_.
  ProcessProcManager* const mgr_;
  const std::thread::id loop_thread_;  // the manager's loop's
  absl::Mutex mgr_mu_;
  bool mgr_gone_ ABSL_GUARDED_BY(mgr_mu_) = false;
  const std::string command_;
  std::string cgroup_dir_;
  off_t stderr_start_ = 0;

  mutable absl::Mutex mu_;
  pid_t pid_ ABSL_GUARDED_BY(mu_) = 0;
  bool leader_exited_ ABSL_GUARDED_BY(mu_) = false;  // OnExit has taken over
  std::string ready_problem_ ABSL_GUARDED_BY(mu_);

  // Loop thread only. The leader's pidfd, until it is reaped.
  std::unique_ptr<asio::posix::stream_descriptor> exit_watch_;
  std::unique_ptr<asio::posix::stream_descriptor> ready_pipe_;
  std::string ready_buf_;
  size_t ready_len_ = 0;
  std::unique_ptr<asio::posix::stream_descriptor> notify_;
};

ProcessProcManager::ProcessProcManager(ProcessProcManagerOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<ProcessProcManager>> ProcessProcManager::Create(ProcessProcManagerOptions options) {
  if (options.state_dir.empty()) return absl::InvalidArgumentError("ProcessProcManager needs a state directory");
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(options.state_dir) / "logs", ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create state directory ", options.state_dir, "/logs: ", ec.message()));
  }
  // Orphaned descendants of procs come back to us instead of escaping to init.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return Errno("prctl(PR_SET_CHILD_SUBREAPER)");
  std::unique_ptr<ProcessProcManager> mgr(new ProcessProcManager(std::move(options)));
  if (mgr->options_.use_cgroups) {
    absl::StatusOr<std::unique_ptr<CgroupTree>> tree = CgroupTree::Create();
    if (tree.ok()) {
      mgr->cgroups_ = *std::move(tree);
    } else {
      mgr->cgroup_fallback_reason_ = std::string(tree.status().message());
      base::Log().info("procs use process groups without cgroups: {}", mgr->cgroup_fallback_reason_);
    }
  } else {
    mgr->cgroup_fallback_reason_ = "disabled by configuration";
  }
  if (mgr->options_.janitor) {
    // Forked before the loop thread exists, while this process is as small as it gets.
    absl::StatusOr<std::unique_ptr<Janitor>> janitor =
        Janitor::Start(mgr->cgroups_ ? mgr->cgroups_->parent() : std::string());
    if (!janitor.ok()) {
      mgr->loop_ = channel::EventLoop::Start("procs");  // the destructor runs on a whole manager
      return janitor.status();
    }
    mgr->janitor_ = *std::move(janitor);
  }
  mgr->loop_ = channel::EventLoop::Start("procs");
  ProcessProcManager* raw = mgr.get();
  mgr->loop_->RunSync([raw] {
    raw->loop_thread_ = std::this_thread::get_id();
    raw->reaper_ = std::make_unique<OrphanReaper>(raw->loop_->context(),
                                                  raw->cgroups_ ? raw->cgroups_->parent() : std::string(),
                                                  raw->janitor_pid());
  });
  return mgr;
}

ProcessProcManager::~ProcessProcManager() {
  std::vector<std::shared_ptr<ProcessHandle>> handles;
  {
    absl::MutexLock lock(&mu_);
    for (auto& weak : handed_out_) {
      if (auto h = weak.lock()) handles.push_back(std::move(h));
    }
    handed_out_.clear();
  }
  // Every proc still running gets SIGKILL at once; then each is waited for on the
  // loop, where its exit is observed, however busy the loop was meanwhile.
  for (auto& h : handles) h->KillWithoutWaiting();
  for (auto& h : handles) h->DetachFromManager();
  loop_->RunSync([&] {
    for (auto& h : handles) h->ReleaseWithManager();
    reaper_.reset();  // on its loop thread, which it belongs to
  });
  handles.clear();
  loop_.reset();
  janitor_.reset();  // nothing is left for it to sweep; it exits and is reaped
  cgroups_.reset();
}

std::string ProcessProcManager::LogPath(const std::string& name, bool stderr_log) const {
  return absl::StrCat(options_.state_dir, "/logs/", name, stderr_log ? ".stderr" : ".stdout");
}

std::vector<std::shared_ptr<ProcHandle>> ProcessProcManager::Procs() const { return procs_.All(); }

TerminateSummary ProcessProcManager::TerminateAll(absl::Duration grace, int max_in_flight, absl::string_view reason) {
  return TerminateHandles(Procs(), grace, max_in_flight, reason);
}

absl::StatusOr<std::shared_ptr<ProcHandle>> ProcessProcManager::Spawn(const proc::ProcId& id,
                                                                      const channel::ChannelAddr& forwarder,
                                                                      const SpawnSpec& spec) {
  const absl::Time deadline =
      spec.ready_timeout > absl::ZeroDuration() ? absl::Now() + spec.ready_timeout : absl::InfiniteFuture();
  const std::string& name = id.name();
  auto fail = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat("cannot spawn proc \"", name, "\": ", s.message()));
  };

  // The environment, explicitly.
  absl::flat_hash_map<std::string, std::string> env;
  for (const std::string& var : spec.inherit_env) {
    if (const char* v = ::getenv(var.c_str()); v != nullptr) env[var] = v;
  }
  for (const auto& [k, v] : spec.env) {
    if (k.empty() || k.find('=') != std::string::npos) {
      return fail(absl::InvalidArgumentError(absl::StrCat("environment variable name \"", k, "\" is invalid")));
    }
    env[k] = v;
  }
  if (spec.initial_state.has_value() && spec.initial_state->size() > proc::kMaxStateBytes) {
    return fail(absl::InvalidArgumentError(absl::StrCat("initial state is ", spec.initial_state->size(),
                                                        " bytes; at most ", proc::kMaxStateBytes, " allowed")));
  }
  std::string path_list = env.contains("PATH") ? env["PATH"] : kDefaultPath;
  absl::StatusOr<std::string> program = ResolveProgram(spec.program, path_list);
  if (!program.ok()) return fail(program.status());
  std::vector<std::string> argv = {spec.program};
  argv.insert(argv.end(), spec.args.begin(), spec.args.end());
  std::string command = absl::StrJoin(argv, " ");

  // Claim the name before touching anything of the proc's (its log files above all).
  auto handle = std::make_shared<ProcessHandle>(this, id, command);
  if (absl::Status added = procs_.Add(name, handle); !added.ok()) return added;
  std::string cgroup_dir;
  // From here on a failure ends the handle (anyone who saw it in Procs() sees it
  // end) and frees the name.
  auto abandon = [&](const absl::Status& s) {
    procs_.Remove(name, handle.get());
    if (!cgroup_dir.empty()) (void)CgroupTree::Remove(cgroup_dir);
    (void)handle->cell().Transition(ProcStatus::Failed(std::string(s.message())));
    return s;
  };

  env[proc::kEnvProcId] = id.ToString();
  env[proc::kEnvHostBackend] = forwarder.ToString();
  env[proc::kEnvParentPid] = absl::StrCat(::getpid());
  base::UniqueFd ready_read, ready_write, notify_sock, state_fd;
  if (spec.readiness == ReadinessMode::kHandshake) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return abandon(fail(Errno("readiness pipe")));
    ready_read.reset(p[0]);
    ready_write.reset(p[1]);
    env[proc::kEnvReadyFd] = absl::StrCat(kReadyFd);
    if (spec.initial_state.has_value()) {
      absl::StatusOr<base::UniqueFd> memfd = StateMemfd(name, *spec.initial_state);
      if (!memfd.ok()) return abandon(fail(memfd.status()));
      state_fd = *std::move(memfd);
      env[proc::kEnvStateFd] = absl::StrCat(kStateFd);
    }
  } else if (spec.readiness == ReadinessMode::kNotify) {
    static std::atomic<uint64_t> serial{0};
    std::string abstract = absl::StrCat("hostd-notify-", ::getpid(), "-", ++serial);
    notify_sock.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path + 1, abstract.data(), abstract.size());
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + abstract.size());
    if (!notify_sock.valid() || ::bind(notify_sock.get(), reinterpret_cast<sockaddr*>(&sa), len) != 0) {
      return abandon(fail(Errno("notify socket")));
    }
    env["NOTIFY_SOCKET"] = absl::StrCat("@", abstract);
  }
  std::vector<std::string> envp;
  for (const auto& [k, v] : env) envp.push_back(absl::StrCat(k, "=", v));

  const int log_mode = O_WRONLY | O_CREAT | O_CLOEXEC | (spec.append_logs ? O_APPEND : O_TRUNC);
  base::UniqueFd out(::open(LogPath(name, false).c_str(), log_mode, 0640));
  base::UniqueFd err(::open(LogPath(name, true).c_str(), log_mode, 0640));
  struct stat err_stat {};
  if (!out.valid() || !err.valid() || ::fstat(err.get(), &err_stat) != 0) {
    return abandon(fail(Errno(absl::StrCat("log files under ", options_.state_dir, "/logs"))));
  }
  handle->set_stderr_start(err_stat.st_size);
  if (cgroups_ != nullptr) {
    absl::StatusOr<std::string> dir = cgroups_->CreateChild(name);
    if (!dir.ok()) return abandon(fail(dir.status()));
    cgroup_dir = *dir;
    handle->set_cgroup_dir(cgroup_dir);
  }
  {
    absl::MutexLock lock(&mu_);
    std::erase_if(handed_out_, [](const auto& w) { return w.expired(); });
    handed_out_.push_back(handle);
  }

  LaunchRequest req;
  req.path = *program;
  req.argv = std::move(argv);
  req.envp = std::move(envp);
  req.cwd = spec.cwd.empty() ? options_.state_dir : spec.cwd;
  req.stdout_fd = out.get();
  req.stderr_fd = err.get();
  req.ready_fd = ready_write.get();
  req.state_fd = state_fd.get();
  if (!cgroup_dir.empty()) req.cgroup_procs = cgroup_dir + "/cgroup.procs";
  absl::Status launched;
  // Launch from the loop thread: PR_SET_PDEATHSIG follows the launching thread.
  loop_->RunSync([&] {
    absl::StatusOr<Launched> l = Launch(req);
    if (!l.ok()) {
      launched = l.status();
      return;
    }
    handle->Started(l->pid, std::move(l->pidfd));
    if (ready_read.valid()) handle->WatchHandshake(std::move(ready_read));
    if (notify_sock.valid()) handle->WatchNotify(std::move(notify_sock));
    if (spec.readiness == ReadinessMode::kExec) handle->MarkReady(std::nullopt);
  });
  ready_write.reset();  // the child holds the only write end now
  state_fd.reset();     // and the only copy of its state
  if (!launched.ok()) {
    return abandon(absl::Status(launched.code(), absl::StrCat("cannot spawn proc \"", name, "\" (command: ",
                                                              command, "): ", launched.message())));
  }

  absl::Status ready = handle->Ready(deadline);
  if (ready.ok()) return handle;
  // Transactional: whatever it is doing, it goes, and nothing of it stays registered.
  bool timed_out = absl::IsDeadlineExceeded(ready);
  absl::StatusOr<ProcStatus> end = handle->Kill();
  std::string problem = handle->ready_problem();
  std::string what = timed_out ? absl::StrCat("did not become ready within ", absl::FormatDuration(spec.ready_timeout),
                                              " and was killed")
                               : absl::StrCat("ended before it was ready");
  std::string status = end.ok() ? end->ToString() : std::string(end.status().message());
  std::string tail = end.ok() && !end->stderr_tail.empty() ? absl::StrCat("; stderr: ", end->stderr_tail) : "";
  return absl::Status(timed_out ? absl::StatusCode::kDeadlineExceeded : absl::StatusCode::kFailedPrecondition,
                      absl::StrCat("proc \"", name, "\" ", what, " (", status, ", command: ", command, ")",
                                   problem.empty() ? "" : absl::StrCat("; ", problem), tail));
}

}  // namespace hostd::manager
