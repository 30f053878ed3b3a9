// What batching on a link must not break: a write carries many frames, a listener
// delivers a read's frames as one run and acknowledges them together, an Inbox
// wakes its consumer once per run, and completions run per acknowledgement. Cuts,
// lost acknowledgements, controls and returns in the middle of a batch keep every
// message exactly once and in order.
#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
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
using ::hostd::testing::Eventually;
using ::hostd::testing::IsOk;
using ::hostd::testing::TempDir;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;

// The loop's side of an Inbox played by hand: runs of deliveries, each ended by
// EndOfRun, and on a refusal a wait for the wake before offering again. A consumer
// that waits in Receive between runs, or while the inbox fills up within one, gets
// every message once, in order.
TEST(LinkBatchTest, InboxConsumerGetsEveryRunWokenOncePerRunOrByARefusal) {
  constexpr uint64_t kMessages = 5000;
  constexpr uint64_t kRun = 7;
  Inbox inbox(5);
  std::vector<uint64_t> got;
  std::thread consumer([&] { got = ReceiveNumbers(inbox, kMessages); });
  uint64_t refusals = 0;
  for (uint64_t i = 0; i < kMessages;) {
    for (uint64_t end = std::min(kMessages, i + kRun); i < end;) {
      Message m = Numbered(i);
      auto woken = std::make_shared<absl::Notification>();
      if (inbox.Deliver(m, [woken] { woken->Notify(); })) {
        ++i;
        continue;
      }
      ++refusals;
      ASSERT_EQ(NumberOf(m), i) << "a refused message is left untouched";
      ASSERT_TRUE(woken->WaitForNotificationWithDeadline(HangGuard())) << "no wake after a refusal of " << i;
    }
    inbox.EndOfRun();
  }
  consumer.join();
  EXPECT_THAT(got, ElementsAreArray(Iota(0, kMessages)));
  EXPECT_EQ(inbox.size(), 0u);
  RecordProperty("refusals", static_cast<int>(refusals));
}

// The listener never acknowledges by itself here (no ack count or delay is ever
// reached), so the only acknowledgements are the welcomes of new connections: a
// batch is cut after part of it was delivered, and the sender learns what was
// delivered only from the next welcome. Nothing is delivered twice, nothing lost.
TEST(LinkBatchTest, AcksLostMidBatchAreRecoveredFromTheNextWelcome) {
  constexpr uint64_t kMessages = 300;
  auto loop = EventLoop::Start("test-loop");
  Inbox inbox(10);
  ListenerOptions lopts;
  lopts.ack_every = 1u << 30;
  lopts.ack_delay = absl::Hours(1);
  auto listener = *Listener::Serve(*loop, UnixAny(), inbox, lopts);
  auto proxy = *ChaosProxy::Start(*loop, UnixAny(), listener->addr());
  SenderOptions opts;
  opts.delivery_timeout = absl::Hours(1);
  auto sender = Sender::Dial(*loop, proxy->addr(), opts);
  Outcomes outcomes;
  for (uint64_t i = 0; i < kMessages; ++i) ASSERT_THAT(sender->Post(Numbered(i), outcomes.Track()), IsOk());
  // The listener delivered the first ten of the batch and stopped: the inbox is full.
  ASSERT_TRUE(Eventually([&] { return inbox.size() == 10; }));
  EXPECT_THAT(outcomes.acked(), IsEmpty()) << "no acknowledgement was sent";
  proxy->CutAll();
  // The next welcome acknowledges the ten; the rest is written again.
  outcomes.WaitFor(10);
  EXPECT_THAT(outcomes.acked(), ElementsAreArray(Iota(0, 10)));
  std::vector<uint64_t> got = ReceiveNumbers(inbox, kMessages);
  EXPECT_THAT(got, ElementsAreArray(Iota(0, kMessages))) << "exactly once, in order";
  EXPECT_EQ(inbox.size(), 0u);
  proxy->CutAll();
  outcomes.WaitFor(kMessages);
  EXPECT_THAT(outcomes.acked(), ElementsAreArray(Iota(0, kMessages)));
  EXPECT_THAT(outcomes.returned(), IsEmpty());
  EXPECT_EQ(listener->stats().acks_sent, 0u);
  EXPECT_EQ(sender->stats().session_resets, 0u);
}

