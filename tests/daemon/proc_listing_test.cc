// ProcListing: ListProcs' reply from kept encodings is the typed reply byte for
// byte, through every change a proc goes through, and only the procs that
// changed are encoded again.
#include "daemon/proc_listing.h"

#include <atomic>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

#include "daemon/proto_convert.h"
#include "gmock/gmock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "tests/daemon/host_test_util.h"

namespace hostd::daemon {
namespace {

using ::hostd::testing::IsOk;
using Kind = HostEvent::Kind;

// The reply the typed service would give to an unfiltered listing: every proc
// the host lists, serialized deterministically.
std::string TypedReply(const Host& host) {
  v1::ListProcsResponse resp;
  for (const ProcInfo& p : host.List()) ToProto(p, resp.add_procs());
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    resp.ByteSizeLong();  // the sizes SerializeWithCachedSizes writes
    resp.SerializeWithCachedSizes(&coded);
  }
  return out;
}

Supervision Always() {
  Supervision s;
  s.restart.mode = manager::RestartMode::kAlways;
  s.restart.backoff.initial = absl::Milliseconds(1);
  s.restart.backoff.max = absl::Milliseconds(5);
  return s;
}

TEST(ProcListingTest, ARepliedListingIsTheTypedReplyAndOnlyChangedProcsAreEncodedAgain) {
  LocalHost h;
  EventLog events(*h.host);
  ASSERT_THAT(h.host->Spawn("a", EchoSpec(), {{"team", "x"}}), IsOk());
  ASSERT_THAT(h.host->Spawn("b", EchoSpec(), {}, {}, Lease{.owner = "client", .ttl = absl::Seconds(30)}), IsOk());
  ASSERT_THAT(h.host->Spawn("c", EchoSpec(), {}, Always()), IsOk());
  ProcListing listing(*h.host);
  constexpr size_t kAll = 1 << 20;

  ProcListing::Reply first = listing.List({}, kAll);
  EXPECT_EQ(first.walked, 3u);
  EXPECT_EQ(first.encoded, 3u);
  EXPECT_EQ(first.bytes, TypedReply(*h.host));
  ProcListing::Reply again = listing.List({}, kAll);
  EXPECT_EQ(again.encoded, 0u);
  EXPECT_EQ(again.bytes, first.bytes);

  // A renewed lease: b's deadline moved, and only b is encoded again.
  absl::SleepFor(absl::Milliseconds(2));
  ASSERT_THAT(h.host->RenewLease("client"), IsOk());
  ProcListing::Reply renewed = listing.List({}, kAll);
  EXPECT_EQ(renewed.encoded, 1u);
  EXPECT_NE(renewed.bytes, first.bytes);
  EXPECT_EQ(renewed.bytes, TypedReply(*h.host));

  // An end on request, then a supervised proc's end and its next incarnation.
  ASSERT_THAT(h.host->Kill("a"), IsOk());
  events.Await([](const HostEvent& e) { return e.name == "a" && e.status.terminal(); });
  ASSERT_TRUE(h.host->Handle("c").ok());
  (void)(*h.host->Handle("c"))->Kill();
  EXPECT_EQ(events.Await(Kind::kRestarted, "c").incarnation, 2);
  ProcListing::Reply changed = listing.List({}, kAll);
  EXPECT_EQ(changed.encoded, 2u);
  EXPECT_EQ(changed.bytes, TypedReply(*h.host));
  v1::ListProcsResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(changed.bytes));
  ASSERT_EQ(parsed.procs_size(), 3);
  EXPECT_EQ(parsed.procs(0).status().state(), v1::PROC_STATE_KILLED);
  EXPECT_EQ(parsed.procs(2).incarnation(), 2);

