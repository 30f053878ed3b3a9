#include "channel/receiver.h"

#include <algorithm>
#include <iterator>

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

bool Inbox::AwaitMessage(absl::Time deadline) {
  while (queue_.empty()) {
    ++consumers_waiting_;
    bool timed_out = arrived_.WaitWithDeadline(&mu_, deadline);
    --consumers_waiting_;
    if (timed_out && queue_.empty()) return false;
  }
  return true;
}

namespace {

absl::Status NoneArrived(absl::Time deadline) {
  return absl::DeadlineExceededError(absl::StrCat("no message arrived by ", absl::FormatTime(deadline)));
}

}  // namespace

absl::StatusOr<Message> Inbox::Receive(absl::Time deadline) {
  std::vector<Wake> wake;
  absl::StatusOr<Message> out;
  {
    absl::MutexLock lock(&mu_);
    if (!AwaitMessage(deadline)) return NoneArrived(deadline);
    out = std::move(queue_.front());
    queue_.pop_front();
    wake.swap(waiting_);
  }
  for (Wake& w : wake) w();
  return out;
}

absl::StatusOr<size_t> Inbox::ReceiveBatch(std::vector<Message>& out, size_t max, absl::Time deadline) {
  std::vector<Wake> wake;
  size_t n;
  {
    absl::MutexLock lock(&mu_);
    if (!AwaitMessage(deadline)) return NoneArrived(deadline);
    n = std::min(std::max<size_t>(max, 1), queue_.size());
    out.insert(out.end(), std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.begin() + n));
    queue_.erase(queue_.begin(), queue_.begin() + n);
    wake.swap(waiting_);
  }
  for (Wake& w : wake) w();
  return n;
}

size_t Inbox::size() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

}  // namespace hostd::channel
