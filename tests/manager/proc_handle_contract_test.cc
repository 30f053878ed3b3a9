// The ProcHandle contract, run against both managers.
#include <csignal>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager_test_util.h"
#include "testing/status_matchers.h"

namespace hostd::manager {
namespace {

using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using proc::ProcState;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class ProcHandleContractTest : public ::testing::TestWithParam<Kind> {
 protected:
  ManagerHarness h_{GetParam()};
};

INSTANTIATE_TEST_SUITE_P(Managers, ProcHandleContractTest, ::testing::Values(Kind::kProcess, Kind::kLocal),
                         [](const auto& info) { return KindName(info.param); });

TEST_P(ProcHandleContractTest, ReadyWithManyWaiters) {
  auto handle = h_.Spawn("ready");
  ASSERT_THAT(handle, IsOk());
  std::vector<std::thread> waiters;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    waiters.emplace_back([&] {
      if ((*handle)->Ready(HangGuard()).ok()) ++ok;
    });
  }
  for (auto& t : waiters) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ((*handle)->status().state, ProcState::kReady);
  ASSERT_TRUE((*handle)->addr().has_value());
  EXPECT_EQ((*handle)->proc_id().name(), "ready");
}

TEST_P(ProcHandleContractTest, WaitReturnsTheRealTerminalStatus) {
  auto handle = h_.Spawn("exits", {.exit_after_ms = 100, .exit_code = 3});
  ASSERT_THAT(handle, IsOk());
  absl::StatusOr<proc::ProcStatus> end = (*handle)->Wait(HangGuard());
  ASSERT_THAT(end, IsOk());
  EXPECT_EQ(end->state, ProcState::kStopped);
  EXPECT_EQ(end->exit_code, 3);
  EXPECT_THAT((*handle)->Wait(absl::Now()), IsOk()) << "many waiters, also late ones";
}

TEST_P(ProcHandleContractTest, WaitTimesOutOnARunningProc) {
  auto handle = h_.Spawn("runs");
  ASSERT_THAT(handle, IsOk());
  EXPECT_THAT((*handle)->Wait(absl::Now() + absl::Milliseconds(20)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("has not ended")));
}

TEST_P(ProcHandleContractTest, GracefulTerminateStopsWithExitZero) {
  auto handle = h_.Spawn("graceful", {.exit_code = 0});
  ASSERT_THAT(handle, IsOk());
  absl::StatusOr<proc::ProcStatus> end = (*handle)->Terminate(absl::Seconds(30), "test over");
  ASSERT_THAT(end, IsOk());
  EXPECT_EQ(end->state, ProcState::kStopped) << *end;
  EXPECT_EQ(end->exit_code, 0);
  EXPECT_TRUE(h_.manager().Procs().empty()) << "an ended proc is forgotten";
}

TEST_P(ProcHandleContractTest, TerminateOfAnEndedProcReturnsItsStatus) {
  auto handle = h_.Spawn("ended", {.exit_after_ms = 0, .exit_code = 4});
  ASSERT_THAT(handle, IsOk());
  ASSERT_THAT((*handle)->Wait(HangGuard()), IsOk());
  absl::StatusOr<proc::ProcStatus> end = (*handle)->Terminate(absl::Seconds(1), "again");
  ASSERT_THAT(end, IsOk());
  EXPECT_EQ(end->state, ProcState::kStopped);
  EXPECT_EQ(end->exit_code, 4);
  EXPECT_THAT((*handle)->Kill(), IsOk());
}

TEST_P(ProcHandleContractTest, ConcurrentTerminateCallersShareOneResult) {
  auto handle = h_.Spawn("shared", {.ignore_stop = true});
  ASSERT_THAT(handle, IsOk());
  std::vector<std::thread> callers;
  std::vector<absl::StatusOr<proc::ProcStatus>> results(6, absl::UnknownError("unset"));
  for (int i = 0; i < 6; ++i) {
    callers.emplace_back([&, i] { results[i] = (*handle)->Terminate(absl::Milliseconds(300), "race"); });
  }
  for (auto& t : callers) t.join();
  for (auto& r : results) {
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(*r, *results[0]);
  }
  EXPECT_TRUE(results[0]->terminal());
}

TEST_P(ProcHandleContractTest, KillReportsKilledBySigkill) {
  auto handle = h_.Spawn("killed");
  ASSERT_THAT(handle, IsOk());
  absl::StatusOr<proc::ProcStatus> end = (*handle)->Kill();
  ASSERT_THAT(end, IsOk());
  EXPECT_EQ(end->state, ProcState::kKilled);
  EXPECT_EQ(end->signal, SIGKILL);
}

TEST_P(ProcHandleContractTest, WatchersSeeEveryTransitionInOrder) {
  auto handle = h_.Spawn("watched");
  ASSERT_THAT(handle, IsOk());
  absl::Mutex mu;
  std::vector<ProcState> seen;
  (*handle)->Watch([&](const proc::ProcStatus& s) {
    absl::MutexLock lock(&mu);
    seen.push_back(s.state);
  });
  ASSERT_THAT((*handle)->Terminate(absl::Seconds(30), "watch"), IsOk());
  absl::MutexLock lock(&mu);
  EXPECT_THAT(seen, ElementsAre(ProcState::kReady, ProcState::kStopping, ProcState::kStopped));
}

TEST_P(ProcHandleContractTest, AWatcherMayKillItsHandle) {
  auto handle = h_.Spawn("killed-by-watcher");
  ASSERT_THAT(handle, IsOk());
  std::shared_ptr<ProcHandle> h = *handle;
  absl::StatusOr<proc::ProcStatus> end = absl::UnknownError("the watcher did not run");
  absl::Mutex mu;
  std::vector<ProcState> seen;
  // The first call (Ready) runs on this thread, which delivers until Watch returns;
  // the exit is observed meanwhile by the manager, on its own thread.
  h->Watch([&](const proc::ProcStatus& s) {
    {
      absl::MutexLock lock(&mu);
      seen.push_back(s.state);
    }
    if (s.state == ProcState::kReady) end = h->Kill();
  });
  ASSERT_THAT(end, IsOk());
  EXPECT_EQ(end->state, ProcState::kKilled) << *end;
  EXPECT_EQ(end->signal, SIGKILL);
  ASSERT_THAT(h->Wait(HangGuard()), IsOk());
  absl::MutexLock lock(&mu);
  EXPECT_THAT(seen, ElementsAre(ProcState::kReady, ProcState::kStopping, ProcState::kKilled));
  EXPECT_TRUE(h_.manager().Procs().empty());
}

TEST_P(ProcHandleContractTest, DuplicateNameIsAlreadyExistsUntilTheProcEnds) {
  auto first = h_.Spawn("dup");
  ASSERT_THAT(first, IsOk());
  EXPECT_THAT(h_.Spawn("dup"), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("proc \"dup\" already exists")));
  ASSERT_THAT((*first)->Kill(), IsOk());
  EXPECT_THAT(h_.Spawn("dup"), IsOk()) << "the name is free once the proc ended";
}

