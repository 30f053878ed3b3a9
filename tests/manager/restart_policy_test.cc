#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/restart_policy.h"
#include "testing/status_matchers.h"

namespace hostd::manager {
namespace {

using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using proc::ProcStatus;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1000);

TEST(RestartPolicyTest, ModesFollowOtp) {
  ProcStatus clean = ProcStatus::Stopped(0), failed = ProcStatus::Stopped(1), killed = ProcStatus::Killed(9, false);
  EXPECT_FALSE(WantsRestart(RestartMode::kNever, failed));
  EXPECT_FALSE(WantsRestart(RestartMode::kOnFailure, clean));  // transient: exit 0 is not restarted
  EXPECT_TRUE(WantsRestart(RestartMode::kOnFailure, failed));  // ... exit 1 is
  EXPECT_TRUE(WantsRestart(RestartMode::kOnFailure, killed));
  EXPECT_TRUE(WantsRestart(RestartMode::kAlways, clean));
}

TEST(RestartPolicyTest, ACrashLoopGivesUpAtTheIntensityLimit) {
  RestartTracker t({.mode = RestartMode::kAlways, .max_restarts = 3, .within = absl::Seconds(10)});
  int restarts = 0;
  RestartDecision d;
  for (int i = 0; i < 100; ++i) {
    d = t.OnEnd(ProcStatus::Stopped(1), kT0 + absl::Milliseconds(10 * i));
    if (!d.restart) break;
    ++restarts;
  }
  EXPECT_EQ(restarts, 3);  // not endless
  EXPECT_THAT(d.why, HasSubstr("gave up: 3 restarts within 10s"));
}

TEST(RestartPolicyTest, AListedExitCodeIsNeverRestartedButOtherEndsAre) {
  RestartTracker t({.mode = RestartMode::kAlways, .max_restarts = 100, .permanent_exit_codes = {78, 0}});
  EXPECT_TRUE(t.OnEnd(ProcStatus::Stopped(1), kT0).restart);
  EXPECT_TRUE(t.OnEnd(ProcStatus::Killed(78, false), kT0).restart);  // a signal, not an exit code
  RestartDecision d = t.OnEnd(ProcStatus::Stopped(78), kT0);
  EXPECT_FALSE(d.restart);
  EXPECT_THAT(d.why, HasSubstr("exit code 78 is listed as permanent"));
  EXPECT_FALSE(t.OnEnd(ProcStatus::Stopped(0), kT0).restart);
  EXPECT_THAT(ValidateRestartPolicy({.permanent_exit_codes = {256}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("256 is not an exit code")));
  EXPECT_THAT(ValidateRestartPolicy({.permanent_exit_codes = std::vector<int>(33, 1)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 32")));
}

TEST(RestartPolicyTest, RestartsOutsideTheWindowDoNotCount) {
  RestartTracker t({.mode = RestartMode::kAlways, .max_restarts = 2, .within = absl::Seconds(1)});
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(t.OnEnd(ProcStatus::Stopped(1), kT0 + absl::Seconds(2 * i)).restart) << i;
  }
}

TEST(RestartPolicyTest, BackoffDelaysGrowWithinTheirBoundsUpToTheMax) {
  RestartPolicy p{.mode = RestartMode::kAlways, .max_restarts = 100, .within = absl::Hours(1)};
  p.backoff = {.initial = absl::Milliseconds(100), .max = absl::Seconds(2), .multiplier = 2.0, .jitter = 0.25};
  RestartTracker t(p);
  absl::Duration prev_base = absl::ZeroDuration();
  for (int i = 1; i <= 10; ++i) {
    RestartDecision d = t.OnEnd(ProcStatus::Stopped(1), kT0 + absl::Seconds(i));
    ASSERT_TRUE(d.restart);
    EXPECT_EQ(d.attempt, i);
    absl::Duration base = t.BaseDelay(i);
    EXPECT_GE(base, prev_base);         // the growth never goes back
    EXPECT_LE(base, absl::Seconds(2));  // capped
    EXPECT_LE(d.delay, base);           // jitter only cuts
    EXPECT_GE(d.delay, base * 0.75);    // by at most `jitter`
    prev_base = base;
  }
  EXPECT_EQ(t.BaseDelay(1), absl::Milliseconds(100));
  EXPECT_EQ(t.BaseDelay(3), absl::Milliseconds(400));
  EXPECT_EQ(t.BaseDelay(10), absl::Seconds(2));
}

TEST(RestartPolicyTest, StayingReadyForAWindowResetsTheBackoff) {
  RestartTracker t(
      {.mode = RestartMode::kAlways, .max_restarts = 100, .within = absl::Seconds(5), .backoff = {.jitter = 0}});
  EXPECT_EQ(t.OnEnd(ProcStatus::Stopped(1), kT0).attempt, 1);
  t.OnReady(kT0 + absl::Seconds(1));
  EXPECT_EQ(t.OnEnd(ProcStatus::Stopped(1), kT0 + absl::Seconds(2)).attempt, 2);  // up 1 s only
  t.OnReady(kT0 + absl::Seconds(3));
  RestartDecision d = t.OnEnd(ProcStatus::Stopped(1), kT0 + absl::Seconds(20));  // up 17 s
  EXPECT_EQ(d.attempt, 1);
  EXPECT_EQ(d.delay, absl::Milliseconds(100));
}

TEST(RestartPolicyTest, InvalidPoliciesNameTheField) {
  EXPECT_THAT(ValidateRestartPolicy({}), IsOk());
  EXPECT_THAT(ValidateRestartPolicy({.max_restarts = -1}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_restarts")));
  EXPECT_THAT(ValidateRestartPolicy({.within = absl::ZeroDuration()}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("within")));
  EXPECT_THAT(ValidateRestartPolicy({.backoff = {.multiplier = 0.5}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiplier")));
  EXPECT_THAT(ValidateRestartPolicy({.backoff = {.jitter = 2}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("jitter")));
  EXPECT_THAT(ValidateRestartPolicy({.backoff = {.initial = absl::Seconds(5), .max = absl::Seconds(1)}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("backoff")));
}

}  // namespace
}  // namespace hostd::manager
