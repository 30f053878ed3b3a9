// Links on real sockets: the behaviour every transport must share.
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "base/unique_fd.h"
#include "base/unix_addr.h"
#include "channel/event_loop.h"
#include "channel/frame.h"
#include "channel/frame_decoder.h"
#include "channel/listener.h"
#include "channel/sender.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "link_test_util.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace hostd::channel {
namespace {

using ::hostd::testing::Eventually;
using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::hostd::testing::TempDir;
using ::testing::AllOf;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// A bind address per transport; "PATH" becomes a socket path in the test's temp dir.
class LinkTest : public ::testing::TestWithParam<std::string> {
 protected:
  ChannelAddr BindAddr() {
    std::string text = GetParam();
    if (text == "unix:PATH") text = "unix:" + dir_.Join("l.sock");
    return *ChannelAddr::Parse(text);
  }

  TempDir dir_;
  std::unique_ptr<EventLoop> loop_ = EventLoop::Start("test-loop");
};

INSTANTIATE_TEST_SUITE_P(Transports, LinkTest,
                         ::testing::Values("tcp:127.0.0.1:0", "tcp:[::1]:0", "unix:PATH", "unix:", "local:0"),
                         [](const auto& info) {
                           std::string name = info.param.substr(0, info.param.find(':'));
                           if (info.param == "tcp:[::1]:0") name += "6";
                           if (info.param == "unix:") name += "_abstract";
                           return name;
                         });

TEST_P(LinkTest, ServeReportsConcreteAddress) {
  Inbox inbox;
  auto listener = Listener::Serve(*loop_, BindAddr(), inbox);
  ASSERT_THAT(listener, IsOk());
  EXPECT_FALSE((*listener)->addr().is_any()) << (*listener)->addr();
  EXPECT_EQ((*listener)->addr().transport(), BindAddr().transport());
  EXPECT_NE((*listener)->incarnation(), 0u);
}

TEST_P(LinkTest, SendCompletesOnAck) {
  Inbox inbox;
  auto listener = *Listener::Serve(*loop_, BindAddr(), inbox);
  auto sender = Sender::Dial(*loop_, listener->addr());
  ASSERT_THAT(sender->Send(Numbered(1), HangGuard()), IsOk());
  // Acknowledged means delivered: the message is already in the inbox.
  EXPECT_EQ(inbox.size(), 1u);
  EXPECT_EQ(NumberOf(*inbox.Receive(HangGuard())), 1u);
  SenderStats s = sender->stats();
  EXPECT_EQ(s.messages_acked, 1u);
  EXPECT_EQ(s.queue_depth, 0u);
  EXPECT_EQ(s.connects, 1u);
}

TEST_P(LinkTest, ManySendersToOneListenerEachInOrder) {
  constexpr int kSenders = 8;
  constexpr int kPerSender = 2000;
  Inbox inbox(64);
  auto listener = *Listener::Serve(*loop_, BindAddr(), inbox);
  std::vector<std::thread> threads;
  for (int t = 0; t < kSenders; ++t) {
    threads.emplace_back([&, t] {
      auto sender = Sender::Dial(*loop_, listener->addr());
      for (int i = 0; i < kPerSender; ++i) {
        ASSERT_THAT(sender->Post(Numbered(t * 1000000 + i), nullptr), IsOk());
      }
      EXPECT_THAT(sender->Flush(HangGuard()), IsOk());
    });
  }
  std::vector<uint64_t> next(kSenders, 0);
  for (int i = 0; i < kSenders * kPerSender; ++i) {
    absl::StatusOr<Message> m = inbox.Receive(HangGuard());
    ASSERT_THAT(m, IsOk());
    uint64_t n = NumberOf(*m);
    int t = static_cast<int>(n / 1000000);
    ASSERT_EQ(n % 1000000, next[t]) << "sender " << t << " out of order";
    ++next[t];
  }
  for (auto& th : threads) th.join();
  ListenerStats ls = listener->stats();
  EXPECT_EQ(ls.messages_received, static_cast<uint64_t>(kSenders * kPerSender));
  EXPECT_EQ(ls.connections_accepted, static_cast<uint64_t>(kSenders));
  EXPECT_EQ(ls.duplicates_dropped, 0u);
  EXPECT_EQ(ls.protocol_errors, 0u);
}

TEST_P(LinkTest, AcksAreCumulativeByCountOrTime) {
  Inbox inbox(1 << 16);
  ListenerOptions lopts;
  lopts.ack_every = 10;                      // by count...
  lopts.ack_delay = absl::Milliseconds(20);  // ...or this long after the first unacked delivery
  auto listener = *Listener::Serve(*loop_, BindAddr(), inbox, lopts);
  auto sender = Sender::Dial(*loop_, listener->addr());
  for (int i = 0; i < 25; ++i) ASSERT_THAT(sender->Post(Numbered(i), nullptr), IsOk());
  ASSERT_THAT(sender->Flush(HangGuard()), IsOk()) << "the last 5 are acknowledged by the timer";
  EXPECT_EQ(sender->stats().messages_acked, 25u);
  EXPECT_LE(listener->stats().acks_sent, 6u) << "one ack covers many messages";
  EXPECT_GE(listener->stats().acks_sent, 3u);
}

TEST_P(LinkTest, LargeMessagesArriveIntact) {
  Inbox inbox;
  auto listener = *Listener::Serve(*loop_, BindAddr(), inbox);
  auto sender = Sender::Dial(*loop_, listener->addr());
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131);
  ASSERT_THAT(sender->Send(*Message::Create("d", "p", "s", big), HangGuard()), IsOk());
  absl::StatusOr<Message> m = inbox.Receive(HangGuard());
  ASSERT_THAT(m, IsOk());
  EXPECT_TRUE(m->payload() == big);
}

