#include <csignal>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proc/proc_id.h"
#include "proc/proc_status.h"
#include "testing/status_matchers.h"

namespace hostd::proc {
namespace {

using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ProcIdTest, RoundTripsAndSplitsAtLastComma) {
  for (const char* text : {"unix:@fe,trainer-3", "tcp:127.0.0.1:4000,a", "unix:/run/a,b/fe.sock,w_1.x", "local:7,Z9"}) {
    absl::StatusOr<ProcId> id = ProcId::Parse(text);
    ASSERT_THAT(id, IsOk()) << text;
    EXPECT_EQ(id->ToString(), text);
  }
  ProcId id = *ProcId::Parse("unix:/run/a,b/fe.sock,w_1.x");
  EXPECT_EQ(id.frontend().host(), "/run/a,b/fe.sock");
  EXPECT_EQ(id.name(), "w_1.x");
}

TEST(ProcIdTest, InvalidNamesAreRejectedWithTheRule) {
  EXPECT_THAT(ProcId::ValidateName(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(ProcId::ValidateName("-x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("start with a letter")));
  EXPECT_THAT(ProcId::ValidateName("a b"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("' ' is not allowed")));
  EXPECT_THAT(ProcId::ValidateName("a,b"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("',' is not allowed")));
  EXPECT_THAT(ProcId::ValidateName(std::string(65, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 64")));
  EXPECT_THAT(ProcId::ValidateName(std::string(64, 'a')), IsOk());
  EXPECT_THAT(ProcId::Parse("no-comma"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("<address>,<name>")));
  EXPECT_THAT(ProcId::Parse("bogus:1,x"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown scheme")));
}

TEST(ProcStatusTest, EveryLegalAndIllegalTransition) {
  using S = ProcState;
  const S all[] = {S::kStarting, S::kRunning, S::kReady, S::kStopping, S::kStopped, S::kKilled, S::kFailed};
  auto legal = [](S from, S to) {
    if (IsTerminal(from)) return false;  // terminal states absorb
    if (IsTerminal(to)) return true;     // anything may end
    if (to == S::kRunning) return from == S::kStarting;
    if (to == S::kReady) return from == S::kRunning;  // never after Stopping
    if (to == S::kStopping) return from != S::kStopping;
    return false;  // nothing returns to Starting
  };
  int checked = 0;
  for (S from : all) {
    for (S to : all) {
      EXPECT_EQ(IsLegalTransition(from, to), legal(from, to)) << ProcStateName(from) << " -> " << ProcStateName(to);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 49);
  EXPECT_FALSE(IsLegalTransition(S::kStopping, S::kReady));
}

TEST(ProcStatusTest, CellRefusesIllegalAndCarriesFieldsForward) {
  ProcStatusCell cell;
  ASSERT_THAT(cell.Transition(ProcStatus::Running(42, absl::FromUnixSeconds(7))), IsOk());
  ASSERT_THAT(cell.Transition(ProcStatus::Ready(channel::ChannelAddr::Local(3))), IsOk());
  ASSERT_THAT(cell.Transition(ProcStatus::Stopping()), IsOk());
  EXPECT_THAT(cell.Transition(ProcStatus::Ready(channel::ChannelAddr::Local(3))),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("from Stopping to Ready")));
  ASSERT_THAT(cell.Transition(ProcStatus::Stopped(0)), IsOk());
  EXPECT_THAT(cell.Transition(ProcStatus::Killed(SIGKILL, false)), StatusIs(absl::StatusCode::kFailedPrecondition));
  ProcStatus end = cell.Get();
  EXPECT_EQ(end.state, ProcState::kStopped);
  EXPECT_EQ(end.pid, 42);
  EXPECT_EQ(end.started_at, absl::FromUnixSeconds(7));
  EXPECT_EQ(end.addr, channel::ChannelAddr::Local(3));
  EXPECT_TRUE(end.was_ready()) << "the time it became ready carries forward too";
  EXPECT_FALSE(ProcStatus::Stopped(0).was_ready());
}

TEST(ProcStatusTest, DisplayStrings) {
  EXPECT_EQ(ProcStatus::Running(9, absl::Now()).ToString(), "Running(pid 9)");
  EXPECT_EQ(ProcStatus::Ready(channel::ChannelAddr::Local(2)).ToString(), "Ready(local:2)");
  EXPECT_EQ(ProcStatus::Stopped(7).ToString(), "Stopped(exit 7)");
  EXPECT_EQ(ProcStatus::Killed(SIGKILL, false).ToString(), "Killed(SIGKILL)");
  EXPECT_EQ(ProcStatus::Killed(SIGSEGV, true).ToString(), "Killed(SIGSEGV, core dumped)");
  ProcStatus oom = ProcStatus::Killed(SIGKILL, false);
  oom.reason = std::string(kReasonOom);
  EXPECT_EQ(oom.ToString(), "Killed(SIGKILL, oom)");
  EXPECT_EQ(ProcStatus::Failed("no exec").ToString(), "Failed(no exec)");
}

TEST(ProcStatusTest, AWatcherFromTheFirstStatusSeesTheWholeHistoryThenWhatFollows) {
  ProcStatusCell cell;
  ASSERT_THAT(cell.Transition(ProcStatus::Running(1, absl::Now())), IsOk());
  ASSERT_THAT(cell.Transition(ProcStatus::Ready(channel::ChannelAddr::Local(1))), IsOk());
  std::vector<ProcState> from_first;
  std::vector<ProcState> from_now;
  cell.Watch([&](const ProcStatus& s) { from_first.push_back(s.state); }, WatchFrom::kFirst);
  cell.Watch([&](const ProcStatus& s) { from_now.push_back(s.state); });
  ASSERT_THAT(cell.Transition(ProcStatus::Stopped(3)), IsOk());
  EXPECT_THAT(from_first,
              ElementsAre(ProcState::kStarting, ProcState::kRunning, ProcState::kReady, ProcState::kStopped));
  EXPECT_THAT(from_now, ElementsAre(ProcState::kReady, ProcState::kStopped));
}

TEST(ProcStatusTest, WatchersSeeEveryTransitionInOrderUnderConcurrency) {
  ProcStatusCell cell;
  std::vector<ProcState> seen;
  absl::Mutex mu;
  cell.Watch([&](const ProcStatus& s) {
    absl::MutexLock lock(&mu);
    seen.push_back(s.state);
  });
  // Racing transitions: whichever wins, watchers get the states in the order applied.
  std::vector<std::thread> racers;
  ASSERT_THAT(cell.Transition(ProcStatus::Running(1, absl::Now())), IsOk());
  ASSERT_THAT(cell.Transition(ProcStatus::Ready(channel::ChannelAddr::Local(1))), IsOk());
  for (int i = 0; i < 4; ++i) racers.emplace_back([&] { (void)cell.Transition(ProcStatus::Stopping()); });
  for (auto& t : racers) t.join();
  ASSERT_THAT(cell.Transition(ProcStatus::Stopped(0)), IsOk());
  absl::MutexLock lock(&mu);
  EXPECT_THAT(seen, ElementsAre(ProcState::kStarting, ProcState::kRunning, ProcState::kReady, ProcState::kStopping,
                                ProcState::kStopped));
}

TEST(ProcStatusTest, AwaitReturnsWhenPredicateHoldsOrAtDeadline) {
  ProcStatusCell cell;
  bool met = true;
  cell.Await([](const ProcStatus& s) { return s.terminal(); }, absl::Now() + absl::Milliseconds(10), &met);
  EXPECT_FALSE(met);
  std::thread t([&] { (void)cell.Transition(ProcStatus::Failed("x")); });
  ProcStatus s = cell.Await([](const ProcStatus& s) { return s.terminal(); }, absl::Now() + absl::Seconds(60), &met);
  t.join();
  EXPECT_TRUE(met);
  EXPECT_EQ(s.state, ProcState::kFailed);
}

TEST(ProcStatusTest, AWatcherMayAwaitAStatusAppliedByAnotherThread) {
  // A watcher waiting on its own cell is the deliverer: what it waits for can only be
  // delivered after it returns, so it must wake on the status alone.
  ProcStatusCell cell;
  std::vector<ProcState> seen;
  bool met = false;
  ProcStatus awaited;
  cell.Watch([&](const ProcStatus& s) {
    seen.push_back(s.state);
    if (s.state != ProcState::kRunning) return;
    std::thread ender([&] { (void)cell.Transition(ProcStatus::Killed(SIGKILL, false)); });
    awaited = cell.Await([](const ProcStatus& st) { return st.terminal(); }, absl::Now() + absl::Seconds(60), &met);
    ender.join();
  });
  ASSERT_THAT(cell.Transition(ProcStatus::Running(1, absl::Now())), IsOk());
  EXPECT_TRUE(met);
  EXPECT_EQ(awaited.state, ProcState::kKilled);
  EXPECT_THAT(seen, ElementsAre(ProcState::kStarting, ProcState::kRunning, ProcState::kKilled))
      << "what the watcher waited for is still delivered to it, after it returned";
}

}  // namespace
}  // namespace hostd::proc
