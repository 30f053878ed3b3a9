#include "manager/liveness.h"

#include <signal.h>

#include <string>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/eventually.h"

namespace hostd::manager {
namespace {

using ::testing::HasSubstr;

LivenessSpec Exec(std::vector<std::string> command) {
  return {.kind = LivenessKind::kExec, .command = std::move(command), .period = absl::Milliseconds(50)};
}

TEST(LivenessSpecTest, EncodingRoundTripsEveryFieldAndAnyArgument) {
  LivenessSpec spec = Exec({"/bin/sh", "-c", "test -e 'a b'\n\t"});
  spec.timeout = absl::Milliseconds(20);
  spec.failure_threshold = 7;
  spec.initial_delay = absl::Seconds(3);
  spec.dump_signal = SIGUSR1;
  spec.dump_grace = absl::Milliseconds(1500);
  absl::StatusOr<LivenessSpec> back = DecodeLiveness(EncodeLiveness(spec));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, spec);
  EXPECT_EQ(EncodeLiveness(LivenessSpec{}), "");
  EXPECT_FALSE(DecodeLiveness("").value().enabled());
  EXPECT_THAT(DecodeLiveness(absl::string_view("1\0x", 3)).status().message(), HasSubstr("too few fields"));
}

TEST(LivenessSpecTest, EachBoundNamesItsField) {
  auto error = [](LivenessSpec s) { return std::string(ValidateLiveness(s, "liveness.").message()); };
  LivenessSpec hb{.kind = LivenessKind::kHeartbeat, .command = {}};
  EXPECT_TRUE(ValidateLiveness(hb, "liveness.").ok());
  hb.period = absl::Hours(2);
  EXPECT_EQ(error(hb), "liveness.period: 2h; must be 10ms to 1h");
  hb.period = absl::Seconds(1);
  hb.timeout = absl::Milliseconds(1);
  EXPECT_THAT(error(hb), HasSubstr("liveness.timeout: applies to exec probes only"));
  LivenessSpec ex = Exec({});
  EXPECT_EQ(error(ex), "liveness.command: an exec probe needs a program");
  ex = Exec({"/bin/true"});
  ex.failure_threshold = 0;
  EXPECT_EQ(error(ex), "liveness.failure_threshold: 0; must be 1 to 100");
  ex.failure_threshold = 1;
  ex.dump_signal = SIGSTOP;
  EXPECT_THAT(error(ex), HasSubstr("liveness.dump_signal: 19"));
  LivenessSpec off{.kind = LivenessKind::kNone, .command = {}, .period = absl::ZeroDuration()};
  EXPECT_TRUE(ValidateLiveness(off, "x.").ok());  // a disabled spec is not checked
}

// A check on a loop of its own: `failed` gets the reason.
struct Running {
  std::unique_ptr<channel::EventLoop> loop = channel::EventLoop::Start("liveness-test");
  std::shared_ptr<LivenessCheck> check;
  absl::Notification failed;
  std::string why;

  explicit Running(LivenessSpec spec) {
    LaunchRequest probe;
    if (!spec.command.empty()) {
      probe.path = spec.command[0];
      probe.argv = spec.command;
    }
    loop->RunSync([&] {
      check = LivenessCheck::Start(*loop, spec, probe, [this](std::string w) {
        why = std::move(w);
        failed.Notify();
      });
    });
  }
  ~Running() {
    loop->RunSync([&] { check->Stop(); });
  }
};

TEST(LivenessCheckTest, BeatsKeepAHeartbeatCheckPassingAndTheirAbsenceFailsIt) {
  // Beats every 5 ms against an allowance of 2 s (40 periods of 50 ms): a busy
  // machine does not make it miss.
  Running r(LivenessSpec{
      .kind = LivenessKind::kHeartbeat, .command = {}, .period = absl::Milliseconds(50), .failure_threshold = 40});
  for (int i = 0; i < 300 && !r.failed.HasBeenNotified(); ++i) {
    r.check->Beat();
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_FALSE(r.failed.HasBeenNotified()) << r.why;
  EXPECT_GE(r.check->beats(), 300u);
  EXPECT_TRUE(r.failed.WaitForNotificationWithTimeout(testing::kHangGuard));
  EXPECT_EQ(r.why, "no heartbeat for 40 period(s) of 50ms");
}

TEST(LivenessCheckTest, AFailingProbeFailsTheCheckAfterTheThreshold) {
  LivenessSpec spec = Exec({"/bin/sh", "-c", "exit 4"});
  spec.failure_threshold = 2;
  Running r(spec);
  ASSERT_TRUE(r.failed.WaitForNotificationWithTimeout(testing::kHangGuard));
  EXPECT_EQ(r.why, "probe \"/bin/sh -c exit 4\" exited 4 (2 misses in a row)");
}

TEST(LivenessCheckTest, AProbeThatCannotStartIsAMiss) {
  LivenessSpec spec = Exec({"/no/such/probe"});
  spec.failure_threshold = 1;
  Running r(spec);
  ASSERT_TRUE(r.failed.WaitForNotificationWithTimeout(testing::kHangGuard));
  EXPECT_THAT(r.why, HasSubstr("probe \"/no/such/probe\" could not be started"));
}

}  // namespace
}  // namespace hostd::manager
