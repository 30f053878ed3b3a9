#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "base/own_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace hostd::base {
namespace {

using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

TEST(OwnDirTest, ModeIsExactlyTheOneAskedForWhateverTheUmask) {
  testing::TempDir dir;
  const mode_t old_umask = ::umask(0);
  ASSERT_THAT(MakeOwnDir(dir.Join("a/b/state"), 0700), IsOk());
  EXPECT_EQ(ModeOf(dir.Join("a/b/state")), 0700u);
  ::umask(077);
  ASSERT_THAT(MakeOwnDir(dir.Join("wide"), 0755), IsOk());
  EXPECT_EQ(ModeOf(dir.Join("wide")), 0755u);
  ::umask(old_umask);
}

TEST(OwnDirTest, AnExistingDirectoryOfOursIsTakenAndItsModeTightened) {
  testing::TempDir dir;
  std::string path = dir.Join("loose");
  ASSERT_EQ(::mkdir(path.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(path.c_str(), 0777), 0);
  ASSERT_THAT(MakeOwnDir(path, 0700), IsOk());
  EXPECT_EQ(ModeOf(path), 0700u);
}

TEST(OwnDirTest, ADirectoryOwnedByAnotherUserIsRefusedAndLeftAsItIs) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to make a directory owned by another user";
  testing::TempDir dir;
  std::string path = dir.Join("planted");
  ASSERT_EQ(::mkdir(path.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(path.c_str(), 0777), 0);
  ASSERT_EQ(::chown(path.c_str(), 65534, 65534), 0);
  EXPECT_THAT(MakeOwnDir(path, 0700),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr(path), HasSubstr("owned by uid 65534"), HasSubstr("hostd's uid 0"))));
  EXPECT_EQ(ModeOf(path), 0777u) << "a refused directory is not chmodded";
}

TEST(OwnDirTest, ASymlinkIsRefusedNotFollowed) {
  testing::TempDir dir;
  std::string target = dir.Join("elsewhere");
  ASSERT_EQ(::mkdir(target.c_str(), 0755), 0);
  std::string link = dir.Join("state");
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  EXPECT_THAT(MakeOwnDir(link, 0700), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("symlink")));
  EXPECT_EQ(ModeOf(target), 0755u) << "the symlink's target is untouched";
}

}  // namespace
}  // namespace hostd::base