// Batches cut again and again while the listener acknowledges only by delay (so
// acknowledgements are often lost with the connection), with a consumer slower
// than the link: exactly once, in order, and every message acknowledged.
TEST(LinkBatchTest, CutsBetweenDelayedAcksDeliverExactlyOnceInOrder) {
  constexpr uint64_t kMessages = 20000;
  constexpr uint64_t kCutEvery = 1500;
  auto loop = EventLoop::Start("test-loop");
  auto proxy_loop = EventLoop::Start("proxy-loop");
  Inbox inbox(200);
  ListenerOptions lopts;
  lopts.ack_every = 1u << 30;
  lopts.ack_delay = absl::Milliseconds(20);
  auto listener = *Listener::Serve(*loop, UnixAny(), inbox, lopts);
  auto proxy = *ChaosProxy::Start(*proxy_loop, UnixAny(), listener->addr());
  auto sender = Sender::Dial(*loop, proxy->addr());
  Outcomes outcomes;
  std::thread producer([&] {
    for (uint64_t i = 0; i < kMessages; ++i) ASSERT_THAT(sender->Post(Numbered(i), outcomes.Track()), IsOk());
  });
  for (uint64_t i = 0; i < kMessages; ++i) {
    absl::StatusOr<Message> m = inbox.Receive(HangGuard());
    ASSERT_THAT(m, IsOk()) << "after " << i;
    ASSERT_EQ(NumberOf(*m), i) << "lost or duplicated";
    if (i % kCutEvery == kCutEvery - 1) proxy->CutAll();
  }
  producer.join();
  outcomes.WaitFor(kMessages);
  EXPECT_EQ(outcomes.acked().size(), kMessages);
  EXPECT_THAT(outcomes.returned(), IsEmpty());
  EXPECT_EQ(inbox.size(), 0u);
  EXPECT_GE(proxy->cuts(), 1u);  // a cut lands only while a connection is up: how many varies
  EXPECT_EQ(listener->stats().protocol_errors, 0u);
  EXPECT_EQ(sender->stats().session_resets, 0u);
}

// A control posted while a batch is stuck half-written in a full socket, then the
// connection cut: the control lands behind every message written before it (they
// are retransmitted first) and ahead of everything not yet written.
TEST(LinkBatchTest, ControlPostedDuringAHalfWrittenBatchKeepsItsPlaceAcrossACut) {
  constexpr uint64_t kBefore = 3000;
  constexpr uint64_t kAfter = 100;
  constexpr uint64_t kControl = 1000000000;
  auto loop = EventLoop::Start("test-loop");
  auto proxy_loop = EventLoop::Start("proxy-loop");
  Inbox inbox(4);
  auto listener = *Listener::Serve(*loop, UnixAny(), inbox);
  auto proxy = *ChaosProxy::Start(*proxy_loop, UnixAny(), listener->addr());
  auto sender = Sender::Dial(*loop, proxy->addr());
  Outcomes outcomes;
  const std::string pad(2000, 'p');  // 6 MiB: more than the socket buffers hold
  for (uint64_t i = 0; i < kBefore; ++i) ASSERT_THAT(sender->Post(Numbered(i, pad), outcomes.Track()), IsOk());
  std::vector<uint64_t> got = ReceiveNumbers(inbox, 4);
  ASSERT_THAT(got, ElementsAreArray(Iota(0, 4)));
  ASSERT_THAT(sender->PostControl(Numbered(kControl), outcomes.Track()), IsOk());
  proxy->CutAll();
  for (uint64_t i = kBefore; i < kBefore + kAfter; ++i) {
    ASSERT_THAT(sender->Post(Numbered(i, pad), outcomes.Track()), IsOk());
  }
  std::vector<uint64_t> rest = ReceiveNumbers(inbox, kBefore + kAfter + 1 - 4);
  got.insert(got.end(), rest.begin(), rest.end());
  auto control = std::find(got.begin(), got.end(), kControl);
  ASSERT_NE(control, got.end());
  EXPECT_LT(static_cast<uint64_t>(control - got.begin()), kBefore) << "it overtook what was never written";
  got.erase(control);
  EXPECT_THAT(got, ElementsAreArray(Iota(0, kBefore + kAfter))) << "data exactly once, in order";
  outcomes.WaitFor(kBefore + kAfter + 1);
  EXPECT_EQ(outcomes.acked().size(), kBefore + kAfter + 1);
  EXPECT_EQ(inbox.size(), 0u);
  EXPECT_EQ(sender->stats().session_resets, 0u);
}

