// Links under faults: cut connections, restarted listeners, hostile bytes.
#include <sys/socket.h>

#include <algorithm>
#include <set>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "base/unique_fd.h"
#include "base/unix_addr.h"
#include "channel/event_loop.h"
#include "channel/frame_decoder.h"
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
using ::hostd::testing::StatusIs;
using ::hostd::testing::TempDir;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

TEST(LinkFaultTest, SessionSurvivesReconnects) {
  auto loop = EventLoop::Start("test-loop");
  Inbox inbox(1 << 20);
  auto listener = *Listener::Serve(*loop, UnixAny(), inbox);
  auto proxy = *ChaosProxy::Start(*loop, UnixAny(), listener->addr());
  auto sender = Sender::Dial(*loop, proxy->addr());
  for (int round = 0; round < 5; ++round) {
    // A cut on an established connection, then one while messages are in flight.
    for (int i = 0; i < 100; ++i) ASSERT_THAT(sender->Post(Numbered(round * 200 + i), nullptr), IsOk());
    ASSERT_THAT(sender->Flush(HangGuard()), IsOk());
    proxy->CutAll();
    for (int i = 100; i < 200; ++i) ASSERT_THAT(sender->Post(Numbered(round * 200 + i), nullptr), IsOk());
    proxy->CutAll();
  }
  ASSERT_THAT(sender->Flush(HangGuard()), IsOk());
  EXPECT_THAT(ReceiveNumbers(inbox, 1000), ElementsAreArray(Iota(0, 1000)));
  EXPECT_EQ(inbox.size(), 0u) << "nothing delivered twice";
  EXPECT_GE(sender->stats().connects, 5u);
  EXPECT_EQ(sender->stats().session_resets, 0u) << "reconnects resume the session";
  EXPECT_EQ(listener->stats().sessions, 1u);
}

TEST(LinkFaultTest, HundredThousandMessagesThroughRepeatedCutsArriveExactlyOnceInOrder) {
  constexpr uint64_t kMessages = 100000;
  constexpr uint64_t kCutEvery = 3000;
  auto loop = EventLoop::Start("test-loop");
  auto proxy_loop = EventLoop::Start("proxy-loop");
  Inbox inbox(4096);
  auto listener = *Listener::Serve(*loop, UnixAny(), inbox);
  auto proxy = *ChaosProxy::Start(*proxy_loop, UnixAny(), listener->addr());
  auto sender = Sender::Dial(*loop, proxy->addr());
  Outcomes outcomes;
  std::thread producer([&] {
    for (uint64_t i = 0; i < kMessages; ++i) ASSERT_THAT(sender->Post(Numbered(i), outcomes.Track()), IsOk());
  });
  for (uint64_t i = 0; i < kMessages; ++i) {
    absl::StatusOr<Message> m = inbox.Receive(HangGuard());
    ASSERT_THAT(m, IsOk()) << "after " << i;
    ASSERT_EQ(NumberOf(*m), i);
    if (i % kCutEvery == kCutEvery - 1) proxy->CutAll();
  }
  producer.join();
  outcomes.WaitFor(kMessages);
  EXPECT_EQ(outcomes.acked().size(), kMessages);
  EXPECT_TRUE(outcomes.returned().empty());
  EXPECT_EQ(inbox.size(), 0u);
  EXPECT_GE(proxy->cuts(), 20u);
  EXPECT_GE(sender->stats().connects, 20u);
  EXPECT_EQ(listener->stats().protocol_errors, 0u);
}

// A listener that dies (connections cut, no goodbye) and a new one at the same address.
struct RestartScenario {
  std::unique_ptr<EventLoop> loop = EventLoop::Start("test-loop");
  Inbox inbox_a{3};
  Inbox inbox_b{1 << 16};
  std::unique_ptr<Listener> a;
  std::unique_ptr<Listener> b;
  std::unique_ptr<ChaosProxy> proxy;
  std::unique_ptr<Sender> sender;
  Outcomes outcomes;

