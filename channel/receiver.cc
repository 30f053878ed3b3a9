#include "channel/receiver.h"

#include "absl/strings/str_cat.h"

namespace hostd::channel {

bool Inbox::Deliver(Message& msg, const Wake& wake) {
  absl::MutexLock lock(&mu_);
  if (queue_.size() >= capacity_) {
    waiting_.push_back(wake);
    if (consumers_waiting_ > 0) arrived_.SignalAll();
    wake_due_ = false;
    return false;
  }
  queue_.push_back(std::move(msg));
  if (consumers_waiting_ > 0) wake_due_ = true;
  return true;
}

void Inbox::EndOfRun() {
  absl::MutexLock lock(&mu_);
  if (!wake_due_) return;
  wake_due_ = false;
  arrived_.SignalAll();
}

absl::StatusOr<Message> Inbox::Receive(absl::Time deadline) {
  std::vector<Wake> wake;
  absl::StatusOr<Message> out;
  {
    absl::MutexLock lock(&mu_);
    while (queue_.empty()) {
      ++consumers_waiting_;
      bool timed_out = arrived_.WaitWithDeadline(&mu_, deadline);
      --consumers_waiting_;
      if (timed_out && queue_.empty()) {
        return absl::DeadlineExceededError(absl::StrCat("no message arrived by ", absl::FormatTime(deadline)));
      }
    }
    out = std::move(queue_.front());
    queue_.pop_front();
    wake.swap(waiting_);
  }
  for (Wake& w : wake) w();
  return out;
}

size_t Inbox::size() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

}  // namespace hostd::channel