// Completions run per acknowledgement, many at a time. One of them closes the
// sender: the rest of that acknowledgement's messages still complete OK (they were
// delivered), everything after comes back as closed, each `done` exactly once.
TEST(LinkBatchTest, ADoneThatClosesTheSenderMidBatchCompletesEveryMessageOnce) {
  constexpr uint64_t kMessages = 2000;
  constexpr uint64_t kCloseAt = 500;
  TempDir dir;
  const ChannelAddr addr = *ChannelAddr::Parse("unix:" + dir.Join("late.sock"));
  auto loop = EventLoop::Start("test-loop");
  Inbox inbox(1 << 16);
  SenderOptions opts;
  opts.delivery_timeout = absl::Hours(1);
  // Nothing listens until everything is queued: the first acks cover whole batches.
  std::unique_ptr<Sender> owned = Sender::Dial(*loop, addr, opts);
  Outcomes outcomes;
  Sender* raw = owned.get();
  for (uint64_t i = 0; i < kMessages; ++i) {
    Sender::Done track = outcomes.Track();
    Sender::Done done = [raw, i, track = std::move(track)](absl::Status s, Message m) mutable {
      track(s, std::move(m));
      if (i == kCloseAt && s.ok()) raw->Close();  // on the loop: no flush, returns the rest
    };
    ASSERT_THAT(owned->Post(Numbered(i), std::move(done)), IsOk());
  }
  auto listener = *Listener::Serve(*loop, addr, inbox);
  outcomes.WaitFor(kMessages);
  std::vector<uint64_t> acked = outcomes.acked();
  ASSERT_GT(acked.size(), kCloseAt);
  EXPECT_THAT(acked, ElementsAreArray(Iota(0, acked.size()))) << "a prefix, in order";
  std::vector<uint64_t> returned;
  for (const auto& [n, status] : outcomes.returned()) {
    returned.push_back(n);
    EXPECT_EQ(ReturnReasonOf(status), ReturnReason::kSenderClosed) << status;
  }
  EXPECT_THAT(returned, ElementsAreArray(Iota(acked.size(), kMessages))) << "the rest, each once";
  // Whatever was acknowledged was delivered, once; nothing else is delivered twice.
  const size_t delivered = inbox.size();
  EXPECT_GE(delivered, acked.size());
  EXPECT_THAT(ReceiveNumbers(inbox, delivered), ElementsAreArray(Iota(0, delivered)));
}

// ---- PostBatch and ReceiveBatch ------------------------------------------------------

std::vector<Message> NumberedBatch(uint64_t from, uint64_t to, const std::string& pad = "") {
  std::vector<Message> v;
  for (uint64_t i = from; i < to; ++i) v.push_back(Numbered(i, pad));
  return v;
}