TEST_P(LinkTest, GracefulSenderCloseEndsTheSession) {
  Inbox inbox;
  auto listener = *Listener::Serve(*loop_, BindAddr(), inbox);
  auto sender = Sender::Dial(*loop_, listener->addr());
  for (int i = 0; i < 10; ++i) ASSERT_THAT(sender->Post(Numbered(i), nullptr), IsOk());
  sender->Close(HangGuard());
  EXPECT_THAT(ReceiveNumbers(inbox, 10), ElementsAreArray(Iota(0, 10)));
  EXPECT_THAT(sender->Post(Numbered(99), nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("closed")));
  // The listener dropped the session once the goodbye arrived.
  EXPECT_TRUE(Eventually([&] { return listener->stats().sessions == 0; }))
      << listener->stats().sessions << " sessions left";
}

TEST_P(LinkTest, ListenerCloseReturnsOutstandingMessagesPromptly) {
  Inbox inbox(1);  // full after one: the rest stay unacknowledged
  auto listener = *Listener::Serve(*loop_, BindAddr(), inbox);
  SenderOptions opts;
  opts.delivery_timeout = absl::Hours(1);  // so only the goodbye can explain a prompt return
  auto sender = Sender::Dial(*loop_, listener->addr(), opts);
  Outcomes outcomes;
  for (int i = 0; i < 5; ++i) ASSERT_THAT(sender->Post(Numbered(i), outcomes.Track()), IsOk());
  outcomes.WaitFor(1);  // the first is delivered and acknowledged
  listener->Close();
  outcomes.WaitFor(5);
  EXPECT_THAT(outcomes.acked(), ElementsAreArray({0}));
  ASSERT_EQ(outcomes.returned().size(), 4u);
  for (auto& [n, status] : outcomes.returned()) {
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("closed: listener closed")));
    EXPECT_EQ(ReturnReasonOf(status), ReturnReason::kPeerClosed);
  }
}

