// The control lane of a link (Sender::PostControl): a control message overtakes
// queued messages not yet written, never one already written, and stays ahead of
// everything posted after it, across reconnects.
#include <algorithm>
#include <atomic>
#include <initializer_list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "channel/event_loop.h"
#include "channel/listener.h"
#include "channel/sender.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "link_test_util.h"
#include "testing/chaos_proxy.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace hostd::channel {
namespace {

using ::hostd::testing::ChaosProxy;
using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::hostd::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Control messages carry numbers from here; data messages count from 0.
constexpr uint64_t kControl = 1000000000;

std::vector<uint64_t> Concat(std::initializer_list<std::vector<uint64_t>> parts) {
  std::vector<uint64_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// A sender dialed to an address nobody serves yet: everything it is given stays
// unwritten until Serve().
struct NotYetServed {
  explicit NotYetServed(SenderOptions opts = {}) : sender(Sender::Dial(*loop, addr, opts)) {}
  void Serve() { listener = *Listener::Serve(*loop, addr, inbox); }

  TempDir dir;
  std::unique_ptr<EventLoop> loop = EventLoop::Start("test-loop");
  ChannelAddr addr = *ChannelAddr::Parse("unix:" + dir.Join("late.sock"));
  Inbox inbox{1 << 16};
  std::unique_ptr<Sender> sender;
  std::unique_ptr<Listener> listener;
  Outcomes outcomes;
};

TEST(LinkControlLaneTest, ControlOvertakesUnsentMessagesAndPrecedesLaterOnes) {
  NotYetServed s;
  for (int i = 0; i < 50; ++i) ASSERT_THAT(s.sender->Post(Numbered(i), s.outcomes.Track()), IsOk());
  ASSERT_THAT(s.sender->PostControl(Numbered(kControl), s.outcomes.Track()), IsOk());
  for (int i = 50; i < 100; ++i) ASSERT_THAT(s.sender->Post(Numbered(i), s.outcomes.Track()), IsOk());
  EXPECT_EQ(s.sender->stats().queue_depth, 101u);
  s.Serve();
  EXPECT_THAT(ReceiveNumbers(s.inbox, 101), ElementsAreArray(Concat({{kControl}, Iota(0, 100)})));
  s.outcomes.WaitFor(101);
  EXPECT_EQ(s.outcomes.acked().size(), 101u);
  EXPECT_THAT(s.outcomes.returned(), IsEmpty());
  EXPECT_EQ(s.inbox.size(), 0u) << "nothing delivered twice";
  EXPECT_EQ(s.listener->stats().protocol_errors, 0u);
}

TEST(LinkControlLaneTest, ControlMessagesKeepTheirRelativeOrder) {
  NotYetServed s;
  ASSERT_THAT(s.sender->Post(Numbered(0), nullptr), IsOk());
  ASSERT_THAT(s.sender->PostControl(Numbered(kControl + 1), nullptr), IsOk());
  ASSERT_THAT(s.sender->Post(Numbered(1), nullptr), IsOk());
  ASSERT_THAT(s.sender->PostControl(Numbered(kControl + 2), nullptr), IsOk());
  ASSERT_THAT(s.sender->Post(Numbered(2), nullptr), IsOk());
  s.Serve();
  EXPECT_THAT(ReceiveNumbers(s.inbox, 5), ElementsAre(kControl + 1, kControl + 2, 0, 1, 2));
  ASSERT_THAT(s.sender->Flush(HangGuard()), IsOk());
  EXPECT_EQ(s.inbox.size(), 0u);
}

TEST(LinkControlLaneTest, ControlIsAcceptedOnAFullQueueAndCountsTowardIt) {
  SenderOptions opts;
  opts.max_queued_messages = 2;
  NotYetServed s(opts);
  ASSERT_THAT(s.sender->Post(Numbered(0), nullptr, WhenFull::kFail), IsOk());
  ASSERT_THAT(s.sender->Post(Numbered(1), nullptr, WhenFull::kFail), IsOk());
  ASSERT_THAT(s.sender->Post(Numbered(2), nullptr, WhenFull::kFail), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(s.sender->PostControl(Numbered(kControl), nullptr), IsOk());
  EXPECT_EQ(s.sender->stats().queue_depth, 3u);
  EXPECT_THAT(s.sender->Post(Numbered(2), nullptr, WhenFull::kFail),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("is full (3 messages")));
  s.Serve();
  EXPECT_THAT(ReceiveNumbers(s.inbox, 3), ElementsAre(kControl, 0, 1));
  ASSERT_THAT(s.sender->Flush(HangGuard()), IsOk());
}

TEST(LinkControlLaneTest, ControlIsRefusedOverTheFrameLimitAndWhenClosedWithoutRunningDone) {
  auto loop = EventLoop::Start("test-loop");
  SenderOptions opts;
  opts.max_frame_body = 1000;
  auto sender = Sender::Dial(*loop, ChannelAddr::Local(1), opts);
  std::atomic<int> done_runs = 0;
  auto done = [&](absl::Status, Message) { ++done_runs; };

  Message big = Numbered(kControl, std::string(2000, 'x'));
  EXPECT_THAT(sender->PostControl(std::move(big), done),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds the link's frame limit of 1000 bytes")));
  EXPECT_EQ(NumberOf(big), kControl) << "refused means untouched";

  sender->Close();
  Message small = Numbered(kControl + 1);
  EXPECT_THAT(sender->PostControl(std::move(small), done),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is closed")));
  EXPECT_EQ(NumberOf(small), kControl + 1);

  loop->RunSync([] {});  // anything the sender handed to the loop has run by now
  EXPECT_EQ(done_runs, 0);
  EXPECT_EQ(sender->stats().sends_rejected, 2u);
  EXPECT_EQ(sender->stats().queue_depth, 0u);
}

// The receiver holds only a few messages, so the sender's socket fills and most of
// the queue cannot be written: the control overtakes those, but not the ones the
// receiver already took (they were written).
TEST(LinkControlLaneTest, ControlDoesNotOvertakeMessagesAlreadyWritten) {
  constexpr uint64_t kBefore = 4000;
  constexpr uint64_t kAfter = 100;
  auto loop = EventLoop::Start("test-loop");
  Inbox inbox(4);
  auto listener = *Listener::Serve(*loop, *ChannelAddr::Parse("unix:"), inbox);
  auto sender = Sender::Dial(*loop, listener->addr());
  Outcomes outcomes;
  // 8 MiB: more than the socket buffers and one gathered write (at most 1 MiB) hold.
  const std::string pad(2000, 'p');
  for (uint64_t i = 0; i < kBefore; ++i) ASSERT_THAT(sender->Post(Numbered(i, pad), outcomes.Track()), IsOk());
  // The receiver took these, so they were written (and a write is likely still
  // stuck in the full socket, holding entries of the queue).
  std::vector<uint64_t> got = ReceiveNumbers(inbox, 4);
  ASSERT_THAT(got, ElementsAre(0, 1, 2, 3));
  ASSERT_THAT(sender->PostControl(Numbered(kControl), outcomes.Track()), IsOk());
  for (uint64_t i = kBefore; i < kBefore + kAfter; ++i) {
    ASSERT_THAT(sender->Post(Numbered(i, pad), outcomes.Track()), IsOk());
  }

  std::vector<uint64_t> rest = ReceiveNumbers(inbox, kBefore + kAfter + 1 - 4);
  got.insert(got.end(), rest.begin(), rest.end());
  auto control = std::find(got.begin(), got.end(), kControl);
  ASSERT_NE(control, got.end());
  size_t at = control - got.begin();
  EXPECT_LT(at, kBefore) << "overtook nothing, though most of the queue was unwritten";
  got.erase(control);
  EXPECT_THAT(got, ElementsAreArray(Iota(0, kBefore + kAfter))) << "data exactly once, in order";
  outcomes.WaitFor(kBefore + kAfter + 1);
  EXPECT_EQ(outcomes.acked().size(), kBefore + kAfter + 1);
  EXPECT_EQ(inbox.size(), 0u);
}

TEST(LinkControlLaneTest, ControlKeepsItsPlaceAcrossAReconnect) {
  auto loop = EventLoop::Start("test-loop");
  Inbox inbox(1 << 16);
  auto listener = *Listener::Serve(*loop, *ChannelAddr::Parse("unix:"), inbox);
  auto proxy = *ChaosProxy::Start(*loop, *ChannelAddr::Parse("unix:"), listener->addr());
  auto sender = Sender::Dial(*loop, proxy->addr());
  for (int i = 0; i < 100; ++i) ASSERT_THAT(sender->Post(Numbered(i), nullptr), IsOk());
  ASSERT_THAT(sender->Flush(HangGuard()), IsOk());
  // The connection drops and cannot come back for now: what follows stays unwritten.
  proxy->SetRefusing(true);
  proxy->CutAll();
  for (int i = 100; i < 200; ++i) ASSERT_THAT(sender->Post(Numbered(i), nullptr), IsOk());
  ASSERT_THAT(sender->PostControl(Numbered(kControl), nullptr), IsOk());
  for (int i = 200; i < 300; ++i) ASSERT_THAT(sender->Post(Numbered(i), nullptr), IsOk());
  proxy->SetRefusing(false);
  ASSERT_THAT(sender->Flush(HangGuard()), IsOk());
  EXPECT_THAT(ReceiveNumbers(inbox, 301), ElementsAreArray(Concat({Iota(0, 100), {kControl}, Iota(100, 300)})));
  EXPECT_EQ(inbox.size(), 0u) << "nothing delivered twice";
  EXPECT_GE(sender->stats().connects, 2u);
  EXPECT_EQ(sender->stats().session_resets, 0u) << "the session resumed";
}

// Controls posted into a stream that is cut again and again, with writes in flight
// and retransmissions pending: every message arrives exactly once, data in order,
// controls in order, each control ahead of all data posted after it.
TEST(LinkControlLaneTest, ControlsThroughRepeatedCutsArriveExactlyOnceInTheirPlaces) {
  constexpr uint64_t kData = 30000;
  constexpr uint64_t kControlEvery = 1000;
  constexpr uint64_t kCutEvery = 2000;
  constexpr uint64_t kTotal = kData + kData / kControlEvery;
  auto loop = EventLoop::Start("test-loop");
  auto proxy_loop = EventLoop::Start("proxy-loop");
  // Smaller than kCutEvery: every cut finds a connection, since most of what is
  // received between two cuts must have come over a new one.
  Inbox inbox(256);
  auto listener = *Listener::Serve(*loop, *ChannelAddr::Parse("unix:"), inbox);
  auto proxy = *ChaosProxy::Start(*proxy_loop, *ChannelAddr::Parse("unix:"), listener->addr());
  auto sender = Sender::Dial(*loop, proxy->addr());
  Outcomes outcomes;
  std::thread producer([&] {
    for (uint64_t i = 0; i < kData; ++i) {
      ASSERT_THAT(sender->Post(Numbered(i), outcomes.Track()), IsOk());
      // Control c follows data c * kControlEvery - 1.
      if ((i + 1) % kControlEvery == 0) {
        ASSERT_THAT(sender->PostControl(Numbered(kControl + (i + 1) / kControlEvery), outcomes.Track()), IsOk());
      }
    }
  });
  uint64_t next_data = 0;
  uint64_t next_control = 1;
  for (uint64_t n = 0; n < kTotal; ++n) {
    absl::StatusOr<Message> m = inbox.Receive(HangGuard());
    ASSERT_THAT(m, IsOk()) << "after " << n;
    uint64_t v = NumberOf(*m);
    if (v >= kControl) {
      uint64_t c = v - kControl;
      ASSERT_EQ(c, next_control) << "controls out of order or duplicated, after " << n;
      ASSERT_LE(next_data, c * kControlEvery) << "control " << c << " arrived after data posted after it";
      ++next_control;
    } else {
      ASSERT_EQ(v, next_data) << "data out of order or duplicated, after " << n;
      ++next_data;
    }
    if (n % kCutEvery == kCutEvery - 1) proxy->CutAll();
  }
  producer.join();
  EXPECT_EQ(next_data, kData);
  EXPECT_EQ(next_control, kData / kControlEvery + 1);
  outcomes.WaitFor(kTotal);
  EXPECT_EQ(outcomes.acked().size(), kTotal);
  EXPECT_THAT(outcomes.returned(), IsEmpty());
  EXPECT_EQ(inbox.size(), 0u);
  EXPECT_GE(proxy->cuts(), 10u);
  EXPECT_EQ(listener->stats().protocol_errors, 0u);
  EXPECT_EQ(sender->stats().session_resets, 0u);
}

}  // namespace
}  // namespace hostd::channel
