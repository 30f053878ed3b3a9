// The supervision tree's decisions (manager/supervisor.h): intensity, backoff,
// strategies and escalation. The Host acting on them is tested in host_test.cc.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/supervisor.h"
#include "testing/status_matchers.h"

namespace hostd::manager {
namespace {

using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using proc::ProcStatus;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

Supervision Always(std::string group = "") {
  return {.restart =
              {.mode = RestartMode::kAlways,
               .max_restarts = 10,
               .within = absl::Minutes(1),
               .backoff = {.initial = absl::Milliseconds(10), .max = absl::Seconds(1), .multiplier = 2, .jitter = 0}},
          .group = std::move(group)};
}

GroupSpec Group(Strategy s, int max_restarts = 10, std::string parent = "") {
  return {.parent = std::move(parent),
          .strategy = s,
          .max_restarts = max_restarts,
          .within = absl::Minutes(1),
          .backoff = {.initial = absl::Milliseconds(50), .max = absl::Seconds(1), .multiplier = 2, .jitter = 0}};
}

ProcStatus Crash() { return ProcStatus::Killed(9, false); }

TEST(SupervisorTest, CrashLoopStopsAtTheIntensityAndGivesUp) {
  Supervisor sup;
  Supervision s = Always();
  s.restart.max_restarts = 3;
  sup.AddProc("a", s);
  for (int i = 0; i < 3; ++i) {
    Supervisor::Plan p = sup.OnExit("a", Crash(), kT0 + absl::Seconds(i), false);
    EXPECT_THAT(p.restart, ElementsAre("a")) << i;
    EXPECT_FALSE(p.proc_gave_up);
  }
  Supervisor::Plan p = sup.OnExit("a", Crash(), kT0 + absl::Seconds(3), false);
  EXPECT_THAT(p.restart, IsEmpty());
  EXPECT_THAT(p.end, ElementsAre("a"));
  EXPECT_TRUE(p.proc_gave_up);
  EXPECT_THAT(p.why, HasSubstr("gave up: 3 restarts within 1m"));
}

TEST(SupervisorTest, BackoffDelaysGrowWithinTheirBounds) {
  Supervisor sup;
  Supervision s = Always();
  s.restart.backoff = {
      .initial = absl::Milliseconds(100), .max = absl::Milliseconds(800), .multiplier = 2, .jitter = 0.25};
  sup.AddProc("a", s);
  absl::Duration prev = absl::ZeroDuration();
  for (int i = 1; i <= 6; ++i) {
    Supervisor::Plan p = sup.OnExit("a", Crash(), kT0 + absl::Seconds(i), false);
    ASSERT_THAT(p.restart, ElementsAre("a"));
    EXPECT_EQ(p.attempt, i);
    absl::Duration base = std::min(absl::Milliseconds(100) * (1 << (i - 1)), absl::Milliseconds(800));
    EXPECT_LE(p.delay, base) << i;
    EXPECT_GE(p.delay, base * 0.75) << i;
    // Doubling outgrows a 25% jitter cut until the cap.
    if (i <= 4) {
      EXPECT_GT(p.delay, prev) << i;
    }
    prev = p.delay;
  }
}

TEST(SupervisorTest, TransientProcIsRestartedAfterAFailureOnly) {
  Supervisor sup;
  Supervision s = Always();
  s.restart.mode = RestartMode::kOnFailure;
  sup.AddProc("t", s);
  EXPECT_TRUE(sup.OnExit("t", ProcStatus::Stopped(0), kT0, false).empty());
  EXPECT_THAT(sup.OnExit("t", ProcStatus::Stopped(1), kT0, false).restart, ElementsAre("t"));
  EXPECT_THAT(sup.OnExit("t", Crash(), kT0, false).restart, ElementsAre("t"));
  sup.AddProc("never", Supervision{});
  EXPECT_FALSE(sup.Supervises("never"));
  EXPECT_TRUE(sup.OnExit("never", Crash(), kT0, false).empty());
}

TEST(SupervisorTest, OneForAllStopsTheOthersInReverseAndStartsAllInOrder) {
  Supervisor sup;
  ASSERT_THAT(sup.AddGroup("g", Group(Strategy::kOneForAll)), IsOk());
  for (const char* n : {"a", "b", "c"}) sup.AddProc(n, Always("g"));
  Supervisor::Plan p = sup.OnExit("b", Crash(), kT0, false);
  EXPECT_THAT(p.stop, ElementsAre("c", "a"));
  EXPECT_THAT(p.restart, ElementsAre("a", "b", "c"));
  EXPECT_EQ(p.delay, absl::Milliseconds(50));  // the group's backoff
}

TEST(SupervisorTest, RestForOneRestartsOnlyTheLaterSiblings) {
  Supervisor sup;
  ASSERT_THAT(sup.AddGroup("g", Group(Strategy::kRestForOne)), IsOk());
  for (const char* n : {"a", "b", "c", "d"}) sup.AddProc(n, Always("g"));
  Supervisor::Plan p = sup.OnExit("b", Crash(), kT0, false);
  EXPECT_THAT(p.stop, ElementsAre("d", "c"));
  EXPECT_THAT(p.restart, ElementsAre("b", "c", "d"));
}

TEST(SupervisorTest, OneForOneRestartsTheProcAloneWithItsOwnBackoff) {
  Supervisor sup;
  ASSERT_THAT(sup.AddGroup("g", Group(Strategy::kOneForOne)), IsOk());
  for (const char* n : {"a", "b"}) sup.AddProc(n, Always("g"));
  Supervisor::Plan p = sup.OnExit("a", Crash(), kT0, false);
  EXPECT_THAT(p.stop, IsEmpty());
  EXPECT_THAT(p.restart, ElementsAre("a"));
  EXPECT_EQ(p.delay, absl::Milliseconds(10));
}

TEST(SupervisorTest, TemporaryMembersAreStoppedNotRestartedByTheirGroup) {
  Supervisor sup;
  ASSERT_THAT(sup.AddGroup("g", Group(Strategy::kOneForAll)), IsOk());
  sup.AddProc("a", Always("g"));
  sup.AddProc("tmp", Supervision{.restart = {}, .group = "g"});
  Supervisor::Plan p = sup.OnExit("a", Crash(), kT0, false);
  EXPECT_THAT(p.restart, ElementsAre("a"));
  EXPECT_THAT(p.end, ElementsAre("tmp"));
  EXPECT_THAT(p.stop, ElementsAre("tmp"));
}

TEST(SupervisorTest, AGroupPastItsIntensityEscalatesToItsParent) {
  Supervisor sup;
  ASSERT_THAT(sup.AddGroup("top", Group(Strategy::kOneForOne, 1)), IsOk());
  ASSERT_THAT(sup.AddGroup("inner", Group(Strategy::kOneForOne, 1, "top")), IsOk());
  sup.AddProc("x", Always("top"));
  sup.AddProc("a", Always("inner"));
  sup.AddProc("b", Always("inner"));
  EXPECT_THAT(sup.GroupPath("a"), ElementsAre("top", "inner"));

  EXPECT_THAT(sup.OnExit("a", Crash(), kT0, false).restart, ElementsAre("a"));
  // The second failure is past inner's intensity: inner gives up, and top restarts
  // it (one-for-one on the child "inner": all of its procs), starting it afresh.
  Supervisor::Plan p = sup.OnExit("a", Crash(), kT0 + absl::Seconds(1), false);
  EXPECT_THAT(p.gave_up_groups, ElementsAre("inner"));
  EXPECT_THAT(p.restart, ElementsAre("a", "b"));
  EXPECT_THAT(p.stop, ElementsAre("b"));
  EXPECT_THAT(p.why, HasSubstr("group \"inner\" gave up"));
  EXPECT_FALSE(sup.Groups()[1].gave_up) << "restarted by its parent";

  // inner fails again at once: top is past its own intensity too, and gives up at
  // the top: every proc under it ends for good and the host reports it.
  EXPECT_THAT(sup.OnExit("b", Crash(), kT0 + absl::Seconds(2), false).restart, ElementsAre("b"));
  p = sup.OnExit("b", Crash(), kT0 + absl::Seconds(3), false);
  EXPECT_THAT(p.gave_up_groups, ElementsAre("inner", "top"));
  EXPECT_THAT(p.restart, IsEmpty());
  EXPECT_THAT(p.end, ElementsAre("a", "b", "x"));  // inner joined top before x
  EXPECT_THAT(p.stop, ElementsAre("x", "a"));
  EXPECT_TRUE(sup.Groups()[0].gave_up);
  EXPECT_THAT(sup.CheckJoin("top"), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("gave up")));
}

TEST(SupervisorTest, AProcPastItsOwnIntensityFailsItsGroup) {
  Supervisor sup;
  ASSERT_THAT(sup.AddGroup("g", Group(Strategy::kOneForOne)), IsOk());
  Supervision s = Always("g");
  s.restart.max_restarts = 0;
  sup.AddProc("a", s);
  sup.AddProc("b", Always("g"));
  Supervisor::Plan p = sup.OnExit("a", Crash(), kT0, false);
  EXPECT_TRUE(p.proc_gave_up);
  EXPECT_THAT(p.gave_up_groups, ElementsAre("g"));
  EXPECT_THAT(p.end, ElementsAre("a", "b"));
}

TEST(SupervisorTest, GroupsAreValidated) {
  Supervisor sup;
  EXPECT_THAT(sup.AddGroup("bad name", Group(Strategy::kOneForOne)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid group name")));
  GroupSpec g = Group(Strategy::kOneForOne);
  g.within = absl::ZeroDuration();
  EXPECT_THAT(sup.AddGroup("g", g), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("within")));
  EXPECT_THAT(sup.AddGroup("g", Group(Strategy::kOneForOne, 3, "nope")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no parent group named \"nope\"")));
  ASSERT_THAT(sup.AddGroup("g", Group(Strategy::kOneForOne)), IsOk());
  EXPECT_THAT(sup.AddGroup("g", Group(Strategy::kOneForOne)), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(sup.CheckJoin("h"), StatusIs(absl::StatusCode::kNotFound));
  sup.AddProc("a", Always("g"));
  EXPECT_THAT(sup.RemoveGroup("g"), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("1 members")));
  sup.RemoveProc("a");
  EXPECT_THAT(sup.RemoveGroup("g"), IsOk());
}

}  // namespace
}  // namespace hostd::manager
