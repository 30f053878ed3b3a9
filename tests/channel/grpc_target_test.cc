#include "absl/strings/str_cat.h"
#include "channel/grpc_target.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace hostd::channel {
namespace {

using ::hostd::testing::StatusIs;
using ::testing::HasSubstr;

TEST(GrpcTargetTest, UnixPathStaysAndAbstractNameBecomesUnixAbstract) {
  EXPECT_EQ(*GrpcTarget("unix:/run/hostd/hostd.sock"), "unix:/run/hostd/hostd.sock");
  EXPECT_EQ(*GrpcTarget("unix:@hostd-ctl"), "unix-abstract:hostd-ctl");
}

TEST(GrpcTargetTest, TcpBecomesHostPortWithIpv6Bracketed) {
  EXPECT_EQ(*GrpcTarget("tcp:127.0.0.1:7000"), "127.0.0.1:7000");
  EXPECT_EQ(*GrpcTarget("tcp:[::1]:7000"), "[::1]:7000");
  EXPECT_EQ(*GrpcTarget("tls:node-3.example.net:7443"), "node-3.example.net:7443");
}

TEST(GrpcTargetTest, RejectsLocalAnyAndMalformedAddressesQuotingThem) {
  for (const char* addr : {"local:3", "unix:", "tcp:127.0.0.1:0", "tcp:Localhost:7000", "hostd.sock"}) {
    EXPECT_THAT(GrpcTarget(addr),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(absl::StrCat("\"", addr, "\""))));
  }
}

}  // namespace
}  // namespace hostd::channel
