#include "daemon/exec_policy.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace hostd::daemon {
namespace {

using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(ExecPolicyTest, WithoutRulesEveryProgramRunsAsHostdsUser) {
  ExecPolicy p = *ExecPolicy::Create({}, {});
  EXPECT_FALSE(p.restricts_programs());
  EXPECT_THAT(p.Check("/bin/sh", "", ""), IsOk());
}

TEST(ExecPolicyTest, GlobsDoNotCrossSlashesAndIdentityRulesApplyToThatClientOnly) {
  ExecPolicy p = *ExecPolicy::Create({"/usr/bin/*", "ops=/opt/tools/*"}, {});
  EXPECT_THAT(p.Check("/usr/bin/python3", "", ""), IsOk());
  EXPECT_THAT(p.Check("/usr/bin/sub/x", "", ""),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("program \"/usr/bin/sub/x\" is not allowed"),
                             HasSubstr("rules: /usr/bin/*, ops=/opt/tools/*"))));
  EXPECT_THAT(p.Check("/opt/tools/deploy", "ops", ""), IsOk());
  EXPECT_THAT(p.Check("/opt/tools/deploy", "dev", ""),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("for client \"dev\"")));
  EXPECT_THAT(p.Check("tools/deploy", "ops", ""),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("not an absolute path")));
}

TEST(ExecPolicyTest, UsersMustBeListedAndAGroupOnlyAsWritten) {
  ExecPolicy p = *ExecPolicy::Create({}, {"nobody", "www-data:www-data"});
  EXPECT_THAT(p.Check("/bin/true", "", "nobody"), IsOk());
  EXPECT_THAT(p.Check("/bin/true", "", "www-data:www-data"), IsOk());
  EXPECT_THAT(p.Check("/bin/true", "", "www-data"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("may not run as user \"www-data\"")));
  EXPECT_THAT(p.Check("/bin/true", "", "nobody:root"), StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST(ExecPolicyTest, MalformedRulesAreRefusedNamingThem) {
  EXPECT_THAT(ExecPolicy::Create({"usr/bin/*"}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--allow-exec \"usr/bin/*\"")));
  EXPECT_THAT(ExecPolicy::Create({"=/usr/bin/*"}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("identity before '=' is empty")));
  EXPECT_THAT(ExecPolicy::Create({}, {"nobody:"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--allow-user \"nobody:\"")));
}

}  // namespace
}  // namespace hostd::daemon