TEST_P(ProcHandleContractTest, TerminateAllEndsEveryProcAndSummarises) {
  for (int i = 0; i < 6; ++i) {
    ASSERT_THAT(h_.Spawn(absl::StrCat("p", i), {.ignore_stop = i % 2 == 1}), IsOk());
  }
  TerminateSummary s = h_.bulk().TerminateAll(absl::Milliseconds(300), 3, "shutdown");
  EXPECT_EQ(s.attempted, 6);
  EXPECT_EQ(s.ok, 6);
  EXPECT_EQ(s.failed, 0);
  ASSERT_EQ(s.outcomes.size(), 6u);
  for (const auto& o : s.outcomes) {
    ASSERT_THAT(o.result, IsOk()) << o.proc_id;
    EXPECT_TRUE(o.result->terminal());
  }
  EXPECT_TRUE(h_.manager().Procs().empty());
}

TEST_P(ProcHandleContractTest, KillAllKillsEveryProcWithoutAskingFirst) {
  for (int i = 0; i < 4; ++i) {
    ASSERT_THAT(h_.Spawn(absl::StrCat("k", i), {.ignore_stop = true}), IsOk());
  }
  TerminateSummary s = h_.bulk().KillAll(HangGuard());
  EXPECT_EQ(s.attempted, 4);
  EXPECT_EQ(s.ok, 4);
  EXPECT_EQ(s.failed, 0);
  for (const auto& o : s.outcomes) {
    ASSERT_THAT(o.result, IsOk()) << o.proc_id;
    EXPECT_EQ(o.result->state, ProcState::kKilled) << o.proc_id;
    EXPECT_EQ(o.result->signal, SIGKILL) << o.proc_id;
  }
  EXPECT_TRUE(h_.manager().Procs().empty());
  if (GetParam() == Kind::kProcess) {
    EXPECT_TRUE(NoChildrenLeft(h_.process().janitor_pid()));
  }
}