TEST_P(LinkTest, ReceiverThatStopsReadingBoundsTheSenderQueue) {
  Inbox inbox(4);
  auto listener = *Listener::Serve(*loop_, BindAddr(), inbox);
  SenderOptions opts;
  opts.max_queued_messages = 100;
  auto sender = Sender::Dial(*loop_, listener->addr(), opts);
  const std::string pad(1000, 'p');  // fill kernel buffers sooner
  uint64_t posted = 0;
  absl::Status s;
  absl::Time guard = HangGuard();
  while (absl::Now() < guard) {
    Message m = Numbered(posted, pad);
    s = sender->Post(std::move(m), nullptr, WhenFull::kFail);
    if (!s.ok()) break;
    ++posted;
    // Pacing, not waiting for an event: give the loop a moment to push bytes out so
    // the kernel buffers fill before the queue does.
    if (posted % 100 == 0) absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("is full (100 messages")));
  SenderStats st = sender->stats();
  EXPECT_LE(st.queue_depth, 100u);
  EXPECT_LE(st.queue_bytes, 100 * (1000 + 64));
  EXPECT_GE(st.sends_rejected, 1u);
  // The listener stops reading that peer once its receiver is full.
  EXPECT_TRUE(Eventually([&] { return listener->stats().deliveries_paused > 0; }));

  // A waiting sender blocks (the queue stays bounded meanwhile), then resumes once
  // the receiver drains; everything arrives in order.
  std::thread waiter([&] {
    for (int i = 0; i < 50; ++i) EXPECT_THAT(sender->Post(Numbered(posted + i, pad), nullptr), IsOk());
  });
  EXPECT_TRUE(Eventually([&] { return sender->stats().sends_waited >= 1; }));
  EXPECT_LE(sender->stats().queue_depth, 100u);
  EXPECT_THAT(ReceiveNumbers(inbox, posted + 50), ElementsAreArray(Iota(0, posted + 50)));
  waiter.join();
}

TEST_P(LinkTest, NotifyWhenRoomFiresOnceRoomFrees) {
  Inbox inbox(1);
  auto listener = *Listener::Serve(*loop_, BindAddr(), inbox);
  SenderOptions opts;
  opts.max_queued_messages = 2;
  auto sender = Sender::Dial(*loop_, listener->addr(), opts);
  // One delivered (inbox full), one held by the paused connection, two queued.
  int posted = 0;
  while (sender->Post(Numbered(posted), nullptr, WhenFull::kFail).ok()) ++posted;
  absl::Notification room;
  sender->NotifyWhenRoom(Numbered(posted).wire_size(), [&] { room.Notify(); });
  EXPECT_FALSE(room.HasBeenNotified());
  ASSERT_THAT(inbox.Receive(HangGuard()), IsOk());
  EXPECT_TRUE(room.WaitForNotificationWithDeadline(HangGuard()));
}

TEST(LinkDialTest, DialBeforeServeBuffersThenDeliversInOrder) {
  TempDir dir;
  auto loop = EventLoop::Start("test-loop");
  for (const std::string& text : {"unix:" + dir.Join("late.sock"), std::string("local:987654")}) {
    ChannelAddr addr = *ChannelAddr::Parse(text);
    auto sender = Sender::Dial(*loop, addr);
    Outcomes outcomes;
    for (int i = 0; i < 100; ++i) ASSERT_THAT(sender->Post(Numbered(i), outcomes.Track()), IsOk());
    // Let a few connection attempts fail first.
    EXPECT_TRUE(Eventually([&] { return sender->stats().connect_failures > 0; })) << text;
    Inbox inbox;
    auto listener = Listener::Serve(*loop, addr, inbox);
    ASSERT_THAT(listener, IsOk());
    EXPECT_THAT(ReceiveNumbers(inbox, 100), ElementsAreArray(Iota(0, 100))) << text;
    outcomes.WaitFor(100);
    EXPECT_EQ(outcomes.acked().size(), 100u);
  }
}

