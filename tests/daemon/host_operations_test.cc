// What a Host tells operators: drain, the message path's counters by link kind and
// return reason, the links' stats, and HostMetrics' Prometheus text.
#include <string>

#include "daemon/host.h"
#include "daemon/host_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/eventually.h"
#include "testing/status_matchers.h"
#include "tests/daemon/host_test_util.h"

namespace hostd::daemon {
namespace {

using channel::Message;
using channel::ReturnReason;
using ::hostd::testing::Eventually;
using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::testing::HasSubstr;

constexpr size_t kProcLink = static_cast<size_t>(Router::LinkKind::kProc);
constexpr size_t kRemoteLink = static_cast<size_t>(Router::LinkKind::kRemote);

TEST(HostOperationsTest, ADrainedHostRefusesSpawnsNamingTheDrainWhileItsProcsKeepServing) {
  LocalHost h;
  ASSERT_THAT(h.host->Spawn("echo", EchoSpec()), IsOk());
  EXPECT_FALSE(h.host->SetDraining(true));
  EXPECT_TRUE(h.host->draining());
  EXPECT_THAT(h.host->Spawn("late", EchoSpec()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("host is draining")));
  EXPECT_EQ(SpawnFailureCause(h.host->Spawn("late", EchoSpec()).status()), "draining");
  Client c(h.host->frontend());
  ASSERT_THAT(c.Tell(h.Dest("echo"), "echo", "still here"), IsOk());
  EXPECT_EQ(c.Next().payload(), "still here");
  EXPECT_TRUE(h.host->SetDraining(false));
  EXPECT_THAT(h.host->Spawn("late", EchoSpec()), IsOk());
}

TEST(HostOperationsTest, CountersSayWhichLinksForwardedAndWhyMessagesCameBack) {
  LocalHost h;
  ASSERT_THAT(h.host->Spawn("echo", EchoSpec()), IsOk());
  Client c(h.host->frontend());
  ASSERT_THAT(c.Tell(h.Dest("echo"), "echo", "hello"), IsOk());
  EXPECT_EQ(c.Next().payload(), "hello");
  ASSERT_THAT(c.Tell(h.Dest("ghost"), "echo", "boo"), IsOk());
  EXPECT_EQ(c.Next().reason(), ReturnReason::kUnknownProc);

  Router::Counters n = h.host->router_counters();
  EXPECT_EQ(n.forwarded_by_kind[kProcLink], 1u);    // in to echo
  EXPECT_GE(n.forwarded_by_kind[kRemoteLink], 1u);  // the reply, out to the client's host
  EXPECT_GT(n.forwarded_bytes_by_kind[kProcLink], 0u);
  EXPECT_EQ(n.returned_by_reason[static_cast<size_t>(ReturnReason::kUnknownProc)], 1u);
  EXPECT_EQ(n.returned, 1u);
  // The link to echo has acknowledged its message and holds nothing now.
  ASSERT_TRUE(Eventually([&] { return h.host->link_stats()[kProcLink].stats.messages_acked == 1; }));
  std::array<Router::LinkTotals, Router::kLinkKinds> links = h.host->link_stats();
  EXPECT_EQ(links[kProcLink].open_links, 1u);
  EXPECT_EQ(links[kProcLink].stats.queue_depth, 0u);
  EXPECT_TRUE(h.host->Responsive(kHangGuard));

  // A terminated proc's link closes; its counts stay.
  ASSERT_THAT(h.host->Terminate("echo", absl::Seconds(5), "test"), IsOk());
  ASSERT_TRUE(Eventually([&] { return h.host->link_stats()[kProcLink].open_links == 0; }));
  EXPECT_EQ(h.host->link_stats()[kProcLink].stats.messages_acked, 1u);
}

TEST(HostOperationsTest, MetricsFollowTheHostsEvents) {
  LocalHost h;
  HostMetrics metrics(*h.host);
  metrics.SpawnDone(h.host->Spawn("echo", EchoSpec()).status());
  metrics.SpawnDone(h.host->Spawn("echo", EchoSpec()).status());  // the name is taken
  std::string text = metrics.Scrape();
  EXPECT_THAT(text, HasSubstr("\nhostd_spawns_total 1\n"));
  EXPECT_THAT(text, HasSubstr("\nhostd_spawn_failures_total{cause=\"name_taken\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("\nhostd_spawn_to_ready_seconds_count 1\n"));
  EXPECT_THAT(text, HasSubstr("\nhostd_procs{state=\"ready\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE hostd_link_queue_time_seconds summary\n"));
  ASSERT_THAT(h.host->Kill("echo"), IsOk());
  ASSERT_TRUE(
      Eventually([&] { return metrics.Scrape().find("\nhostd_procs{state=\"killed\"} 1\n") != std::string::npos; }));
  EXPECT_THAT(metrics.Scrape(), HasSubstr("\nhostd_proc_exits_total{kind=\"killed\"} 1\n"));
}

}  // namespace
}  // namespace hostd::daemon
