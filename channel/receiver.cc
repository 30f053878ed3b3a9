#include "channel/receiver.h"

#include "absl/strings/str_cat.h"

namespace hostd::channel {

bool Inbox::Deliver(Message& msg, const Wake& wake) {
  absl::MutexLock lock(&mu_);
  if (queue_.size() >= capacity_) {
    waiting_.push_back(wake);
    return false;
  }
  queue_.push_back(std::move(msg));
  return true;
}

absl::StatusOr<Message> Inbox::Receive(absl::Time deadline) {
  std::vector<Wake> wake;
  absl::StatusOr<Message> out;
  {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty(); };
    if (!mu_.AwaitWithDeadline(absl::Condition(&ready), deadline)) {
      return absl::DeadlineExceededError(absl::StrCat("no message arrived by ", absl::FormatTime(deadline)));
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
