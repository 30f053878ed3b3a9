// The tls: transport with real certificates made for each test (testing/test_pki.h):
// links over TLS, peers refused for the wrong CA, a missing client certificate or
// the wrong name, and a reload that new connections pick up; and the dead-peer
// settings of TCP links.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "absl/synchronization/notification.h"
#include "channel/event_loop.h"
#include "channel/listener.h"
#include "channel/sender.h"
#include "channel/tls.h"
#include "channel/transport.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "link_test_util.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"
#include "testing/test_pki.h"

namespace hostd::channel {
namespace {

using ::hostd::testing::Eventually;
using ::hostd::testing::StatusIs;
using ::hostd::testing::TempDir;
using ::hostd::testing::TestPki;
using ::testing::AllOf;
using ::testing::HasSubstr;

class TlsLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<TestPki> ca = TestPki::Create(dir_.path(), "ca1");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_.emplace(*std::move(ca));
    absl::StatusOr<TestPki::Leaf> server = ca_->Issue("server");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *server;
    absl::StatusOr<TestPki::Leaf> client = ca_->Issue("client");
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *client;
  }

  std::shared_ptr<TlsContext> Tls(const TestPki::Leaf& leaf, const std::string& ca, bool require_client = false) {
    absl::StatusOr<std::shared_ptr<TlsContext>> tls = TlsContext::Create(
        {.cert_file = leaf.cert, .key_file = leaf.key, .ca_file = ca, .require_client_cert = require_client});
    EXPECT_TRUE(tls.ok()) << tls.status();
    return tls.ok() ? *tls : nullptr;
  }

  // One dial, as a sender makes it: connect, TLS handshake, verification.
  absl::Status Dial(const ChannelAddr& addr, std::shared_ptr<TlsContext> tls) {
    absl::Notification done;
    absl::Status out;
    loop_->Post([&] {
      AsyncConnect(loop_->context(), addr, tls, [&](absl::Status s, Socket) {
        out = s;
        done.Notify();
      });
    });
    EXPECT_TRUE(done.WaitForNotificationWithDeadline(HangGuard()));
    return out;
  }

  TempDir dir_;
  std::optional<TestPki> ca_;
  TestPki::Leaf server_;
  TestPki::Leaf client_;
  std::unique_ptr<EventLoop> loop_ = EventLoop::Start("tls-test");
};

TEST_F(TlsLinkTest, MessagesCrossAMutuallyVerifiedLink) {
  Inbox inbox;
  auto listener = Listener::Serve(*loop_, *ChannelAddr::Parse("tls:127.0.0.1:0"), inbox,
                                  {.tls = Tls(server_, ca_->ca_cert(), /*require_client=*/true)});
  ASSERT_TRUE(listener.ok()) << listener.status();
  EXPECT_EQ((*listener)->addr().transport(), Transport::kTls);
  auto sender = Sender::Dial(*loop_, (*listener)->addr(), {.tls = Tls(client_, ca_->ca_cert())});
  for (uint64_t i = 1; i <= 3; ++i) {
    ASSERT_TRUE(sender->Send(Numbered(i, std::string(100000, 'x')), HangGuard()).ok());
  }
  EXPECT_EQ(ReceiveNumbers(inbox, 3), Iota(1, 4));
  EXPECT_EQ((*listener)->stats().tls_handshake_failures, 0u);
}

TEST_F(TlsLinkTest, AHostNameInTheAddressIsResolvedAndVerified) {
  Inbox inbox;
  auto listener =
      Listener::Serve(*loop_, *ChannelAddr::Parse("tls:127.0.0.1:0"), inbox, {.tls = Tls(server_, ca_->ca_cert())});
  ASSERT_TRUE(listener.ok()) << listener.status();
  ChannelAddr named = *ChannelAddr::Tls("localhost", static_cast<uint16_t>((*listener)->addr().port()));
  auto sender = Sender::Dial(*loop_, named, {.tls = Tls(client_, ca_->ca_cert())});
  ASSERT_TRUE(sender->Send(Numbered(1), HangGuard()).ok());
  EXPECT_EQ(ReceiveNumbers(inbox, 1), Iota(1, 2));
}