TEST(LinkDialTest, ServingATakenAddressIsAlreadyExists) {
  TempDir dir;
  auto loop = EventLoop::Start("test-loop");
  Inbox inbox;
  for (const std::string& text :
       {"unix:" + dir.Join("x.sock"), std::string("unix:@hostd-test-taken"), std::string("local:424242")}) {
    auto first = Listener::Serve(*loop, *ChannelAddr::Parse(text), inbox);
    ASSERT_THAT(first, IsOk());
    EXPECT_THAT(Listener::Serve(*loop, *ChannelAddr::Parse(text), inbox),
                StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("another listener is serving it")))
        << text;
  }
}

TEST(LinkDialTest, StaleUnixSocketFileIsReplaced) {
  TempDir dir;
  auto loop = EventLoop::Start("test-loop");
  ChannelAddr addr = *ChannelAddr::Parse("unix:" + dir.Join("stale.sock"));
  {
    // A listener that dies without cleaning up leaves its socket file behind.
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    absl::StatusOr<base::UnixAddr> sa = base::UnixAddr::Create(addr.host());
    ASSERT_THAT(sa, IsOk());
    ASSERT_EQ(::bind(fd, sa->get(), sa->size()), 0);
    ::close(fd);
  }
  Inbox inbox;
  auto listener = Listener::Serve(*loop, addr, inbox);
  ASSERT_THAT(listener, IsOk());
  auto sender = Sender::Dial(*loop, addr);
  EXPECT_THAT(sender->Send(Numbered(5), HangGuard()), IsOk());
  (*listener)->Close();
  EXPECT_FALSE(std::filesystem::exists(addr.host())) << "Close removes the socket file";
}

TEST(LinkDialTest, OversizedSendIsRefusedWithClearError) {
  auto loop = EventLoop::Start("test-loop");
  SenderOptions opts;
  opts.max_frame_body = 1000;
  auto sender = Sender::Dial(*loop, ChannelAddr::Local(1), opts);
  Message m = Numbered(1, std::string(2000, 'x'));
  EXPECT_THAT(sender->Post(std::move(m), nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds the link's frame limit of 1000 bytes")));
  // Refused means untouched: the caller still has its message.
  EXPECT_EQ(NumberOf(m), 1u);
  EXPECT_EQ(sender->stats().sends_rejected, 1u);
}

TEST(LinkDialTest, DeliveryTimeoutReturnsMessagesWithReason) {
  TempDir dir;
  auto loop = EventLoop::Start("test-loop");
  SenderOptions opts;
  opts.delivery_timeout = absl::Milliseconds(200);
  auto sender = Sender::Dial(*loop, *ChannelAddr::Parse("unix:" + dir.Join("nobody.sock")), opts);
  Outcomes outcomes;
  for (int i = 0; i < 3; ++i) ASSERT_THAT(sender->Post(Numbered(i), outcomes.Track()), IsOk());
  outcomes.WaitFor(3);
  ASSERT_EQ(outcomes.returned().size(), 3u);
  for (auto& [n, status] : outcomes.returned()) {
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("no acknowledgement from unix:")));
    EXPECT_EQ(ReturnReasonOf(status), ReturnReason::kTimeout);
  }
  EXPECT_EQ(sender->stats().messages_returned, 3u);
  EXPECT_EQ(sender->stats().queue_depth, 0u);
}

TEST(LinkDialTest, SenderCloseReturnsWhatIsStillQueued) {
  TempDir dir;
  auto loop = EventLoop::Start("test-loop");
  auto sender = Sender::Dial(*loop, *ChannelAddr::Parse("unix:" + dir.Join("nobody.sock")));
  Outcomes outcomes;
  ASSERT_THAT(sender->Post(Numbered(7), outcomes.Track()), IsOk());
  sender->Close();
  outcomes.WaitFor(1);
  ASSERT_EQ(outcomes.returned().size(), 1u);
  EXPECT_THAT(outcomes.returned()[0].second, StatusIs(absl::StatusCode::kCancelled, HasSubstr("closed before")));
  EXPECT_EQ(ReturnReasonOf(outcomes.returned()[0].second), ReturnReason::kSenderClosed);
}

