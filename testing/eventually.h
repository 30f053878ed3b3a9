// Waiting in tests: for a condition, with a deadline that only guards against hangs.
//
//   EXPECT_TRUE(Eventually([&] { return listener->stats().sessions == 0; }));
//   ASSERT_TRUE(done.WaitForNotificationWithDeadline(HangGuard()));
//
// Tests wait for the event they expect, never a fixed time. Eventually polls
// `cond` with a short backoff (1 ms doubling to 20 ms) until it holds or the
// deadline passes, and returns whether it held; `cond` runs on the calling thread.
// The deadline is generous on purpose: a test that needs it has hung, and timing
// limits belong in benchmarks.
#ifndef HOSTD_TESTING_EVENTUALLY_H_
#define HOSTD_TESTING_EVENTUALLY_H_

#include <algorithm>
#include <functional>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace hostd::testing {

// How long a test waits for anything before it gives up.
inline constexpr absl::Duration kHangGuard = absl::Seconds(60);

// The deadline for a wait that starts now.
inline absl::Time HangGuard() { return absl::Now() + kHangGuard; }

inline bool Eventually(const std::function<bool()>& cond, absl::Duration deadline = kHangGuard) {
  const absl::Time until = absl::Now() + deadline;
  absl::Duration pause = absl::Milliseconds(1);
  while (true) {
    if (cond()) return true;
    absl::Time now = absl::Now();
    if (now >= until) return false;
    absl::SleepFor(std::min(pause, until - now));
    pause = std::min(pause * 2, absl::Milliseconds(20));
  }
}

}  // namespace hostd::testing

#endif  // HOSTD_TESTING_EVENTUALLY_H_
