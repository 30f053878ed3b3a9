#include "manager/process_handle.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/log.h"
#include "manager/cgroup.h"
#include "manager/proc_identity.h"
#include "manager/process_proc_manager.h"

namespace hostd::manager {

namespace asio = boost::asio;
using proc::ProcStatus;

namespace {

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

}  // namespace

ProcessHandle::ProcessHandle(ProcessProcManager* mgr, proc::ProcId id, std::string command)
    : ProcHandleBase(std::move(id)), mgr_(mgr), loop_thread_(mgr->loop_thread_), command_(std::move(command)) {}

// On the manager's loop thread (a watcher that Kills or Terminates its proc) the
// exit monitor cannot run while this waits, so the exit is observed right here.
absl::StatusOr<ProcStatus> ProcessHandle::Wait(absl::Time deadline) {
  if (std::this_thread::get_id() == loop_thread_ && exit_watch_ != nullptr) ObserveExitHere(deadline);
  return ProcHandleBase::Wait(deadline);
}

std::string ProcessHandle::ready_problem() const {
  absl::MutexLock lock(&mu_);
  return ready_problem_;
}

void ProcessHandle::Started(pid_t pid, base::UniqueFd pidfd) {
  mgr_->loop_->AssertInLoop("ProcessHandle::Started");
  {
    absl::MutexLock lock(&mu_);
    pid_ = pid;
  }
  if (mgr_->janitor_) mgr_->janitor_->Track(pid);  // the proc's process group
  mgr_->reaper_->LeaderStarted(pid, mark_serial_);
  full_log_episodes_ = mgr_->log_space_->ProcStarted();
  (void)cell().Transition(ProcStatus::Running(pid, absl::Now()));
  exit_watch_ = std::make_unique<asio::posix::stream_descriptor>(mgr_->loop_->context(), pidfd.release());
  AwaitExit();
}

void ProcessHandle::Adopted(pid_t pid, uint64_t start_time, base::UniqueFd pidfd) {
  mgr_->loop_->AssertInLoop("ProcessHandle::Adopted");
  {
    absl::MutexLock lock(&mu_);
    pid_ = pid;
    adopted_pidfd_.reset(::fcntl(pidfd.get(), F_DUPFD_CLOEXEC, 0));
  }
  adopted_ = true;
  adopted_start_time_ = start_time;
  if (mgr_->janitor_) mgr_->janitor_->Track(pid);
  mgr_->reaper_->LeaderStarted(pid, mark_serial_);  // its group's zombies, and its marked escapees, are the proc's
  (void)cell().Transition(ProcStatus::Running(pid, absl::Now()));
  exit_watch_ = std::make_unique<asio::posix::stream_descriptor>(mgr_->loop_->context(), pidfd.release());
  AwaitExit();
}

bool ProcessHandle::EndedAsNonChild(int err) {
  if (!adopted_ || err != ECHILD || exit_watch_ == nullptr) return false;
  pollfd p{exit_watch_->native_handle(), POLLIN, 0};
  if (::poll(&p, 1, 0) != 1) return false;
  not_child_exit_ = true;
  return true;
}

void ProcessHandle::WatchHandshake(base::UniqueFd read_end) {
  mgr_->loop_->AssertInLoop("ProcessHandle::WatchHandshake");
  ready_pipe_ = std::make_unique<asio::posix::stream_descriptor>(mgr_->loop_->context(), read_end.release());
  ReadReport();
}

void ProcessHandle::WatchNotify(base::UniqueFd sock) {
  mgr_->loop_->AssertInLoop("ProcessHandle::WatchNotify");
  notify_ = std::make_unique<asio::posix::stream_descriptor>(mgr_->loop_->context(), sock.release());
  AwaitNotify();
}

void ProcessHandle::DetachFromManager() {
  absl::MutexLock lock(&mgr_mu_);
  mgr_gone_ = true;
}

void ProcessHandle::ReleaseWithManager() {
  mgr_->loop_->AssertInLoop("ProcessHandle::ReleaseWithManager");
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
  StopLiveness();
  ReleaseAgentLink();
  (void)cell().Transition(ProcStatus::Failed("its manager was destroyed before its exit was observed"));
}

void ProcessHandle::MarkReady(std::optional<channel::ChannelAddr> addr) {
  mgr_->loop_->AssertInLoop("ProcessHandle::MarkReady");
  ProcStatus ready;
  ready.state = proc::ProcState::kReady;
  ready.addr = std::move(addr);
  if (!cell().Transition(std::move(ready)).ok() || !liveness_spec_.enabled()) return;
  auto check = LivenessCheck::Start(*mgr_->loop_, liveness_spec_, liveness_probe_,
                                    [weak = weak_from_this()](std::string why) {
                                      if (std::shared_ptr<ProcessHandle> self = weak.lock()) {
                                        self->LivenessFailed(std::move(why));
                                      }
                                    });
  absl::MutexLock lock(&mu_);
  liveness_ = std::move(check);
}

bool ProcessHandle::RequestStop(absl::string_view reason) {
  absl::ReaderMutexLock lock(&mgr_mu_);
  if (mgr_gone_) return false;  // its loop is gone: no agent to ask
  return SendAgentStop(*mgr_->loop_, reason);
}

void ProcessHandle::SignalTerm() { Signal(SIGTERM); }

void ProcessHandle::SignalKill() {
  Signal(SIGKILL);
  if (!cgroup_dir_.empty()) CgroupTree::KillAll(cgroup_dir_);
}

// Read under mu_ so that the leader cannot be reaped meanwhile, which would free its
// pid (and group id).
ProcUsage ProcessHandle::Usage() const {
  absl::MutexLock lock(&mu_);
  if (pid_ <= 0 || leader_exited_) return {};
  return ReadUsage(cgroup_dir_.empty() ? ProcessGroupMembers(pid_) : CgroupTree::Pids(cgroup_dir_));
}

// Until OnExit takes over, the leader is not reaped (at worst it is a zombie), so
// the group's id is still its own: it cannot have been reused.
void ProcessHandle::Signal(int sig) {
  absl::MutexLock lock(&mu_);
  if (pid_ <= 0 || leader_exited_) return;
  // An adopted leader may not be our child: no zombie of ours holds its group id.
  // Signal the group only while the leader is alive.
  if (adopted_pidfd_.valid() && ::syscall(SYS_pidfd_send_signal, adopted_pidfd_.get(), 0, nullptr, 0) != 0) return;
  ::kill(-pid_, sig);
}

void ProcessHandle::Heartbeat() {
  absl::MutexLock lock(&mu_);
  if (liveness_ != nullptr) liveness_->Beat();
}

void ProcessHandle::LivenessFailed(std::string why) {
  if (status().state != proc::ProcState::kReady) return;
  liveness_failure_ = std::move(why);
  base::Log().warn("proc={} failed its liveness check: {}; {}", proc_id().name(), liveness_failure_,
                   liveness_spec_.dump_signal == 0 ? "killing it" : "asking for its stacks, then killing it");
  if (liveness_spec_.dump_signal == 0) return KillWithoutWaiting();
  // The leader alone: it is the program that was asked for its stacks; the rest of
  // the proc is its business until the SIGKILL.
  {
    absl::MutexLock lock(&mu_);
    if (pid_ > 0 && !leader_exited_) {
      if (adopted_pidfd_.valid()) {
        ::syscall(SYS_pidfd_send_signal, adopted_pidfd_.get(), liveness_spec_.dump_signal, nullptr, 0);
      } else {
        ::kill(pid_, liveness_spec_.dump_signal);
      }
    }
  }
  if (liveness_spec_.dump_grace == absl::ZeroDuration()) return KillWithoutWaiting();
  dump_grace_ = std::make_unique<asio::steady_timer>(mgr_->loop_->context(),
                                                     absl::ToChronoNanoseconds(liveness_spec_.dump_grace));
  dump_grace_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    std::shared_ptr<ProcessHandle> self = weak.lock();
    if (!ec && self != nullptr) self->KillWithoutWaiting();
  });
}