  void Run(OnPeerRestart policy, int messages) {
    a = *Listener::Serve(*loop, UnixAny(), inbox_a);
    proxy = *ChaosProxy::Start(*loop, UnixAny(), a->addr());
    SenderOptions opts;
    opts.on_peer_restart = policy;
    opts.delivery_timeout = absl::Hours(1);
    sender = Sender::Dial(*loop, proxy->addr(), opts);
    for (int i = 0; i < messages; ++i) ASSERT_THAT(sender->Post(Numbered(i), outcomes.Track()), IsOk());
    outcomes.WaitFor(3);  // A took three; the rest are stuck behind its full inbox
    // A dies: its connections vanish without a goodbye.
    proxy->SetRefusing(true);
    proxy->CutAll();
    a->Close();
    b = *Listener::Serve(*loop, UnixAny(), inbox_b);
    ASSERT_NE(a->incarnation(), b->incarnation());
    proxy->SetUpstream(b->addr());
    proxy->SetRefusing(false);
  }
};

TEST(LinkFaultTest, RestartedListenerGetsUnacknowledgedMessagesRedelivered) {
  RestartScenario s;
  s.Run(OnPeerRestart::kRedeliver, 20);
  s.outcomes.WaitFor(20);
  EXPECT_TRUE(s.outcomes.returned().empty());
  EXPECT_THAT(ReceiveNumbers(s.inbox_a, 3), ElementsAreArray(Iota(0, 3)));
  // B gets every message A never acknowledged, in order.
  EXPECT_THAT(ReceiveNumbers(s.inbox_b, 17), ElementsAreArray(Iota(3, 20)));
  EXPECT_EQ(s.sender->stats().session_resets, 1u);
}

TEST(LinkFaultTest, RestartedListenerCanMakeTheSenderReturnInstead) {
  RestartScenario s;
  s.Run(OnPeerRestart::kReturn, 20);
  s.outcomes.WaitFor(20);
  EXPECT_THAT(s.outcomes.acked(), ElementsAreArray(Iota(0, 3)));
  ASSERT_EQ(s.outcomes.returned().size(), 17u);
  for (auto& [n, status] : s.outcomes.returned()) {
    EXPECT_EQ(ReturnReasonOf(status), ReturnReason::kPeerRestarted);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("restarted")));
  }
  // The link itself recovered: new messages reach B.
  ASSERT_THAT(s.sender->Send(Numbered(100), HangGuard()), IsOk());
  EXPECT_THAT(ReceiveNumbers(s.inbox_b, 1), ElementsAreArray({100}));
}

