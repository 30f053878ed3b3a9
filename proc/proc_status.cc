#include "proc/proc_status.h"

#include <string.h>

#include <thread>

#include "absl/strings/str_cat.h"

namespace hostd::proc {

absl::string_view ProcStateName(ProcState s) {
  switch (s) {
    case ProcState::kStarting: return "Starting";
    case ProcState::kRunning: return "Running";
    case ProcState::kReady: return "Ready";
    case ProcState::kStopping: return "Stopping";
    case ProcState::kStopped: return "Stopped";
    case ProcState::kKilled: return "Killed";
    case ProcState::kFailed: return "Failed";
  }
  return "?";
}

bool IsTerminal(ProcState s) { return s == ProcState::kStopped || s == ProcState::kKilled || s == ProcState::kFailed; }

bool IsLegalTransition(ProcState from, ProcState to) {
  if (IsTerminal(from)) return false;
  if (IsTerminal(to)) return true;
  switch (to) {
    case ProcState::kStarting: return false;
    case ProcState::kRunning: return from == ProcState::kStarting;
    case ProcState::kReady: return from == ProcState::kRunning;
    case ProcState::kStopping: return from != ProcState::kStopping;
    default: return false;
  }
}

ProcStatus ProcStatus::Running(pid_t pid, absl::Time started_at) {
  ProcStatus s;
  s.state = ProcState::kRunning;
  s.pid = pid;
  s.started_at = started_at;
  return s;
}
ProcStatus ProcStatus::Ready(channel::ChannelAddr addr) {
  ProcStatus s;
  s.state = ProcState::kReady;
  s.addr = std::move(addr);
  return s;
}
ProcStatus ProcStatus::Stopping() {
  ProcStatus s;
  s.state = ProcState::kStopping;
  return s;
}
ProcStatus ProcStatus::Stopped(int exit_code, std::string stderr_tail) {
  ProcStatus s;
  s.state = ProcState::kStopped;
  s.exit_code = exit_code;
  s.stderr_tail = std::move(stderr_tail);
  return s;
}
ProcStatus ProcStatus::Killed(int signal, bool core_dumped, std::string stderr_tail) {
  ProcStatus s;
  s.state = ProcState::kKilled;
  s.signal = signal;
  s.core_dumped = core_dumped;
  s.stderr_tail = std::move(stderr_tail);
  return s;
}
ProcStatus ProcStatus::Failed(std::string reason) {
  ProcStatus s;
  s.state = ProcState::kFailed;
  s.reason = std::move(reason);
  return s;
}

std::string ProcStatus::ToString() const {
  std::string name(ProcStateName(state));
  switch (state) {
    case ProcState::kRunning: return absl::StrCat(name, "(pid ", pid, ")");
    case ProcState::kReady: return absl::StrCat(name, "(", addr ? addr->ToString() : "no address", ")");
    case ProcState::kStopped: return absl::StrCat(name, "(exit ", exit_code, reason.empty() ? "" : ", ", reason, ")");
    case ProcState::kKilled: {
      const char* abbrev = sigabbrev_np(signal);
      return absl::StrCat(name, "(", abbrev ? absl::StrCat("SIG", abbrev) : absl::StrCat("signal ", signal),
                          core_dumped ? ", core dumped" : "", reason.empty() ? "" : ", ", reason, ")");
    }
    case ProcState::kFailed: return absl::StrCat(name, "(", reason, ")");
    default: return name;
  }
}

std::ostream& operator<<(std::ostream& os, const ProcStatus& s) { return os << s.ToString(); }

ProcStatus ProcStatusCell::Get() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

uint64_t ProcStatusCell::Applied() const {
  absl::MutexLock lock(&mu_);
  return applied_;
}

absl::Status ProcStatusCell::Transition(ProcStatus next) {
  {
    absl::MutexLock lock(&mu_);
    if (!IsLegalTransition(status_.state, next.state)) {
      return absl::FailedPreconditionError(
          absl::StrCat("proc status cannot go from ", status_.ToString(), " to ", next.ToString()));
    }
    if (next.pid == 0) next.pid = status_.pid;
    if (next.started_at == absl::InfinitePast()) next.started_at = status_.started_at;
    if (!next.addr.has_value()) next.addr = status_.addr;
    if (next.state == ProcState::kReady && !next.was_ready()) next.ready_at = absl::Now();
    if (!next.was_ready()) next.ready_at = status_.ready_at;
    status_ = next;
    history_.push_back(next);
    pending_.emplace_back(++applied_, std::move(next));
    if (delivering_) return absl::OkStatus();  // the active deliverer takes it, in order
    delivering_ = true;
    deliverer_ = std::this_thread::get_id();
  }
  Deliver();
  return absl::OkStatus();
}

void ProcStatusCell::Deliver() {
  while (true) {
    std::pair<uint64_t, ProcStatus> item;
    std::vector<Registered> targets;
    {
      absl::MutexLock lock(&mu_);
      if (pending_.empty()) {
        delivering_ = false;
        return;
      }
      item = std::move(pending_.front());
      pending_.pop_front();
      for (const Registered& w : watchers_) {
        if (w.after < item.first) targets.push_back(w);
      }
    }
    for (const Registered& w : targets) (*w.fn)(item.second);
    absl::MutexLock lock(&mu_);
    delivered_ = item.first;
  }
}

uint64_t ProcStatusCell::Watch(Watcher fn, WatchFrom from) {
  auto shared = std::make_shared<Watcher>(std::move(fn));
  std::vector<ProcStatus> now;
  uint64_t id;
  bool nested;
  {
    absl::MutexLock lock(&mu_);
    // The first call must come before any later status reaches this watcher: take the
    // deliverer's role, unless this thread already has it (Watch from a watcher).
    nested = delivering_ && deliverer_ == std::this_thread::get_id();
    if (!nested) {
      auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !delivering_; };
      mu_.Await(absl::Condition(&idle));
      delivering_ = true;
      deliverer_ = std::this_thread::get_id();
    }
    if (from == WatchFrom::kFirst) {
      now = history_;
    } else {
      now.push_back(status_);
    }
    id = next_watcher_++;
    watchers_.push_back({id, applied_, shared});
  }
  for (const ProcStatus& s : now) (*shared)(s);
  if (!nested) Deliver();  // what was applied meanwhile; ends the role
  return id;
}

void ProcStatusCell::Unwatch(uint64_t id) {
  absl::MutexLock lock(&mu_);
  std::erase_if(watchers_, [id](const Registered& w) { return w.id == id; });
}

ProcStatus ProcStatusCell::Await(const std::function<bool(const ProcStatus&)>& pred, absl::Time deadline,
                                 bool* met) const {
  absl::MutexLock lock(&mu_);
  // A watcher that waits (Kill from its callback) runs on the delivering thread:
  // what it would wait to see delivered is queued behind its own callback, so it
  // waits for the status alone. It stays the deliverer while it waits.
  const bool on_deliverer = delivering_ && deliverer_ == std::this_thread::get_id();
  auto cond = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return (on_deliverer || delivered_ == applied_) && pred(status_);
  };
  *met = mu_.AwaitWithDeadline(absl::Condition(&cond), deadline);
  return status_;
}

}  // namespace hostd::proc
