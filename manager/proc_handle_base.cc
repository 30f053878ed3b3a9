#include "manager/proc_handle_base.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proc/agent.h"

namespace hostd::manager {

using proc::ProcState;
using proc::ProcStatus;

absl::Status ProcHandleBase::Ready(absl::Time deadline) {
  bool met = false;
  ProcStatus s = cell_.Await(
      [](const ProcStatus& st) { return st.was_ready() || st.state == ProcState::kStopping || st.terminal(); },
      deadline, &met);
  if (s.was_ready()) return absl::OkStatus();  // even if it has ended since
  if (!met) {
    return absl::DeadlineExceededError(
        absl::StrCat("proc ", id_.ToString(), " is not ready by the deadline; it is ", s.ToString()));
  }
  std::string tail = s.stderr_tail.empty() ? "" : absl::StrCat("; stderr: ", s.stderr_tail);
  return absl::FailedPreconditionError(
      absl::StrCat("proc ", id_.ToString(), " will not become ready: it is ", s.ToString(), tail));
}

absl::Status ProcHandleBase::NotEnded(absl::string_view what) const {
  return absl::DeadlineExceededError(
      absl::StrCat("proc ", id_.ToString(), " has not ended ", what, "; it is ", cell_.Get().ToString()));
}

absl::StatusOr<ProcStatus> ProcHandleBase::Wait(absl::Time deadline) {
  bool met = false;
  ProcStatus s = cell_.Await([](const ProcStatus& st) { return st.terminal(); }, deadline, &met);
  if (!met) return NotEnded("by the deadline");
  return s;
}

absl::StatusOr<ProcStatus> ProcHandleBase::Terminate(absl::Duration grace, absl::string_view reason) {
  return std::move(TerminateEach({this}, grace, 1, reason).outcomes.front().result);
}

namespace {

// Where one proc's termination stands.
enum class Phase {
  kAsked,   // its agent was asked to stop; SIGTERM at grace/2
  kTermed,  // SIGTERM sent; SIGKILL at grace
  kKilled,  // SIGKILL sent; given up kKillWait later
  kJoined,  // another caller runs its termination; given up when that one does
};

// The procs seen ending, by index: filled by status watchers, which may outlive a
// run (an Unwatch does not wait for a delivery under way), hence shared.
struct Ends {
  absl::Mutex mu;
  std::vector<size_t> ended ABSL_GUARDED_BY(mu);
};

bool AnyEnded(std::vector<size_t>* ended) { return !ended->empty(); }

}  // namespace

TerminateSummary ProcHandleBase::TerminateEach(const std::vector<ProcHandleBase*>& handles, absl::Duration grace,
                                               int max_in_flight, absl::string_view reason) {
  struct Active {
    size_t i = 0;
    Phase phase = Phase::kJoined;
    absl::Time next;     // when the phase moves on
    absl::Time kill_at;  // when SIGKILL is due
    uint64_t watch = 0;
  };
  TerminateSummary summary;
  summary.attempted = static_cast<int>(handles.size());
  summary.outcomes.reserve(handles.size());
  for (ProcHandleBase* h : handles) summary.outcomes.push_back({h->proc_id(), absl::UnknownError("not attempted")});
  const size_t window = static_cast<size_t>(std::max(1, max_in_flight));
  auto ends = std::make_shared<Ends>();
  std::vector<Active> active;
  size_t pending = 0;
  // Takes active[k] out with its result; the last one takes its place.
  auto finish = [&](size_t k, absl::StatusOr<ProcStatus> result) {
    handles[active[k].i]->cell_.Unwatch(active[k].watch);
    summary.outcomes[active[k].i].result = std::move(result);
    active[k] = active.back();
    active.pop_back();
  };
  auto given_up = [&](const ProcHandleBase& h) {
    return h.NotEnded(absl::StrCat("after SIGKILL (grace ", absl::FormatDuration(grace), ")"));
  };
  while (pending < handles.size() || !active.empty()) {
    // Start terminations up to the window.
    while (active.size() < window && pending < handles.size()) {
      size_t i = pending++;
      ProcHandleBase& h = *handles[i];
      if (ProcStatus s = h.cell_.Get(); s.terminal()) {
        summary.outcomes[i].result = s;
        continue;
      }
      Active a;
      a.i = i;
      absl::Time now = absl::Now();
      if (!h.terminating_.exchange(true)) {
        h.give_up_unix_nanos_ = absl::ToUnixNanos(now + grace + kKillWait);
        (void)h.cell_.Transition(ProcStatus::Stopping());  // refused if it already ended: fine
        a.kill_at = now + grace;
        if (h.RequestStop(reason)) {
          a.phase = Phase::kAsked;
          a.next = now + grace / 2;
        } else {
          h.SignalTerm();
          a.phase = Phase::kTermed;
          a.next = a.kill_at;
        }
      } else {
        while (h.give_up_unix_nanos_.load() == 0) std::this_thread::yield();  // the first caller is setting it
        a.phase = Phase::kJoined;
        a.next = absl::FromUnixNanos(h.give_up_unix_nanos_.load());
      }
      a.watch = h.cell_.Watch([ends, i](const ProcStatus& st) {
        if (!st.terminal()) return;
        absl::MutexLock lock(&ends->mu);
        ends->ended.push_back(i);
      });
      active.push_back(a);
    }
    // One wait: for the first end, or the next phase due. The watchers only
    // hasten it: a caller that is itself delivering a status (a watcher calling
    // Terminate) gets no delivery until it returns, so a wait that ends with no
    // news looks at the procs themselves, at least every kRecheck.
    constexpr absl::Duration kRecheck = absl::Milliseconds(20);
    absl::Time earliest = absl::Now() + kRecheck;
    for (const Active& a : active) earliest = std::min(earliest, a.next);
    std::vector<size_t> ended;
    {
      absl::MutexLock lock(&ends->mu);
      ends->mu.AwaitWithDeadline(absl::Condition(&AnyEnded, &ends->ended), earliest);
      ended.swap(ends->ended);
    }
    if (ended.empty()) {
      for (const Active& a : active) {
        if (handles[a.i]->cell_.Get().terminal()) ended.push_back(a.i);
      }
    }
    for (size_t i : ended) {
      auto it = std::find_if(active.begin(), active.end(), [i](const Active& a) { return a.i == i; });
      if (it == active.end()) continue;  // a late delivery for one already finished
      ProcHandleBase& h = *handles[i];
      // Wait, not Get: it returns once every watcher has seen the end, as a
      // caller of Terminate may expect.
      absl::StatusOr<ProcStatus> s = h.Wait(absl::FromUnixNanos(h.give_up_unix_nanos_.load()));
      finish(static_cast<size_t>(it - active.begin()), s.ok() ? std::move(s) : given_up(h));
    }
    // Every phase that is due moves on, its signals sent together.
    absl::Time now = absl::Now();
    for (size_t k = 0; k < active.size();) {
      Active& a = active[k];
      if (a.next > now) {
        ++k;
        continue;
      }
      ProcHandleBase& h = *handles[a.i];
      switch (a.phase) {
        case Phase::kAsked:
          h.SignalTerm();
          a.phase = Phase::kTermed;
          a.next = a.kill_at;
          ++k;
          break;
        case Phase::kTermed:
          h.SignalKill();
          a.phase = Phase::kKilled;
          a.next = absl::FromUnixNanos(h.give_up_unix_nanos_.load());
          ++k;
          break;
        case Phase::kKilled:
        case Phase::kJoined:
          finish(k, given_up(h));
          break;
      }
    }
  }
  for (const auto& o : summary.outcomes) (o.result.ok() ? summary.ok : summary.failed)++;
  return summary;
}

void ProcHandleBase::KillWithoutWaiting() {
  if (cell_.Get().terminal()) return;
  (void)cell_.Transition(ProcStatus::Stopping());
  SignalKill();
}

absl::StatusOr<ProcStatus> ProcHandleBase::Kill() {
  if (ProcStatus s = cell_.Get(); s.terminal()) return s;
  KillWithoutWaiting();
  absl::StatusOr<ProcStatus> s = Wait(absl::Now() + kKillWait);
  if (!s.ok()) return NotEnded("after SIGKILL");
  return s;
}

bool ProcHandleBase::SendAgentStop(channel::EventLoop& loop, absl::string_view reason) {
  std::optional<channel::ChannelAddr> a = addr();
  if (!a.has_value()) return false;
  absl::StatusOr<channel::Message> stop =
      channel::Message::Create(id_.ToString(), proc::kAgentPort, "", absl::StrCat("stop ", reason));
  if (!stop.ok()) return false;
  absl::MutexLock lock(&agent_mu_);
  if (agent_ == nullptr) {
    channel::SenderOptions opts;
    opts.delivery_timeout = absl::Seconds(5);
    agent_ = channel::Sender::Dial(loop, *a, opts);
  }
  return agent_->Post(*std::move(stop), nullptr, channel::WhenFull::kFail).ok();
}

void ProcHandleBase::ReleaseAgentLink() {
  std::unique_ptr<channel::Sender> link;
  {
    absl::MutexLock lock(&agent_mu_);
    link.swap(agent_);
  }
}

TerminateSummary TerminateHandles(const std::vector<std::shared_ptr<ProcHandle>>& handles, absl::Duration grace,
                                  int max_in_flight, absl::string_view reason) {
  std::vector<ProcHandleBase*> bases;
  bases.reserve(handles.size());
  for (const auto& h : handles) bases.push_back(&static_cast<ProcHandleBase&>(*h));
  return ProcHandleBase::TerminateEach(bases, grace, max_in_flight, reason);
}

TerminateSummary KillHandles(const std::vector<std::shared_ptr<ProcHandle>>& handles, absl::Time deadline) {
  // Every signal goes out before the first wait: the procs die together.
  for (const auto& h : handles) static_cast<ProcHandleBase&>(*h).KillWithoutWaiting();
  TerminateSummary summary;
  summary.attempted = static_cast<int>(handles.size());
  summary.outcomes.reserve(handles.size());
  for (const auto& h : handles) {
    absl::StatusOr<ProcStatus> end = h->Wait(deadline);
    (end.ok() ? summary.ok : summary.failed)++;
    summary.outcomes.push_back({h->proc_id(), std::move(end)});
  }
  return summary;
}

}  // namespace hostd::manager