// Raw bytes to a listener, to play a broken or hostile peer.
class RawPeer {
 public:
  explicit RawPeer(const ChannelAddr& addr) : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    absl::StatusOr<base::UnixAddr> sa = base::UnixAddr::Create(addr.host());
    EXPECT_THAT(sa, IsOk());
    if (sa.ok()) {
      EXPECT_EQ(::connect(fd_.get(), sa->get(), sa->size()), 0);
    }
    timeval tv{30, 0};  // hang guard for reads
    setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  void Write(const std::string& bytes) {
    ASSERT_EQ(::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }
  void WriteFrame(FrameType t, uint64_t seq, const std::string& body) {
    EncodedHeader h = EncodeHeader({t, static_cast<uint32_t>(body.size()), seq});
    Write(std::string(h.data(), h.size()) + body);
  }
  // Next frame from the listener, or nullopt at EOF.
  std::optional<Frame> ReadFrame() {
    while (true) {
      absl::StatusOr<std::optional<Frame>> f = decoder_.Next();
      EXPECT_TRUE(f.ok()) << f.status();
      if (!f.ok()) return std::nullopt;
      if (f->has_value()) return std::move(**f);
      absl::Span<char> span = decoder_.WritableSpan();
      ssize_t n = ::recv(fd_.get(), span.data(), span.size(), 0);
      if (n <= 0) return std::nullopt;
      decoder_.CommitWrite(static_cast<size_t>(n));
    }
  }
  bool ClosedByPeer() {
    while (std::optional<Frame> f = ReadFrame()) {
      if (f->header.type == FrameType::kClose) last_close_ = f->body;
    }
    return true;
  }
  const std::string& last_close() const { return last_close_; }

 private:
  base::UniqueFd fd_;
  FrameDecoder decoder_;
  std::string last_close_;
};

TEST(LinkFaultTest, ListenerDropsDuplicatesAndRejectsOutOfSequence) {
  auto loop = EventLoop::Start("test-loop");
  Inbox inbox;
  auto listener = *Listener::Serve(*loop, UnixAny(), inbox);
  RawPeer peer(listener->addr());
  peer.WriteFrame(FrameType::kHello, 0, EncodeHello({77, LinkRole::kMessages}));
  std::optional<Frame> welcome = peer.ReadFrame();
  ASSERT_TRUE(welcome.has_value());
  ASSERT_EQ(welcome->header.type, FrameType::kWelcome);
  Welcome w = *DecodeWelcome(welcome->body);
  EXPECT_FALSE(w.resumed);
  EXPECT_EQ(w.incarnation, listener->incarnation());

  peer.WriteFrame(FrameType::kData, 1, Numbered(1).wire());
  peer.WriteFrame(FrameType::kData, 1, Numbered(1).wire());  // duplicate: dropped
  peer.WriteFrame(FrameType::kData, 2, Numbered(2).wire());
  std::optional<Frame> ack;
  do {
    ack = peer.ReadFrame();
    ASSERT_TRUE(ack.has_value());
  } while (ack->header.seq < 2);
  EXPECT_EQ(ack->header.type, FrameType::kAck);
  EXPECT_THAT(ReceiveNumbers(inbox, 2), ElementsAreArray({1, 2}));
  EXPECT_EQ(listener->stats().duplicates_dropped, 1u);

  peer.WriteFrame(FrameType::kData, 5, Numbered(5).wire());  // a gap: out of sequence
  EXPECT_TRUE(peer.ClosedByPeer());
  EXPECT_THAT(peer.last_close(), HasSubstr("out-of-sequence frame: seq 5, expected 3"));
  EXPECT_EQ(inbox.size(), 0u);

  // The session survives the bad connection: a resume reports what was delivered.
  RawPeer again(listener->addr());
  again.WriteFrame(FrameType::kHello, 0, EncodeHello({77, LinkRole::kMessages}));
  std::optional<Frame> w2 = again.ReadFrame();
  ASSERT_TRUE(w2.has_value());
  Welcome resumed = *DecodeWelcome(w2->body);
  EXPECT_TRUE(resumed.resumed);
  EXPECT_EQ(resumed.delivered_seq, 2u);
}

TEST(LinkFaultTest, HostilePeersDoNotDisturbOthers) {
  auto loop = EventLoop::Start("test-loop");
  Inbox inbox(1 << 16);
  ListenerOptions lopts;
  lopts.max_frame_body = 1 << 20;
  lopts.handshake_timeout = absl::Milliseconds(300);
  auto listener = *Listener::Serve(*loop, UnixAny(), inbox, lopts);
  auto good = Sender::Dial(*loop, listener->addr());
  for (int i = 0; i < 500; ++i) ASSERT_THAT(good->Post(Numbered(i), nullptr), IsOk());

  {
    RawPeer garbage(listener->addr());
    garbage.Write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    RawPeer bad_role(listener->addr());
    std::string hello = EncodeHello({5, LinkRole::kMessages});
    hello[8] = 9;
    bad_role.WriteFrame(FrameType::kHello, 0, hello);
    RawPeer data_first(listener->addr());
    data_first.WriteFrame(FrameType::kData, 1, Numbered(1).wire());
    RawPeer oversized(listener->addr());
    oversized.WriteFrame(FrameType::kHello, 0, EncodeHello({6, LinkRole::kMessages}));
    EncodedHeader huge = EncodeHeader({FrameType::kData, (1 << 20) + 1, 1});
    oversized.Write(std::string(huge.data(), huge.size()));
    RawPeer bad_envelope(listener->addr());
    bad_envelope.WriteFrame(FrameType::kHello, 0, EncodeHello({7, LinkRole::kMessages}));
    bad_envelope.WriteFrame(FrameType::kData, 1, "\x07junk-envelope");
    RawPeer silent(listener->addr());  // never says hello: the handshake timeout ends it

    for (RawPeer* p : {&garbage, &bad_role, &data_first, &oversized, &bad_envelope, &silent}) {
      EXPECT_TRUE(p->ClosedByPeer());
    }
    EXPECT_THAT(oversized.last_close(), HasSubstr("exceeds the limit of 1048576 bytes"));
    EXPECT_THAT(bad_envelope.last_close(), HasSubstr("unknown kind 7"));
  }  // the hostile peers hang up
  for (int i = 500; i < 1000; ++i) ASSERT_THAT(good->Post(Numbered(i), nullptr), IsOk());
  EXPECT_THAT(ReceiveNumbers(inbox, 1000), ElementsAreArray(Iota(0, 1000)));
  ListenerStats ls = listener->stats();
  EXPECT_EQ(ls.protocol_errors, 6u);
  EXPECT_TRUE(Eventually([&] { return listener->stats().connections_open == 1; }))
      << listener->stats().connections_open << " connections open; only the good sender should be left";
}

TEST(LinkFaultTest, ListenerWithSmallerLimitReturnsOversizedMessageWithReason) {
  auto loop = EventLoop::Start("test-loop");
  Inbox inbox;
  ListenerOptions lopts;
  lopts.max_frame_body = 1000;
  auto listener = *Listener::Serve(*loop, UnixAny(), inbox, lopts);
  auto sender = Sender::Dial(*loop, listener->addr());  // its own limit is the 64 MiB default
  Outcomes outcomes;
  ASSERT_THAT(sender->Post(Numbered(1, std::string(5000, 'x')), outcomes.Track()), IsOk());
  outcomes.WaitFor(1);
  ASSERT_EQ(outcomes.returned().size(), 1u);
  EXPECT_THAT(outcomes.returned()[0].second,
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("exceeds the limit of 1000 bytes")));
  EXPECT_EQ(ReturnReasonOf(outcomes.returned()[0].second), ReturnReason::kPeerClosed);
}