void ProcessHandle::StopLiveness() {
  std::shared_ptr<LivenessCheck> check;
  {
    absl::MutexLock lock(&mu_);
    check = std::move(liveness_);
  }
  if (check != nullptr) check->Stop();
  dump_grace_.reset();
}

void ProcessHandle::ReadReport() {
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

void ProcessHandle::AwaitNotify() {
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

void ProcessHandle::SetReadyProblem(std::string problem) {
  absl::MutexLock lock(&mu_);
  ready_problem_ = std::move(problem);
}

bool ProcessHandle::ObserveExitHere(absl::Time deadline) {
  const int pidfd = exit_watch_->native_handle();
  pollfd exited{pidfd, POLLIN, 0};
  while (true) {
    absl::Duration left = std::max(deadline - absl::Now(), absl::ZeroDuration());
    int ms =
        left == absl::InfiniteDuration()
            ? -1
            : static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))),
                                                 std::numeric_limits<int>::max()));
    int ready = ::poll(&exited, 1, ms);
    if (ready > 0 || ms == 0 || (ready < 0 && errno != EINTR)) break;
  }
  siginfo_t info{};
  if (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    if (!EndedAsNonChild(errno)) return false;
  } else if (info.si_pid == 0) {
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
void ProcessHandle::AwaitExit() {
  auto self = shared_from_this();
  exit_watch_->async_wait(asio::posix::descriptor_base::wait_read, [self](boost::system::error_code ec) {
    if (ec == asio::error::operation_aborted || self->exit_watch_ == nullptr) return;  // released by the manager
    if (!ec) {
      siginfo_t info{};
      const int pidfd = self->exit_watch_->native_handle();
      if (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
        if (!self->EndedAsNonChild(errno)) ec = boost::system::error_code(errno, boost::system::system_category());
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
void ProcessHandle::OnExit(boost::system::error_code ec) {
  mgr_->loop_->AssertInLoop("ProcessHandle::OnExit");
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
    // cgroup.procs lists every process with a live thread (a leader that exited
    // while its threads run included): empty, nothing is left to kill or fork.
    rest = CgroupTree::Pids(cgroup_dir_);
    if (!rest.empty()) CgroupTree::KillAll(cgroup_dir_);
  } else if (!ec && !not_child_exit_) {
    ::kill(-pid, SIGKILL);  // without ec the leader's zombie still holds the id
  } else if (!ec) {
    // Not our child: no zombie of ours holds the group id, but a pid is not reused
    // while it is a live group's id, so the group is the proc's unless the pid
    // already names a newer process.
    absl::StatusOr<uint64_t> now = ProcStartTime(pid);
    if (!now.ok() || *now == adopted_start_time_) ::kill(-pid, SIGKILL);
  }
  siginfo_t leader{};
  if (!ec && !not_child_exit_ && ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &leader, WEXITED | WNOHANG) != 0) {
    ec = boost::system::error_code(errno, boost::system::system_category());
  }
  exit_watch_.reset();
  siginfo_t member{};
  // Read before the cgroup goes, and only for a SIGKILLed leader: the kernel's OOM
  // killer ended it (memory.max).
  const bool oom_killed = !cgroup_dir_.empty() && !ec && !not_child_exit_ && leader.si_code == CLD_KILLED &&
                          leader.si_status == SIGKILL && CgroupTree::OomKills(cgroup_dir_) > 0;
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
  std::string tail = ReadTail(mgr_->LogPath(proc_id().name(), true), stderr_start_, mgr_->options_.stderr_tail_bytes);
  ProcStatus end;
  if (ec) {
    end = ProcStatus::Failed(absl::StrCat("exit monitor failed: ", ec.message()));
  } else if (not_child_exit_) {
    end = ProcStatus::Failed(
        "ended after this hostd re-adopted it; its exit status is unknown (only its parent, the previous hostd, "
        "could have read it)");
  } else if (leader.si_code == CLD_KILLED || leader.si_code == CLD_DUMPED) {
    end = ProcStatus::Killed(leader.si_status, leader.si_code == CLD_DUMPED, std::move(tail));
    if (oom_killed) end.reason = std::string(proc::kReasonOom);
  } else {
    end = ProcStatus::Stopped(leader.si_status, std::move(tail));
  }
  if (!liveness_failure_.empty()) {
    // Killed (by its SIGKILL, or by the dump signal's default action): that is the
    // cause. An exit of its own during the dump grace keeps its status; the
    // failure is noted.
    std::string why = absl::StrCat(proc::kReasonLiveness, ": ", liveness_failure_);
    if (not_child_exit_) {
      // Re-adopted after a restart: hostd killed it, though it cannot read how it ended.
      end.reason = absl::StrCat(why, " (", end.reason, ")");
    } else if (end.state == proc::ProcState::kKilled && end.reason.empty()) {
      end.reason = std::move(why);
    } else if (end.state == proc::ProcState::kStopped) {
      end.note = std::move(why);
    }
  }
  StopLiveness();
  if (mgr_->log_space_->ProcEnded(full_log_episodes_)) {
    end.note = absl::StrCat("some of its output may be lost: the file system of ", mgr_->log_space_->dir(),
                            " was full while it ran");
  }
  if (ready_pipe_) ready_pipe_->close();
  if (notify_) notify_->close();
  ReleaseAgentLink();
  mgr_->procs_.Remove(proc_id().name(), this);
  mgr_->procs_ended_.fetch_add(1);  // its logs may be pruned now
  (void)cell().Transition(std::move(end));
}

}  // namespace hostd::manager