TEST_F(TlsLinkTest, AListenerSignedByAnotherCaIsRefusedNamingTheVerifyFailure) {
  absl::StatusOr<TestPki> other = TestPki::Create(dir_.path(), "ca2");
  ASSERT_TRUE(other.ok()) << other.status();
  Inbox inbox;
  auto listener =
      Listener::Serve(*loop_, *ChannelAddr::Parse("tls:127.0.0.1:0"), inbox, {.tls = Tls(server_, ca_->ca_cert())});
  ASSERT_TRUE(listener.ok()) << listener.status();
  EXPECT_THAT(Dial((*listener)->addr(), Tls(client_, other->ca_cert())),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       AllOf(HasSubstr("certificate verify failed"), HasSubstr("--tls-ca"))));
  // A sender keeps retrying; what it could not deliver comes back with the cause.
  auto sender = Sender::Dial(*loop_, (*listener)->addr(),
                             {.delivery_timeout = absl::Seconds(1), .tls = Tls(client_, other->ca_cert())});
  EXPECT_THAT(sender->Send(Numbered(1), HangGuard()),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("certificate verify failed")));
}

TEST_F(TlsLinkTest, ACertificateForAnotherAddressIsRefused) {
  absl::StatusOr<TestPki::Leaf> elsewhere = ca_->Issue("elsewhere", "IP:10.9.9.9,DNS:elsewhere.example");
  ASSERT_TRUE(elsewhere.ok()) << elsewhere.status();
  Inbox inbox;
  auto listener = Listener::Serve(*loop_, *ChannelAddr::Parse("tls:127.0.0.1:0"), inbox,
                                  {.tls = Tls(*elsewhere, ca_->ca_cert())});
  ASSERT_TRUE(listener.ok()) << listener.status();
  EXPECT_THAT(Dial((*listener)->addr(), Tls(client_, ca_->ca_cert())),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("IP address mismatch")));
}

TEST_F(TlsLinkTest, WithClientCertificatesRequiredADialerWithoutOneIsRefused) {
  Inbox inbox;
  auto listener = Listener::Serve(*loop_, *ChannelAddr::Parse("tls:127.0.0.1:0"), inbox,
                                  {.tls = Tls(server_, ca_->ca_cert(), /*require_client=*/true)});
  ASSERT_TRUE(listener.ok()) << listener.status();
  absl::StatusOr<std::shared_ptr<TlsContext>> anonymous = TlsContext::Create({.cert_file = "", .key_file = "", .ca_file = ca_->ca_cert()});
  ASSERT_TRUE(anonymous.ok()) << anonymous.status();
  auto sender =
      Sender::Dial(*loop_, (*listener)->addr(), {.delivery_timeout = absl::Seconds(1), .tls = *anonymous});
  EXPECT_THAT(sender->Send(Numbered(1), HangGuard()),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("certificate required")));
  EXPECT_GE((*listener)->stats().tls_handshake_failures, 1u);
  EXPECT_EQ((*listener)->stats().messages_received, 0u);
}

