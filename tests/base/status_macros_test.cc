#include "base/log.h"
#include "base/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace hostd::base {
namespace {

using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::testing::HasSubstr;

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  HOSTD_ASSIGN_OR_RETURN(int h, Half(x));
  HOSTD_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

absl::Status CheckEven(int x) {
  HOSTD_RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST(StatusMacrosTest, AssignOrReturnPropagatesValueAndError) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_THAT(Quarter(6), StatusIs(absl::StatusCode::kInvalidArgument, "odd"));
}

TEST(StatusMacrosTest, ReturnIfErrorStopsAtFirstError) {
  EXPECT_THAT(CheckEven(4), IsOk());
  EXPECT_THAT(CheckEven(3), StatusIs(absl::StatusCode::kInvalidArgument, "odd"));
}

TEST(LogTest, UnknownLevelIsRejectedByName) {
  EXPECT_THAT(InitLogging("loud"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"loud\"")));
  EXPECT_THAT(InitLogging("warn"), IsOk());
  EXPECT_EQ(Log().level(), spdlog::level::warn);
}

}  // namespace
}  // namespace hostd::base