// A return handler takes the returns of messages posted without a `done`, and only
// those: acknowledged messages never reach it, and a message with its own `done`
// comes back there alone.
TEST(LinkDialTest, AReturnHandlerTakesReturnsOfMessagesPostedWithoutDone) {
  TempDir dir;
  auto loop = EventLoop::Start("test-loop");
  Inbox inbox;
  auto listener = *Listener::Serve(*loop, *ChannelAddr::Parse("unix:" + dir.Join("l.sock")), inbox);
  Outcomes handled;  // what the return handler got
  auto sender = Sender::Dial(*loop, listener->addr(), {}, handled.Track());
  for (int i = 0; i < 3; ++i) ASSERT_THAT(sender->Post(Numbered(i), nullptr), IsOk());
  ASSERT_THAT(sender->Flush(HangGuard()), IsOk());
  EXPECT_THAT(ReceiveNumbers(inbox, 3), ElementsAreArray(Iota(0, 3)));

  listener->Close();
  Outcomes own;
  ASSERT_THAT(sender->Post(Numbered(10), nullptr), IsOk());
  ASSERT_THAT(sender->Post(Numbered(11), own.Track()), IsOk());
  ASSERT_THAT(sender->Post(Numbered(12), nullptr), IsOk());
  sender->Close();
  handled.WaitFor(2);
  own.WaitFor(1);
  EXPECT_TRUE(handled.acked().empty());
  std::vector<uint64_t> returned;
  for (const auto& [n, status] : handled.returned()) {
    returned.push_back(n);
    EXPECT_NE(ReturnReasonOf(status), ReturnReason::kNone) << status;
  }
  EXPECT_THAT(returned, ::testing::ElementsAre(10, 12));
  ASSERT_EQ(own.returned().size(), 1u);
  EXPECT_EQ(own.returned()[0].first, 11u);
}

// An abstract unix address has no file permissions: the listener checks the
// peer's credentials and closes a connection from another user before it says
// anything, where a peer of its own user would get the handshake's 10 s.
TEST(UnixListenerTest, AConnectionFromAnotherUserIsClosedAtOnce) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another user";
  auto loop = EventLoop::Start("peercred");
  Inbox inbox;
  auto listener = Listener::Serve(*loop, *ChannelAddr::Parse(absl::StrCat("unix:@hostd-peercred-", ::getpid())), inbox);
  ASSERT_THAT(listener, IsOk());
  absl::StatusOr<base::UnixAddr> addr = base::UnixAddr::Create((*listener)->addr().host());
  ASSERT_THAT(addr, IsOk());
  pid_t child = ::fork();
  if (child == 0) {  // only system calls from here
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || ::connect(fd, addr->get(), addr->size()) != 0) ::_exit(3);
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 3000) != 1) ::_exit(4);  // still open: not refused
    char c;
    ::_exit(::read(fd, &c, 1) <= 0 ? 0 : 5);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: setuid, 3: connect, 4: the connection stayed open, 5: data";
}