// Batches far larger than the queue, mixed with single posts, from a thread that
// waits for room: every message arrives once, in posting order, taken a batch at
// a time by the consumer, and each batch call reports all of its messages queued.
TEST(LinkBatchTest, PostBatchLargerThanTheQueueWaitsForRoomAndKeepsOrder) {
  constexpr uint64_t kBatch = 1000;
  constexpr uint64_t kRounds = 20;
  constexpr uint64_t kTotal = kRounds * (kBatch + 1);
  auto loop = EventLoop::Start("test-loop");
  Inbox inbox(64);
  auto listener = *Listener::Serve(*loop, UnixAny(), inbox);
  SenderOptions opts;
  opts.max_queued_messages = 16;
  auto sender = Sender::Dial(*loop, listener->addr(), opts);
  std::thread producer([&] {
    uint64_t next = 0;
    for (uint64_t r = 0; r < kRounds; ++r) {
      std::vector<Message> batch = NumberedBatch(next, next + kBatch);
      Sender::Posted p = sender->PostBatch(absl::MakeSpan(batch));
      ASSERT_THAT(p.status, IsOk());
      ASSERT_EQ(p.posted, kBatch);
      next += kBatch;
      ASSERT_THAT(sender->Post(Numbered(next++), nullptr), IsOk());
    }
  });
  std::vector<uint64_t> got;
  std::vector<Message> taken;
  size_t calls = 0;
  while (got.size() < kTotal) {
    taken.clear();
    absl::StatusOr<size_t> n = inbox.ReceiveBatch(taken, 100, HangGuard());
    ASSERT_THAT(n, IsOk()) << "after " << got.size();
    ASSERT_EQ(*n, taken.size());
    ASSERT_LE(*n, 100u);
    for (const Message& m : taken) got.push_back(NumberOf(m));
    ++calls;
  }
  producer.join();
  EXPECT_THAT(got, ElementsAreArray(Iota(0, kTotal))) << "exactly once, in order";
  EXPECT_LT(calls, kTotal) << "some calls took more than one message";
  ASSERT_THAT(sender->Flush(HangGuard()), IsOk());
  EXPECT_EQ(sender->stats().messages_acked, kTotal);
  EXPECT_GT(sender->stats().sends_waited, 0u);
  EXPECT_LE(sender->stats().max_queue_depth, 16u);
}

// A batch that does not fit: with kFail it queues the messages that have room and
// hands back the rest untouched, saying why; one over the frame limit stops a batch
// where it stands; a closed sender takes none. What was queued is delivered.
TEST(LinkBatchTest, PostBatchStopsAtTheFirstMessageItCannotQueueLeavingTheRestUntouched) {
  auto loop = EventLoop::Start("test-loop");
  TempDir dir;
  const ChannelAddr addr = *ChannelAddr::Parse("unix:" + dir.Join("later.sock"));
  SenderOptions opts;
  opts.max_queued_messages = 5;
  opts.max_frame_body = 200;
  Inbox inbox(16);
  auto sender = Sender::Dial(*loop, addr, opts);  // nobody listens yet: nothing drains

  std::vector<Message> batch = NumberedBatch(0, 8);
  Sender::Posted p = sender->PostBatch(absl::MakeSpan(batch), WhenFull::kFail);
  EXPECT_EQ(p.posted, 5u);
  EXPECT_TRUE(absl::IsResourceExhausted(p.status)) << p.status;
  EXPECT_THAT(p.status.message(), ::testing::HasSubstr("is full"));
  for (uint64_t i = 5; i < 8; ++i) EXPECT_EQ(NumberOf(batch[i]), i) << "left untouched";

  auto listener = *Listener::Serve(*loop, addr, inbox);
  ASSERT_THAT(sender->Flush(HangGuard()), IsOk());
  std::vector<Message> mixed = NumberedBatch(5, 7);
  mixed.insert(mixed.begin() + 1, Numbered(99, std::string(300, 'x')));
  p = sender->PostBatch(absl::MakeSpan(mixed), WhenFull::kFail);
  EXPECT_EQ(p.posted, 1u);
  EXPECT_TRUE(absl::IsInvalidArgument(p.status)) << p.status;
  EXPECT_THAT(p.status.message(), ::testing::HasSubstr("frame limit"));
  EXPECT_EQ(mixed[1].payload().size(), 2 + 300u) << "the refused message is left untouched";

  sender->Close();
  std::vector<Message> late = NumberedBatch(7, 9);
  p = sender->PostBatch(absl::MakeSpan(late));
  EXPECT_EQ(p.posted, 0u);
  EXPECT_TRUE(absl::IsFailedPrecondition(p.status)) << p.status;
  EXPECT_EQ(NumberOf(late[0]), 7u);
  EXPECT_EQ(sender->stats().messages_acked, 6u) << "the five of the first batch and one of the second";
}

