// The scripted fake manager keeps the real Spawn contract for every outcome.
#include <csignal>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/fake_proc_manager.h"
#include "testing/status_matchers.h"

namespace hostd::testing {
namespace {

using proc::ProcState;
using ::testing::HasSubstr;

class FakeProcManagerTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> Spawn(const std::string& name,
                                                             absl::Duration timeout = absl::Seconds(30)) {
    manager::SpawnSpec spec;
    spec.ready_timeout = timeout;
    return mgr_.Spawn(*proc::ProcId::Parse("unix:@fe," + name), channel::ChannelAddr::Local(1), spec);
  }
  FakeProcManager mgr_;
};

TEST_F(FakeProcManagerTest, ReadyAfterADelayWithAnAddress) {
  mgr_.Script("a", {.outcome = FakeOutcome::kReadyAfter, .delay = absl::Milliseconds(50)});
  auto h = Spawn("a");
  ASSERT_THAT(h, IsOk());
  EXPECT_EQ((*h)->status().state, ProcState::kReady);
  EXPECT_TRUE((*h)->addr().has_value());
}

TEST_F(FakeProcManagerTest, ReadinessTimeoutFailsAndForgets) {
  mgr_.Script("slow", {.outcome = FakeOutcome::kNeverReady});
  EXPECT_THAT(Spawn("slow", absl::Milliseconds(50)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("not ready by the deadline")));
  EXPECT_TRUE(mgr_.Procs().empty());
}

TEST_F(FakeProcManagerTest, TerminalBeforeReadyAndChannelClosedFail) {
  mgr_.Script("crash", {.outcome = FakeOutcome::kEndsBeforeReady, .terminal = proc::ProcStatus::Killed(SIGSEGV, true)});
  EXPECT_THAT(Spawn("crash"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("Killed(SIGSEGV, core dumped)")));
  mgr_.Script("closed", {.outcome = FakeOutcome::kChannelClosed});
  EXPECT_THAT(Spawn("closed"), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("readiness channel closed")));
  EXPECT_TRUE(mgr_.Procs().empty());
}

TEST_F(FakeProcManagerTest, ReadyWithoutAddressIsReadyWithNoAddress) {
  mgr_.Script("noaddr", {.outcome = FakeOutcome::kReadyWithoutAddress});
  auto h = Spawn("noaddr");
  ASSERT_THAT(h, IsOk());
  EXPECT_FALSE((*h)->addr().has_value());
}

TEST_F(FakeProcManagerTest, ZeroTimeoutDisablesTheDeadline) {
  mgr_.Script("late", {.outcome = FakeOutcome::kReadyAfter, .delay = absl::Milliseconds(100)});
  EXPECT_THAT(Spawn("late", absl::ZeroDuration()), IsOk());
}

TEST_F(FakeProcManagerTest, StopsAndSignalsEndFakeProcs) {
  auto polite = Spawn("polite");
  mgr_.Script("deaf", {.ignores_stop = true});
  auto deaf = Spawn("deaf");
  ASSERT_THAT(polite, IsOk());
  ASSERT_THAT(deaf, IsOk());
  EXPECT_EQ((*polite)->Terminate(absl::Seconds(1), "x")->state, ProcState::kStopped);
  absl::StatusOr<proc::ProcStatus> end = (*deaf)->Terminate(absl::Milliseconds(100), "x");
  ASSERT_THAT(end, IsOk());
  EXPECT_EQ(end->signal, SIGTERM);
  EXPECT_EQ(mgr_.spawn_count(), 2);
}

TEST_F(FakeProcManagerTest, KillAllEndsEveryFakeProcKilledBySigkill) {
  mgr_.Script("deaf", {.ignores_stop = true});
  auto deaf = Spawn("deaf");
  auto plain = Spawn("plain");
  ASSERT_THAT(deaf, IsOk());
  ASSERT_THAT(plain, IsOk());
  manager::TerminateSummary s = mgr_.KillAll(absl::Now() + absl::Seconds(30));
  EXPECT_EQ(s.attempted, 2);
  EXPECT_EQ(s.ok, 2);
  for (const auto& h : {*deaf, *plain}) {
    EXPECT_EQ(h->status().state, ProcState::kKilled);
    EXPECT_EQ(h->status().signal, SIGKILL);
  }
  EXPECT_TRUE(mgr_.Procs().empty());
}

TEST_F(FakeProcManagerTest, AWatcherMayKillOrTerminateItsHandle) {
  for (bool kill : {true, false}) {
    auto h = Spawn(kill ? "killed-by-watcher" : "terminated-by-watcher");
    ASSERT_THAT(h, IsOk());
    std::shared_ptr<manager::ProcHandle> handle = *h;
    absl::StatusOr<proc::ProcStatus> end = absl::UnknownError("the watcher did not run");
    std::vector<ProcState> seen;
    // Called with Ready at once, on this thread, which is then delivering.
    handle->Watch([&](const proc::ProcStatus& s) {
      seen.push_back(s.state);
      if (s.state != ProcState::kReady) return;
      end = kill ? handle->Kill() : handle->Terminate(absl::Seconds(30), "watcher says no");
    });
    ASSERT_THAT(end, IsOk()) << (kill ? "Kill" : "Terminate") << " from a watcher";
    EXPECT_EQ(*end, handle->status());
    EXPECT_EQ(end->state, kill ? ProcState::kKilled : ProcState::kStopped) << *end;
    EXPECT_THAT(seen, ::testing::ElementsAre(ProcState::kReady, ProcState::kStopping, end->state));
  }
  EXPECT_TRUE(mgr_.Procs().empty());
}

}  // namespace
}  // namespace hostd::testing
