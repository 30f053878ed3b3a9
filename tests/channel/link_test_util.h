// Helpers shared by the link test files.
#ifndef HOSTD_TESTS_CHANNEL_LINK_TEST_UTIL_H_
#define HOSTD_TESTS_CHANNEL_LINK_TEST_UTIL_H_

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "channel/channel_addr.h"
#include "channel/message.h"
#include "channel/receiver.h"
#include "channel/sender.h"
#include "gtest/gtest.h"
#include "testing/eventually.h"

namespace hostd::channel {

using ::hostd::testing::HangGuard;

// "unix:": a unix address the listener chooses.
inline ChannelAddr UnixAny() { return *ChannelAddr::Parse("unix:"); }

inline Message Numbered(uint64_t i, const std::string& pad = "") {
  return *Message::Create("local:1,dest", "port", "local:2,src", absl::StrCat(i, pad));
}

inline uint64_t NumberOf(const Message& m) {
  uint64_t n = 0;
  std::string digits;
  for (char c : m.payload()) {
    if (c < '0' || c > '9') break;
    digits += c;
  }
  EXPECT_TRUE(absl::SimpleAtoi(digits, &n)) << m.payload();
  return n;
}

// Receives `n` messages (or fails the test at the hang guard).
inline std::vector<uint64_t> ReceiveNumbers(Inbox& inbox, size_t n) {
  std::vector<uint64_t> out;
  for (size_t i = 0; i < n; ++i) {
    absl::StatusOr<Message> m = inbox.Receive(HangGuard());
    if (!m.ok()) {
      ADD_FAILURE() << "after " << i << " of " << n << " messages: " << m.status();
      break;
    }
    out.push_back(NumberOf(*m));
  }
  return out;
}

inline std::vector<uint64_t> Iota(uint64_t from, uint64_t to) {
  std::vector<uint64_t> v;
  for (uint64_t i = from; i < to; ++i) v.push_back(i);
  return v;
}

// Records every Post outcome; thread-safe.
class Outcomes {
 public:
  Sender::Done Track() {
    return [this](absl::Status s, Message m) {
      absl::MutexLock lock(&mu_);
      uint64_t n = NumberOf(m);
      if (s.ok()) {
        acked_.push_back(n);
      } else {
        returned_.push_back({n, s});
      }
    };
  }
  void WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return acked_.size() + returned_.size() >= n; };
    EXPECT_TRUE(mu_.AwaitWithDeadline(absl::Condition(&done), HangGuard()))
        << acked_.size() << " acked + " << returned_.size() << " returned of " << n;
  }
  std::vector<uint64_t> acked() {
    absl::MutexLock lock(&mu_);
    return acked_;
  }
  std::vector<std::pair<uint64_t, absl::Status>> returned() {
    absl::MutexLock lock(&mu_);
    return returned_;
  }

 private:
  absl::Mutex mu_;
  std::vector<uint64_t> acked_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<uint64_t, absl::Status>> returned_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hostd::channel

#endif  // HOSTD_TESTS_CHANNEL_LINK_TEST_UTIL_H_