TEST_P(ProcHandleContractTest, OversizeInitialStateFailsTheSpawnAndNothingRuns) {
  SpawnSpec spec = h_.Spec({});
  spec.initial_state = std::string(proc::kMaxStateBytes + 1, 'x');
  EXPECT_THAT(
      h_.manager().Spawn(h_.Id("bloated"), h_.backend(), spec),
      StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("\"bloated\""), HasSubstr("initial state"))));
  EXPECT_TRUE(h_.manager().Procs().empty());
  if (GetParam() == Kind::kProcess) {
    EXPECT_TRUE(NoChildrenLeft(h_.process().janitor_pid()));
  }
  EXPECT_THAT(h_.Spawn("bloated"), IsOk()) << "the name is free";
}

TEST(LocalProcManagerTest, InitialStateReachesTheInProcessRuntime) {
  LocalProcManager mgr;
  auto loop = channel::EventLoop::Start("test-host");
  channel::Inbox inbox;
  auto backend = *channel::Listener::Serve(*loop, channel::ChannelAddr::Local(0), inbox);
  absl::Mutex mu;
  std::optional<std::string> in_setup, in_main;
  absl::Notification main_saw;
  SpawnSpec spec;
  spec.initial_state = std::string("carried\0over", 12);
  spec.local_setup = [&](proc::ProcRuntime& rt) {
    absl::MutexLock lock(&mu);
    in_setup = rt.initial_state();
    return absl::OkStatus();
  };
  spec.local_main = [&](proc::ProcRuntime& rt, const absl::Notification&) {
    {
      absl::MutexLock lock(&mu);
      in_main = rt.initial_state();
    }
    main_saw.Notify();
    (void)rt.WaitForStopRequest(absl::InfiniteFuture());
    return 0;
  };
  auto handle = mgr.Spawn(*proc::ProcId::Parse("unix:@fe,heir"), backend->addr(), spec);
  ASSERT_THAT(handle, IsOk());
  ASSERT_TRUE(main_saw.WaitForNotificationWithDeadline(HangGuard()));
  absl::MutexLock lock(&mu);
  EXPECT_EQ(in_setup, spec.initial_state);
  EXPECT_EQ(in_main, spec.initial_state);
}

TEST(LocalProcManagerTest, ProcKilledDuringSetupFailsTheSpawn) {
  LocalProcManager mgr;
  auto loop = channel::EventLoop::Start("test-host");
  channel::Inbox inbox;
  auto backend = *channel::Listener::Serve(*loop, channel::ChannelAddr::Local(0), inbox);
  SpawnSpec spec;
  spec.local_setup = [&](proc::ProcRuntime&) {
    for (auto& p : mgr.Procs()) (void)p->Kill();
    return absl::OkStatus();
  };
  EXPECT_THAT(mgr.Spawn(*proc::ProcId::Parse("unix:@fe,doomed"), backend->addr(), spec),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ended before it was ready: Killed(SIGKILL)")));
  EXPECT_TRUE(mgr.Procs().empty());
}

TEST(LocalProcManagerTest, ProcKilledAsItsReadinessIsDeliveredFailsTheSpawn) {
  auto loop = channel::EventLoop::Start("test-host");
  auto inbox = std::make_unique<channel::Inbox>();
  auto backend = *channel::Listener::Serve(*loop, channel::ChannelAddr::Local(0), *inbox);
  auto mgr = std::make_unique<LocalProcManager>();
  LocalProcManager* m = mgr.get();
  SpawnSpec spec;
  // A watcher registered during setup (a supervisor's policy, say) kills the proc as
  // soon as it sees it Ready: Spawn is the thread delivering that Ready.
  spec.local_setup = [m](proc::ProcRuntime&) {
    for (auto& p : m->Procs()) {
      std::weak_ptr<ProcHandle> weak = p;
      p->Watch([weak](const proc::ProcStatus& s) {
        if (s.state != ProcState::kReady) return;
        if (auto h = weak.lock()) (void)h->Kill();
      });
    }
    return absl::OkStatus();
  };
  EXPECT_THAT(m->Spawn(*proc::ProcId::Parse("unix:@fe,vetoed"), backend->addr(), spec),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ended as it became ready: Killed(SIGKILL)")));
  EXPECT_TRUE(m->Procs().empty());
  // Nothing of the proc is left running: the manager's destructor returns.
  auto destroyed = std::make_shared<absl::Notification>();
  std::thread([raw = mgr.release(), destroyed] {
    delete raw;
    destroyed->Notify();
  }).detach();
  if (!destroyed->WaitForNotificationWithDeadline(HangGuard())) {
    ADD_FAILURE() << "~LocalProcManager hangs";
    // Its proc still talks to the backend: leave everything it may touch alive.
    (void)loop.release();
    (void)inbox.release();
    (void)backend.release();
  }
}

}  // namespace
}  // namespace hostd::manager