std::set<uint64_t> Drain(Inbox& inbox) {
  std::set<uint64_t> out;
  while (inbox.size() > 0) out.insert(NumberOf(*inbox.Receive(HangGuard())));
  return out;
}

// Every message either delivered (and then acked, never returned) or returned.
void ExpectDeliveredXorReturned(Outcomes& outcomes, const std::set<uint64_t>& delivered) {
  for (auto& [n, status] : outcomes.returned()) {
    EXPECT_EQ(delivered.count(n), 0u) << "message " << n << " was delivered and also returned: " << status;
  }
  EXPECT_EQ(outcomes.acked().size(), delivered.size());
}

TEST(LinkFaultTest, ProtocolErrorAcknowledgesWhatWasDeliveredBeforeClosing) {
  TempDir dir;
  ChannelAddr addr = *ChannelAddr::Parse("unix:" + dir.Join("l.sock"));
  auto loop = EventLoop::Start("test-loop");
  SenderOptions opts;
  opts.delivery_timeout = absl::Hours(1);
  auto sender = Sender::Dial(*loop, addr, opts);  // nothing listens yet: all queue up
  Outcomes outcomes;
  for (int i = 0; i < 50; ++i) ASSERT_THAT(sender->Post(Numbered(i), outcomes.Track()), IsOk());
  ASSERT_THAT(sender->Post(Numbered(50, std::string(5000, 'x')), outcomes.Track()), IsOk());
  Inbox inbox(1 << 16);
  ListenerOptions lopts;
  lopts.max_frame_body = 1000;  // the last message breaks the limit mid-batch
  auto listener = *Listener::Serve(*loop, addr, inbox, lopts);
  outcomes.WaitFor(51);
  ExpectDeliveredXorReturned(outcomes, Drain(inbox));
}

