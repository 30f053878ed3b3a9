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

// Arm checks every later launch for the client recorded in the spec; a proc whose
// client is unknown (recorded before identities were) passes where a rule for any
// client allows its program, and nowhere else.
TEST(ExecPolicyTest, AnArmedSpecIsCheckedForItsClientAndAnUnknownClientForAnyRule) {
  ExecPolicy p = *ExecPolicy::Create({"ops=/opt/tools/*"}, {});
  manager::SpawnSpec spec;
  p.Arm("ops", spec);
  EXPECT_EQ(spec.client_identity, "ops");
  EXPECT_THAT(spec.authorize("/opt/tools/deploy"), IsOk());
  p.Arm("dev", spec);
  EXPECT_THAT(spec.authorize("/opt/tools/deploy"), StatusIs(absl::StatusCode::kPermissionDenied));
  p.Arm(std::nullopt, spec);
  EXPECT_FALSE(spec.client_identity.has_value());
  EXPECT_THAT(spec.authorize("/opt/tools/deploy"), IsOk());
  EXPECT_THAT(spec.authorize("/usr/bin/env"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("not allowed for any client")));
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