// Messages of a batch have no `done`: one that comes back goes to the sender's
// return handler, with why, each once and in order.
TEST(LinkBatchTest, ABatchThatComesBackGoesToTheReturnHandlerInOrder) {
  auto loop = EventLoop::Start("test-loop");
  TempDir dir;
  const ChannelAddr addr = *ChannelAddr::Parse("unix:" + dir.Join("nobody.sock"));
  Outcomes outcomes;
  auto sender = Sender::Dial(*loop, addr, {}, outcomes.Track());
  std::vector<Message> batch = NumberedBatch(0, 50);
  ASSERT_EQ(sender->PostBatch(absl::MakeSpan(batch)).posted, 50u);
  sender->Close();  // nothing listens: all 50 are still queued
  outcomes.WaitFor(50);
  EXPECT_THAT(outcomes.acked(), IsEmpty());
  std::vector<uint64_t> returned;
  for (const auto& [n, status] : outcomes.returned()) {
    returned.push_back(n);
    EXPECT_EQ(ReturnReasonOf(status), ReturnReason::kSenderClosed) << status;
  }
  EXPECT_THAT(returned, ElementsAreArray(Iota(0, 50)));
}

// ReceiveBatch takes at most what it is asked for (at least one), oldest first;
// it wakes a link that a full inbox refused; with nothing queued it waits until
// the deadline and leaves `out` as it was.
TEST(LinkBatchTest, ReceiveBatchTakesUpToMaxWakesARefusedLinkAndTimesOutEmpty) {
  Inbox inbox(4);
  for (uint64_t i = 0; i < 4; ++i) {
    Message m = Numbered(i);
    ASSERT_TRUE(inbox.Deliver(m, [] {}));
  }
  auto woken = std::make_shared<absl::Notification>();
  Message refused = Numbered(4);
  ASSERT_FALSE(inbox.Deliver(refused, [woken] { woken->Notify(); }));
  inbox.EndOfRun();
  std::vector<Message> out;
  out.push_back(Numbered(1000));
  absl::StatusOr<size_t> n = inbox.ReceiveBatch(out, 3, HangGuard());
  ASSERT_THAT(n, IsOk());
  EXPECT_EQ(*n, 3u);
  EXPECT_TRUE(woken->HasBeenNotified()) << "the refused link was woken";
  n = inbox.ReceiveBatch(out, 0, HangGuard());
  ASSERT_THAT(n, IsOk());
  EXPECT_EQ(*n, 1u) << "at least one";
  std::vector<uint64_t> got;
  for (const Message& m : out) got.push_back(NumberOf(m));
  EXPECT_THAT(got, ElementsAreArray(std::vector<uint64_t>{1000, 0, 1, 2, 3})) << "appended, oldest first";
  absl::StatusOr<size_t> none = inbox.ReceiveBatch(out, 10, absl::Now() + absl::Milliseconds(20));
  EXPECT_TRUE(absl::IsDeadlineExceeded(none.status())) << none.status();
  EXPECT_EQ(out.size(), 5u);
}

}  // namespace
}  // namespace hostd::channel