// A batch copies small frames together and writes large bodies in place: an
// oversized message between small ones comes back, with what follows it, and
// nothing after it is delivered.
TEST(LinkFaultTest, OversizedMessageMidBatchComesBackAndNothingAfterItIsDelivered) {
  TempDir dir;
  ChannelAddr addr = *ChannelAddr::Parse("unix:" + dir.Join("l.sock"));
  auto loop = EventLoop::Start("test-loop");
  SenderOptions opts;
  opts.delivery_timeout = absl::Hours(1);
  auto sender = Sender::Dial(*loop, addr, opts);  // nothing listens yet: all go in one batch
  Outcomes outcomes;
  for (int i = 0; i < 50; ++i) ASSERT_THAT(sender->Post(Numbered(i), outcomes.Track()), IsOk());
  ASSERT_THAT(sender->Post(Numbered(50, std::string(5000, 'x')), outcomes.Track()), IsOk());
  for (int i = 51; i < 100; ++i) ASSERT_THAT(sender->Post(Numbered(i), outcomes.Track()), IsOk());
  Inbox inbox(1 << 16);
  ListenerOptions lopts;
  lopts.max_frame_body = 1000;
  auto listener = *Listener::Serve(*loop, addr, inbox, lopts);
  outcomes.WaitFor(100);
  EXPECT_THAT(ReceiveNumbers(inbox, 50), ElementsAreArray(Iota(0, 50)));
  EXPECT_EQ(inbox.size(), 0u);
  EXPECT_EQ(outcomes.acked().size(), 50u);
  ASSERT_EQ(outcomes.returned().size(), 50u);
  for (const auto& [n, status] : outcomes.returned()) {
    EXPECT_GE(n, 50u);
    EXPECT_EQ(ReturnReasonOf(status), ReturnReason::kPeerClosed) << status;
  }
}

// Small frames (copied into one buffer per write) and large ones (written in
// place) interleaved, through connections cut mid-batch:
// each arrives once, in order.
TEST(LinkFaultTest, MixedSizesThroughRepeatedCutsArriveExactlyOnceInOrder) {
  constexpr uint64_t kMessages = 20000;
  constexpr uint64_t kCutEvery = 1000;
  auto loop = EventLoop::Start("test-loop");
  auto proxy_loop = EventLoop::Start("proxy-loop");
  Inbox inbox(256);  // smaller than kCutEvery, so every cut finds a connection
  auto listener = *Listener::Serve(*loop, UnixAny(), inbox);
  auto proxy = *ChaosProxy::Start(*proxy_loop, UnixAny(), listener->addr());
  auto sender = Sender::Dial(*loop, proxy->addr());
  Outcomes outcomes;
  const std::string large(3000, 'L');  // past what a batch copies
  std::thread producer([&] {
    for (uint64_t i = 0; i < kMessages; ++i) {
      ASSERT_THAT(sender->Post(Numbered(i, i % 7 == 3 ? large : ""), outcomes.Track()), IsOk());
    }
  });
  for (uint64_t i = 0; i < kMessages; ++i) {
    absl::StatusOr<Message> m = inbox.Receive(HangGuard());
    ASSERT_THAT(m, IsOk()) << "after " << i;
    ASSERT_EQ(NumberOf(*m), i);
    ASSERT_EQ(m->payload().size(), absl::StrCat(i).size() + (i % 7 == 3 ? large.size() : 0)) << i;
    if (i % kCutEvery == kCutEvery - 1) proxy->CutAll();
  }
  producer.join();
  outcomes.WaitFor(kMessages);
  EXPECT_EQ(outcomes.acked().size(), kMessages);
  EXPECT_TRUE(outcomes.returned().empty());
  EXPECT_EQ(inbox.size(), 0u);
  EXPECT_GE(proxy->cuts(), 10u);
  EXPECT_EQ(listener->stats().protocol_errors, 0u);
}