  // Filters read the kept entries: live procs, procs by state, by label.
  v1::ListProcsRequest live;
  live.set_live_only(true);
  ASSERT_TRUE(parsed.ParseFromString(listing.List(live, kAll).bytes));
  ASSERT_EQ(parsed.procs_size(), 2);
  EXPECT_EQ(parsed.procs(0).name(), "b");
  v1::ListProcsRequest killed;
  killed.add_states(v1::PROC_STATE_KILLED);
  ASSERT_TRUE(parsed.ParseFromString(listing.List(killed, kAll).bytes));
  ASSERT_EQ(parsed.procs_size(), 1);
  EXPECT_EQ(parsed.procs(0).name(), "a");
  v1::ListProcsRequest team;
  (*team.mutable_labels())["team"] = "x";
  ASSERT_TRUE(parsed.ParseFromString(listing.List(team, kAll).bytes));
  ASSERT_EQ(parsed.procs_size(), 1);
  EXPECT_EQ(parsed.procs(0).name(), "a");

  // A budget of one byte: one proc per page, each page naming where the next starts.
  v1::ListProcsRequest page;
  std::vector<std::string> names;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(parsed.ParseFromString(listing.List(page, 1).bytes));
    if (parsed.procs_size() == 0) break;
    ASSERT_EQ(parsed.procs_size(), 1);
    names.push_back(parsed.procs(0).name());
    if (parsed.next_page_token().empty()) break;
    EXPECT_EQ(parsed.next_page_token(), parsed.procs(0).name());
    page.set_page_token(parsed.next_page_token());
  }
  EXPECT_THAT(names, ::testing::ElementsAre("a", "b", "c"));

  // Names the table frees leave the listing's memory with them.
  h.host->TerminateChildren(absl::Seconds(5), 8, "test");
  ProcListing::Reply empty = listing.List({}, kAll);
  EXPECT_EQ(empty.walked, 0u);
  EXPECT_TRUE(empty.bytes.empty());
  EXPECT_EQ(listing.entries(), 0u);
}

// A supervised proc whose restart fails to start after it was stopped: the
// failure rewrites the status of the ended record (same state, a text of the same
// length as the last one), and a listing made in between must not keep the older.
TEST(ProcListingTest, AFailedStartRewritingAnEndedProcsStatusIsListed) {
  LocalHost h;
  EventLog events(*h.host);
  struct Starts {
    std::atomic<int> n{0};
    absl::Notification third_started, third_go;
  };
  auto starts = std::make_shared<Starts>();
  manager::SpawnSpec spec = EchoSpec();
  auto echo = spec.local_setup;
  spec.local_setup = [starts, echo](proc::ProcRuntime& rt) -> absl::Status {
    int n = ++starts->n;
    if (n == 1) return echo(rt);
    if (n == 3) {
      starts->third_started.Notify();
      starts->third_go.WaitForNotification();
    }
    return absl::InternalError(absl::StrCat("start ", n, " failed"));
  };
  Supervision sup = Always();
  sup.restart.max_restarts = 10;
  ASSERT_THAT(h.host->Spawn("f", spec, {}, sup), IsOk());
  ProcListing listing(*h.host);
  (void)(*h.host->Handle("f"))->Kill();
  // Start 2 failed; start 3 is under way. The proc is stopped meanwhile: it ends
  // with start 2's failure, and is listed so.
  ASSERT_TRUE(starts->third_started.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_THAT(h.host->Kill("f"), IsOk());
  ProcListing::Reply ended = listing.List({}, 1 << 20);
  EXPECT_EQ(ended.bytes, TypedReply(*h.host));
  EXPECT_THAT(ended.bytes, ::testing::HasSubstr("start 2 failed"));
  // Start 3 fails now, and its failure is the ended proc's status.
  starts->third_go.Notify();
  events.Await([](const HostEvent& e) {
    return e.kind == Kind::kSpawnFailed && e.name == "f" && absl::StrContains(e.detail, "start 3 failed");
  });
  ProcListing::Reply after = listing.List({}, 1 << 20);
  EXPECT_EQ(after.bytes, TypedReply(*h.host));
  EXPECT_THAT(after.bytes, ::testing::HasSubstr("start 3 failed"));
  EXPECT_EQ(starts->n.load(), 3);
  h.host->TerminateChildren(absl::Seconds(5), 8, "test");
}

}  // namespace
}  // namespace hostd::daemon
