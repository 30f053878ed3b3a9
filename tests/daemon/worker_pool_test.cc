#include <atomic>
#include <memory>
#include <thread>

#include "absl/synchronization/notification.h"
#include "daemon/worker_pool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/eventually.h"
#include "testing/status_matchers.h"

namespace hostd::daemon {
namespace {

using ::hostd::testing::HangGuard;
using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::testing::HasSubstr;

TEST(WorkerPoolTest, RunsEverySubmittedTask) {
  std::atomic<int> ran{0};
  absl::Notification all;
  constexpr int kTasks = 200;
  WorkerPool pool(4, kTasks);
  for (int i = 0; i < kTasks; ++i) {
    ASSERT_THAT(pool.Submit([&] {
      if (++ran == kTasks) all.Notify();
    }),
                IsOk());
  }
  ASSERT_TRUE(all.WaitForNotificationWithDeadline(HangGuard()));
  EXPECT_EQ(ran.load(), kTasks);
}

TEST(WorkerPoolTest, TasksRunOnSeveralThreadsAtOnce) {
  WorkerPool pool(2, 10);
  absl::Notification both_running, release;
  std::atomic<int> running{0};
  for (int i = 0; i < 2; ++i) {
    ASSERT_THAT(pool.Submit([&] {
      if (++running == 2) both_running.Notify();
      release.WaitForNotification();
    }),
                IsOk());
  }
  EXPECT_TRUE(both_running.WaitForNotificationWithDeadline(HangGuard()));
  release.Notify();
}

TEST(WorkerPoolTest, FullQueueIsResourceExhausted) {
  WorkerPool pool(1, 2);
  absl::Notification started, release;
  ASSERT_THAT(pool.Submit([&] {
    started.Notify();
    release.WaitForNotification();
  }),
              IsOk());
  ASSERT_TRUE(started.WaitForNotificationWithDeadline(HangGuard()));  // the only thread is busy
  ASSERT_THAT(pool.Submit([] {}), IsOk());
  ASSERT_THAT(pool.Submit([] {}), IsOk());
  EXPECT_THAT(pool.Submit([] {}),
              StatusIs(absl::StatusCode::kResourceExhausted, "2 blocking calls are already queued, the limit; retry later"));
  release.Notify();
  // Room again once the queue drains.
  EXPECT_TRUE(::hostd::testing::Eventually([&] { return pool.Submit([] {}).ok(); }));
}

TEST(WorkerPoolTest, DestructionRunsEveryQueuedTaskThenJoins) {
  std::atomic<int> ran{0};
  absl::Notification release;
  {
    WorkerPool pool(1, 100);
    ASSERT_THAT(pool.Submit([&] {
      release.WaitForNotification();
      ++ran;
    }),
                IsOk());
    for (int i = 0; i < 50; ++i) ASSERT_THAT(pool.Submit([&] { ++ran; }), IsOk());
    release.Notify();
  }  // ~WorkerPool
  EXPECT_EQ(ran.load(), 51) << "every task queued before destruction ran, and none is still running";
}

TEST(WorkerPoolTest, TaskSubmittedWhileShuttingDownIsRefused) {
  absl::Notification in_task, release;
  auto pool = std::make_unique<WorkerPool>(1, 1000);
  WorkerPool* raw = pool.get();  // alive until the running task ends: the destructor joins it
  ASSERT_THAT(pool->Submit([&] {
    in_task.Notify();
    release.WaitForNotification();
  }),
              IsOk());
  ASSERT_TRUE(in_task.WaitForNotificationWithDeadline(HangGuard()));
  std::thread destroyer([&] { pool.reset(); });
  absl::Status late;
  EXPECT_TRUE(::hostd::testing::Eventually([&] {
    late = raw->Submit([] {});
    return !late.ok();
  }));
  EXPECT_THAT(late, StatusIs(absl::StatusCode::kUnavailable, "the worker pool is shutting down"));
  release.Notify();
  destroyer.join();
}

}  // namespace
}  // namespace hostd::daemon