TEST(LinkFaultTest, ListenerCloseUnderLoadNeverReturnsADeliveredMessage) {
  for (int trial = 0; trial < 3; ++trial) {
    auto listener_loop = EventLoop::Start("listener-loop");
    auto sender_loop = EventLoop::Start("sender-loop");
    Inbox inbox(1 << 20);
    auto listener = *Listener::Serve(*listener_loop, UnixAny(), inbox);
    SenderOptions opts;
    opts.delivery_timeout = absl::Seconds(20);
    opts.max_queued_bytes = 256u << 20;
    opts.max_queued_messages = 1 << 20;
    auto sender = Sender::Dial(*sender_loop, listener->addr(), opts);
    Outcomes outcomes;
    const std::string pad(4000, 'p');
    for (int i = 0; i < 8000; ++i) ASSERT_THAT(sender->Post(Numbered(i, pad), outcomes.Track()), IsOk());
    ASSERT_TRUE(Eventually([&] { return inbox.size() >= 800; }));
    listener->Close();  // mid-stream, with gathered writes in flight
    outcomes.WaitFor(8000);
    ExpectDeliveredXorReturned(outcomes, Drain(inbox));
    for (auto& [n, status] : outcomes.returned()) {
      ASSERT_EQ(ReturnReasonOf(status), ReturnReason::kPeerClosed) << "the goodbye was lost: " << status;
    }
  }
}

TEST(LinkFaultTest, ReturnPolicyStillSendsMessagesTheOldIncarnationNeverSaw) {
  auto loop = EventLoop::Start("test-loop");
  Inbox inbox_a, inbox_b;
  auto a = *Listener::Serve(*loop, UnixAny(), inbox_a);
  auto proxy = *ChaosProxy::Start(*loop, UnixAny(), a->addr());
  SenderOptions opts;
  opts.on_peer_restart = OnPeerRestart::kReturn;
  auto sender = Sender::Dial(*loop, proxy->addr(), opts);
  ASSERT_THAT(sender->Send(Numbered(1), HangGuard()), IsOk());
  proxy->SetRefusing(true);
  proxy->CutAll();
  a->Close();
  auto b = *Listener::Serve(*loop, UnixAny(), inbox_b);
  proxy->SetUpstream(b->addr());
  proxy->SetRefusing(false);
  // The idle sender reconnects to a new incarnation; nothing was in doubt.
  EXPECT_THAT(sender->Send(Numbered(2), HangGuard()), IsOk());
  EXPECT_THAT(ReceiveNumbers(inbox_b, 1), ElementsAreArray({2}));
}

TEST(LinkFaultTest, NotifyWhenRoomWaitsForRoomForThatMessage) {
  TempDir dir;
  auto loop = EventLoop::Start("test-loop");
  SenderOptions opts;
  opts.max_queued_bytes = 1000;
  auto sender = Sender::Dial(*loop, *ChannelAddr::Parse("unix:" + dir.Join("nobody.sock")), opts);
  ASSERT_THAT(sender->Post(Numbered(1, std::string(600, 'x')), nullptr, WhenFull::kFail), IsOk());
  Message second = Numbered(2, std::string(600, 'x'));
  ASSERT_THAT(sender->Post(std::move(second), nullptr, WhenFull::kFail),
              StatusIs(absl::StatusCode::kResourceExhausted));
  absl::Notification fired;
  sender->NotifyWhenRoom(second.wire_size(), [&] { fired.Notify(); });
  // A fixed moment on purpose: the behaviour is that nothing fires during it.
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(fired.HasBeenNotified()) << "there is some room, but not enough for the message";
  sender->Close();  // closing releases waiters
  EXPECT_TRUE(fired.WaitForNotificationWithDeadline(HangGuard()));
}

}  // namespace
}  // namespace hostd::channel