// Before the handshake too, a listener that refuses a peer says why in a CLOSE:
// a peer that is not hostd, or speaks another version, can read the cause.
TEST(UnixListenerTest, ABadFirstFrameIsAnsweredWithACloseNamingTheCause) {
  auto loop = EventLoop::Start("badhello");
  Inbox inbox;
  auto listener = Listener::Serve(*loop, *ChannelAddr::Parse(absl::StrCat("unix:@hostd-badhello-", ::getpid())), inbox);
  ASSERT_THAT(listener, IsOk());
  absl::StatusOr<base::UnixAddr> addr = base::UnixAddr::Create((*listener)->addr().host());
  ASSERT_THAT(addr, IsOk());
  base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(fd.get(), addr->get(), addr->size()), 0);
  std::string hello = EncodeHello({.session_id = 7});
  EncodedHeader h = EncodeHeader({FrameType::kHello, static_cast<uint32_t>(hello.size()), 0});
  std::string bytes = std::string(h.data(), h.size()) + hello;
  bytes[0] ^= 0x5a;  // not hostd's magic
  ASSERT_EQ(::write(fd.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  FrameDecoder decoder;
  std::optional<Frame> close;
  while (!close.has_value()) {
    pollfd p{fd.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1) << "no answer";
    absl::Span<char> span = decoder.WritableSpan();
    ssize_t n = ::read(fd.get(), span.data(), span.size());
    ASSERT_GT(n, 0) << "closed without a CLOSE frame";
    decoder.CommitWrite(static_cast<size_t>(n));
    absl::StatusOr<std::optional<Frame>> f = decoder.Next();
    ASSERT_THAT(f, IsOk());
    close = std::move(*f);
  }
  EXPECT_EQ(close->header.type, FrameType::kClose);
  EXPECT_THAT(close->body, AllOf(HasSubstr("protocol error"), HasSubstr("magic")));
  EXPECT_EQ((*listener)->stats().protocol_errors, 1u);
}

// A HELLO for `session`, then a DATA header declaring `length` body bytes and only
// `part` of them: what a peer that stalls mid-frame sends.
std::string HelloThenPartOfAFrame(uint64_t session, uint32_t length, const std::string& part) {
  std::string hello = EncodeHello({.session_id = session});
  EncodedHeader hh = EncodeHeader({FrameType::kHello, static_cast<uint32_t>(hello.size()), 0});
  EncodedHeader dh = EncodeHeader({FrameType::kData, length, 1});
  return std::string(hh.data(), hh.size()) + hello + std::string(dh.data(), dh.size()) + part;
}

// Reads frames from `fd` until a CLOSE (the last in `frames`); fails if the
// connection ends without one or nothing comes for 10 s.
void ReadUntilClose(int fd, std::vector<Frame>* frames) {
  FrameDecoder decoder;
  while (frames->empty() || frames->back().header.type != FrameType::kClose) {
    pollfd p{fd, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1) << "no answer";
    absl::Span<char> span = decoder.WritableSpan();
    ssize_t n = ::read(fd, span.data(), span.size());
    ASSERT_GT(n, 0) << "closed without a CLOSE frame";
    decoder.CommitWrite(static_cast<size_t>(n));
    for (absl::StatusOr<std::optional<Frame>> f = decoder.Next(); f.ok() && f->has_value(); f = decoder.Next()) {
      frames->push_back(std::move(**f));
    }
  }
}

// A peer that sends part of a frame and then nothing holds the listener's memory:
// after the stall timeout it is told so and closed.
TEST(UnixListenerTest, AHalfSentFrameIsTimedOutWithACloseSayingSo) {
  auto loop = EventLoop::Start("stall");
  Inbox inbox;
  ListenerOptions opts;
  opts.stall_timeout = absl::Milliseconds(200);
  auto listener =
      Listener::Serve(*loop, *ChannelAddr::Parse(absl::StrCat("unix:@hostd-stall-", ::getpid())), inbox, opts);
  ASSERT_THAT(listener, IsOk());
  absl::StatusOr<base::UnixAddr> addr = base::UnixAddr::Create((*listener)->addr().host());
  ASSERT_THAT(addr, IsOk());
  base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(fd.get(), addr->get(), addr->size()), 0);
  std::string bytes = HelloThenPartOfAFrame(9, 100, "0123456789");
  ASSERT_EQ(::write(fd.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  std::vector<Frame> frames;
  ASSERT_NO_FATAL_FAILURE(ReadUntilClose(fd.get(), &frames));
  ASSERT_EQ(frames.front().header.type, FrameType::kWelcome);
  EXPECT_THAT(frames.back().body, AllOf(HasSubstr("protocol error"), HasSubstr("stalled")));
  EXPECT_EQ(inbox.size(), 0u);
}

// Peers that each declare a large frame and send a few bytes cannot make the
// process hold more than its budget for partial frames: past it a connection gets
// a CLOSE naming the budget, and closed connections give their share back.
TEST(UnixListenerTest, PartialLargeFramesPastTheProcessBudgetAreClosedNamingIt) {
  // A body of which 3 bytes arrived gets room for them and one step more.
  constexpr size_t kStep = FrameDecoder::kBodyStep + 3;
  FrameDecoder::SetPartialBodyBudget(3 * kStep);
  auto loop = EventLoop::Start("budget");
  Inbox inbox;
  auto listener = Listener::Serve(*loop, *ChannelAddr::Parse(absl::StrCat("unix:@hostd-budget-", ::getpid())), inbox);
  ASSERT_THAT(listener, IsOk());
  absl::StatusOr<base::UnixAddr> addr = base::UnixAddr::Create((*listener)->addr().host());
  ASSERT_THAT(addr, IsOk());
  auto attack = [&](uint64_t session) {
    base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::connect(fd.get(), addr->get(), addr->size()), 0);
    std::string bytes = HelloThenPartOfAFrame(session, 60u << 20, "abc");
    EXPECT_EQ(::write(fd.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    return fd;
  };
  std::vector<base::UniqueFd> held;
  for (uint64_t i = 1; i <= 3; ++i) {
    held.push_back(attack(i));
    ASSERT_TRUE(Eventually([&] { return FrameDecoder::partial_body_bytes() == i * kStep; }));
  }
  base::UniqueFd refused = attack(4);
  std::vector<Frame> frames;
  ASSERT_NO_FATAL_FAILURE(ReadUntilClose(refused.get(), &frames));
  EXPECT_THAT(frames.back().body, HasSubstr("--max-partial-frame-bytes"));
  EXPECT_EQ(FrameDecoder::partial_body_bytes(), 3 * kStep);
  held.clear();
  EXPECT_TRUE(Eventually([&] { return FrameDecoder::partial_body_bytes() == 0; }));
  EXPECT_EQ(inbox.size(), 0u);
  FrameDecoder::SetPartialBodyBudget(FrameDecoder::kDefaultPartialBodyBudget);
}

// One listener cannot be made to hold every descriptor: past max_connections a
// connection is closed at once, and once one goes a new one is served again.
TEST(UnixListenerTest, PastTheConnectionCapNewConnectionsAreShedAndServedAgainLater) {
  auto loop = EventLoop::Start("cap");
  Inbox inbox;
  ListenerOptions opts;
  opts.max_connections = 2;
  auto listener =
      Listener::Serve(*loop, *ChannelAddr::Parse(absl::StrCat("unix:@hostd-cap-", ::getpid())), inbox, opts);
  ASSERT_THAT(listener, IsOk());
  absl::StatusOr<base::UnixAddr> addr = base::UnixAddr::Create((*listener)->addr().host());
  ASSERT_THAT(addr, IsOk());
  auto dial = [&] {
    base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::connect(fd.get(), addr->get(), addr->size()), 0);
    return fd;
  };
  // Hello in, Welcome back: the connection is served.
  auto served = [](const base::UniqueFd& fd, uint64_t session) {
    std::string hello = EncodeHello({.session_id = session});
    EncodedHeader h = EncodeHeader({FrameType::kHello, static_cast<uint32_t>(hello.size()), 0});
    std::string bytes = std::string(h.data(), h.size()) + hello;
    if (::write(fd.get(), bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) return false;
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) return false;
    char buf[256];
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    return n >= static_cast<ssize_t>(kFrameHeaderSize) && static_cast<FrameType>(buf[3]) == FrameType::kWelcome;
  };
  base::UniqueFd a = dial();
  base::UniqueFd b = dial();
  ASSERT_TRUE(served(a, 1));
  ASSERT_TRUE(served(b, 2));
  base::UniqueFd c = dial();
  pollfd p{c.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  char byte;
  EXPECT_EQ(::read(c.get(), &byte, 1), 0) << "the third connection is closed at once";
  EXPECT_EQ((*listener)->stats().connections_refused, 1u);
  a.reset();
  ASSERT_TRUE(Eventually([&] { return (*listener)->stats().connections_open == 1; }));
  base::UniqueFd d = dial();
  EXPECT_TRUE(served(d, 4)) << "a connection is served again once there is room";
}

}  // namespace
}  // namespace hostd::channel