TEST_F(TlsLinkTest, ReloadServesTheNewCertificateToNewConnections) {
  absl::StatusOr<TestPki> next = TestPki::Create(dir_.path(), "ca2");
  ASSERT_TRUE(next.ok()) << next.status();
  absl::StatusOr<TestPki::Leaf> renewed = next->Issue("renewed");
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  // The listener's files are rewritten in place, as a certificate renewal does.
  std::string cert = dir_.Join("live.crt"), key = dir_.Join("live.key");
  std::filesystem::copy_file(server_.cert, cert);
  std::filesystem::copy_file(server_.key, key);
  std::shared_ptr<TlsContext> tls = Tls({cert, key}, ca_->ca_cert());
  Inbox inbox;
  auto listener = Listener::Serve(*loop_, *ChannelAddr::Parse("tls:127.0.0.1:0"), inbox, {.tls = tls});
  ASSERT_TRUE(listener.ok()) << listener.status();
  std::shared_ptr<TlsContext> trusts_next = Tls(client_, next->ca_cert());
  EXPECT_THAT(Dial((*listener)->addr(), trusts_next), StatusIs(absl::StatusCode::kUnauthenticated));

  std::filesystem::copy_file(renewed->cert, cert, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(renewed->key, key, std::filesystem::copy_options::overwrite_existing);
  ASSERT_TRUE(tls->Reload().ok());
  EXPECT_EQ(tls->generation(), 2u);
  EXPECT_TRUE(Dial((*listener)->addr(), trusts_next).ok());
}

TEST_F(TlsLinkTest, ReloadKeepsTheOldContextWhenTheNewFilesAreBad) {
  std::string key = dir_.Join("live.key");
  std::filesystem::copy_file(server_.key, key);
  std::shared_ptr<TlsContext> tls = Tls({server_.cert, key}, ca_->ca_cert());
  std::ofstream(key, std::ios::trunc) << "not a key\n";
  EXPECT_THAT(tls->Reload(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(key)));
  EXPECT_EQ(tls->generation(), 1u);
  EXPECT_NE(tls->server(), nullptr);
}

TEST_F(TlsLinkTest, ATlsListenerWithoutCertificatesAndADialWithoutTlsAreRefusedAtOnce) {
  Inbox inbox;
  EXPECT_THAT(Listener::Serve(*loop_, *ChannelAddr::Parse("tls:127.0.0.1:0"), inbox),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--tls-cert")));
  EXPECT_THAT(Dial(*ChannelAddr::Parse("tls:127.0.0.1:9"), nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("TLS is not configured")));
  EXPECT_THAT(Listener::Serve(*loop_, *ChannelAddr::Parse("tcp:localhost:0"), inbox),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a host name")));
}

// The kernel's TCP settings of a descriptor: SO_KEEPALIVE, TCP_KEEPIDLE,
// TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT (ms).
std::vector<int> DeadPeerSettings(int fd) {
  std::vector<int> v(5, -1);
  const int opts[][2] = {{SOL_SOCKET, SO_KEEPALIVE},
                         {IPPROTO_TCP, TCP_KEEPIDLE},
                         {IPPROTO_TCP, TCP_KEEPINTVL},
                         {IPPROTO_TCP, TCP_KEEPCNT},
                         {IPPROTO_TCP, TCP_USER_TIMEOUT}};
  for (int i = 0; i < 5; ++i) {
    socklen_t len = sizeof(int);
    getsockopt(fd, opts[i][0], opts[i][1], &v[i], &len);
  }
  return v;
}

// The detection time is the kernel's to keep once asked; what hostd owns is asking
// on both ends of a link, with the documented split of the timeout (12 s: probes
// after 6 s of silence, 3 of them 2 s apart; unacknowledged data for 12 s).
TEST(DeadPeerTest, BothEndsOfATcpLinkAskTheKernelToAbortASilentPeerWithinTheTimeout) {
  auto loop = EventLoop::Start("dead-peer");
  Inbox inbox;
  ListenerOptions lo;
  lo.dead_peer_timeout = absl::Seconds(12);
  auto listener = Listener::Serve(*loop, *ChannelAddr::Parse("tcp:127.0.0.1:0"), inbox, lo);
  ASSERT_TRUE(listener.ok()) << listener.status();
  SenderOptions so;
  so.dead_peer_timeout = absl::Seconds(12);
  auto sender = Sender::Dial(*loop, (*listener)->addr(), so);
  ASSERT_TRUE(sender->Send(Numbered(1), HangGuard()).ok());
  // Both ends live in this process: find them by port among its descriptors.
  const std::vector<int> expected = {1, 6, 2, 3, 12000};
  int ends = 0;
  for (int fd = 0; fd < 4096; ++fd) {
    sockaddr_in local{}, peer{};
    socklen_t len = sizeof(local), plen = sizeof(peer);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0 || local.sin_family != AF_INET) continue;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) != 0) continue;  // the listening socket
    uint16_t port = static_cast<uint16_t>((*listener)->addr().port());
    if (ntohs(local.sin_port) != port && ntohs(peer.sin_port) != port) continue;
    EXPECT_EQ(DeadPeerSettings(fd), expected) << (ntohs(local.sin_port) == port ? "accepted end" : "dialing end");
    ++ends;
  }
  EXPECT_EQ(ends, 2);
}

}  // namespace
}  // namespace hostd::channel
