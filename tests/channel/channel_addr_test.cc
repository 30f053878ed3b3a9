#include <string>

#include "channel/channel_addr.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace hostd::channel {
namespace {

using ::hostd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

class ChannelAddrRoundTripTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ChannelAddrRoundTripTest, FormatOfParseIsIdentity) {
  absl::StatusOr<ChannelAddr> addr = ChannelAddr::Parse(GetParam());
  ASSERT_TRUE(addr.ok()) << addr.status();
  EXPECT_EQ(addr->ToString(), GetParam());
  EXPECT_EQ(*ChannelAddr::Parse(addr->ToString()), *addr);
}

INSTANTIATE_TEST_SUITE_P(Canonical, ChannelAddrRoundTripTest,
                         ::testing::Values("tcp:127.0.0.1:4000", "tcp:0.0.0.0:0", "tcp:[::1]:4000",
                                           "tcp:[fe80::1:2]:65535", "tls:10.0.0.7:4000", "tls:[::1]:1",
                                           "tcp:host-3.example.net:4000", "tls:localhost:9", "unix:/run/hostd/fe.sock", "unix:@hostd-fe",
                                           "unix:", "local:7", "local:0", "local:18446744073709551615"));

TEST(ChannelAddrTest, ExposesTransportHostAndPort) {
  ChannelAddr tcp = *ChannelAddr::Parse("tcp:[::1]:9");
  EXPECT_EQ(tcp.transport(), Transport::kTcp);
  EXPECT_EQ(tcp.host(), "::1");
  EXPECT_EQ(tcp.port(), 9u);
  EXPECT_TRUE(tcp.is_ipv6());
  EXPECT_TRUE(ChannelAddr::Parse("unix:@x")->is_abstract());
  EXPECT_FALSE(ChannelAddr::Parse("unix:/x")->is_abstract());
}

TEST(ChannelAddrTest, AnyForms) {
  EXPECT_TRUE(ChannelAddr::Parse("tcp:127.0.0.1:0")->is_any());
  EXPECT_TRUE(ChannelAddr::Parse("unix:")->is_any());
  EXPECT_TRUE(ChannelAddr::Parse("local:0")->is_any());
  EXPECT_FALSE(ChannelAddr::Parse("local:3")->is_any());
  EXPECT_FALSE(ChannelAddr::Parse("tcp:127.0.0.1:1")->is_any());
}

TEST(ChannelAddrTest, NonCanonicalIpv6IsNormalised) {
  EXPECT_EQ(ChannelAddr::Parse("tcp:[0:0:0:0:0:0:0:1]:80")->ToString(), "tcp:[::1]:80");
}

struct BadAddr {
  const char* text;
  const char* why;
};

class ChannelAddrErrorTest : public ::testing::TestWithParam<BadAddr> {};

TEST_P(ChannelAddrErrorTest, ErrorNamesInputAndCause) {
  EXPECT_THAT(ChannelAddr::Parse(GetParam().text),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(std::string("\"") + GetParam().text + "\""), HasSubstr(GetParam().why))));
}

INSTANTIATE_TEST_SUITE_P(
    Errors, ChannelAddrErrorTest,
    ::testing::Values(BadAddr{"", "missing scheme"}, BadAddr{"127.0.0.1:80", "unknown scheme \"127.0.0.1\""},
                      BadAddr{"udp:1.2.3.4:5", "unknown scheme \"udp\""}, BadAddr{"tcp:1.2.3.4", "missing \":PORT\""},
                      BadAddr{"tcp:1.2.3.4:65536", "port \"65536\""}, BadAddr{"tcp:1.2.3.4:-1", "port \"-1\""},
                      BadAddr{"tcp:1.2.3.4:", "port \"\""}, BadAddr{"tcp:1.2.3.4:8o", "port \"8o\""},
                      BadAddr{"tcp:Host-3:80", "lower case"}, BadAddr{"tls:a..b:80", "empty label"},
                      BadAddr{"tcp:-a:80", "cannot start or end with '-'"}, BadAddr{"tcp:a_b:80", "only letters"},
                      BadAddr{"tcp:1.2.3.256:80", "not an IPv4 literal"},
                      BadAddr{"tcp:::1:80", "must be written in brackets"}, BadAddr{"tcp:[::1:80", "closing ']'"},
                      BadAddr{"tcp:[::1]80", "missing \":PORT\""}, BadAddr{"tcp:[1.2.3.4]:80", "not an IPv6 literal"},
                      BadAddr{"unix:relative.sock", "must be absolute"}, BadAddr{"unix:@", "name is empty"},
                      BadAddr{"unix:@has space", "printable"}, BadAddr{"local:x", "decimal number"},
                      BadAddr{"local:", "decimal number"}, BadAddr{"local:99999999999999999999", "decimal number"}));

TEST(ChannelAddrTest, UnixPathLongerThanSunPathIsRejected) {
  std::string ok = "unix:/" + std::string(ChannelAddr::kMaxUnixPathLen - 1, 'a');
  EXPECT_TRUE(ChannelAddr::Parse(ok).ok());
  std::string text = "unix:/" + std::string(ChannelAddr::kMaxUnixPathLen, 'a');
  EXPECT_THAT(ChannelAddr::Parse(text),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("a unix socket path holds at most 107")));
}

TEST(ChannelAddrTest, HostNamesAreKeptAsWrittenAndLoopbackIsRecognised) {
  ChannelAddr named = *ChannelAddr::Parse("tls:node-7.cluster.local:4000");
  EXPECT_EQ(named.transport(), Transport::kTls);
  EXPECT_EQ(named.host(), "node-7.cluster.local");
  EXPECT_FALSE(named.is_ip());
  EXPECT_TRUE(named.is_inet());
  EXPECT_FALSE(named.is_loopback());
  EXPECT_TRUE(ChannelAddr::Parse("tcp:127.0.0.2:1")->is_loopback());
  EXPECT_TRUE(ChannelAddr::Parse("tcp:[::1]:1")->is_loopback());
  EXPECT_TRUE(ChannelAddr::Parse("tls:localhost:1")->is_loopback());
  EXPECT_FALSE(ChannelAddr::Parse("tcp:10.1.2.3:1")->is_loopback());
  EXPECT_TRUE(ChannelAddr::Parse("tcp:0.0.0.0:1")->is_unspecified());
  EXPECT_TRUE(ChannelAddr::Parse("tcp:[::]:1")->is_unspecified());
  EXPECT_NE(*ChannelAddr::Parse("tcp:10.0.0.1:1"), *ChannelAddr::Parse("tls:10.0.0.1:1"));
}

TEST(ChannelAddrTest, FactoriesValidateToo) {
  EXPECT_THAT(ChannelAddr::Tcp("bad host", 1), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("only letters")));
  EXPECT_EQ(ChannelAddr::Tls("example.com", 1)->ToString(), "tls:example.com:1");
  EXPECT_EQ(ChannelAddr::Tcp("::1", 5)->ToString(), "tcp:[::1]:5");
  EXPECT_THAT(ChannelAddr::Unix("x"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("absolute")));
  EXPECT_EQ(ChannelAddr::Local(3).ToString(), "local:3");
}

}  // namespace
}  // namespace hostd::channel
