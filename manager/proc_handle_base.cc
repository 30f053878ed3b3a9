#include "manager/proc_handle_base.h"

#include <thread>

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

void ProcHandleBase::RunTermination(absl::Duration grace, absl::string_view reason) {
  (void)cell_.Transition(ProcStatus::Stopping());  // refused if it already ended: fine
  absl::Time start = absl::Now();
  absl::Time kill_at = start + grace;
  auto ended_by = [this](absl::Time t) { return Wait(t).ok(); };
  if (RequestStop(reason) && ended_by(start + grace / 2)) return;
  SignalTerm();
  if (ended_by(kill_at)) return;
  SignalKill();
}

absl::StatusOr<ProcStatus> ProcHandleBase::Terminate(absl::Duration grace, absl::string_view reason) {
  if (ProcStatus s = cell_.Get(); s.terminal()) return s;
  if (!terminating_.exchange(true)) {
    give_up_unix_nanos_ = absl::ToUnixNanos(absl::Now() + grace + kKillWait);
    RunTermination(grace, reason);
  } else {
    while (give_up_unix_nanos_.load() == 0) std::this_thread::yield();  // the first caller is setting it
  }
  absl::StatusOr<ProcStatus> s = Wait(absl::FromUnixNanos(give_up_unix_nanos_.load()));
  if (!s.ok()) return NotEnded(absl::StrCat("after SIGKILL (grace ", absl::FormatDuration(grace), ")"));
  return s;
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
  TerminateSummary summary;
  summary.attempted = static_cast<int>(handles.size());
  summary.outcomes.reserve(handles.size());
  for (const auto& h : handles) summary.outcomes.push_back({h->proc_id(), absl::UnknownError("not attempted")});
  std::atomic<size_t> next{0};
  int workers = std::clamp<int>(max_in_flight, 1, std::max<int>(1, static_cast<int>(handles.size())));
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&] {
      for (size_t i = next++; i < handles.size(); i = next++) {
        summary.outcomes[i].result = handles[i]->Terminate(grace, reason);
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& o : summary.outcomes) (o.result.ok() ? summary.ok : summary.failed)++;
  return summary;
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
