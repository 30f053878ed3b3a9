#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "base/small_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace hostd::base {
namespace {

using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::testing::HasSubstr;

TEST(SmallFileTest, RoundTripsAndCapsTheRead) {
  testing::TempDir dir;
  std::string path = dir.Join("f");
  { std::ofstream(path) << ""; }
  ASSERT_THAT(WriteSmallFile(path, "hello world"), IsOk());
  EXPECT_EQ(ReadSmallFile(path).value_or(""), "hello world");
  EXPECT_EQ(ReadSmallFile(path, 4).value_or("").substr(0, 4), "hell");
}

// /proc files of a process that is gone are errors, never exceptions.
TEST(SmallFileTest, AProcessThatIsGoneIsNotFound) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
  EXPECT_THAT(ReadSmallFile(absl::StrCat("/proc/", pid, "/stat")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(absl::StrCat("/proc/", pid, "/stat"))));
  EXPECT_THAT(WriteSmallFile("/nonexistent/dir/file", "x"), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace hostd::base
