#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/proc_logs.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace hostd::manager {
namespace {

using ::hostd::testing::StatusIs;
using ::testing::HasSubstr;

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

TEST(ProcLogsTest, AnOversizedLogIsCopiedToDotOneOlderOnesShiftAndTheOldestGoes) {
  testing::TempDir dir;
  ProcLogs logs({.dir = dir.path(), .max_bytes = 10, .rotations = 2});
  auto fds = logs.Open("w", false);
  ASSERT_TRUE(fds.ok()) << fds.status();
  int out = fds->first.get();
  for (const char* text : {"first log line\n", "second log line\n", "third log line\n"}) {
    ASSERT_GT(::write(out, text, strlen(text)), 0);
    logs.RotateOversized({"w"}, nullptr);
  }
  EXPECT_EQ(Read(logs.Path("w", false, 1)), "third log line\n");
  EXPECT_EQ(Read(logs.Path("w", false, 2)), "second log line\n");
  EXPECT_FALSE(Exists(logs.Path("w", false, 3)));
  // O_APPEND: after the truncation the proc's next write starts the file again.
  ASSERT_GT(::write(out, "x\n", 2), 0);
  EXPECT_EQ(Read(logs.Path("w", false)), "x\n");
  struct stat st {};
  ASSERT_EQ(::stat(logs.Path("w", false, 1).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
}

TEST(ProcLogsTest, AFreshSpawnRemovesTheRotationsOfTheNamesEarlierLife) {
  testing::TempDir dir;
  ProcLogs logs({.dir = dir.path(), .max_bytes = 1, .rotations = 2});
  auto fds = logs.Open("w", false);
  ASSERT_TRUE(fds.ok());
  ASSERT_GT(::write(fds->first.get(), "old\n", 4), 0);
  logs.RotateOversized({"w"}, nullptr);
  ASSERT_TRUE(Exists(logs.Path("w", false, 1)));
  ASSERT_TRUE(logs.Open("w", /*append=*/false).ok());
  EXPECT_FALSE(Exists(logs.Path("w", false, 1)));
}

TEST(ProcLogsTest, PruneKeepsLiveProcsAndTheNewestEndedOnes) {
  testing::TempDir dir;
  ProcLogs logs({.dir = dir.path(), .keep_ended = 1});
  for (const char* name : {"live", "old", "new"}) ASSERT_TRUE(logs.Open(name, false).ok());
  struct timespec times[2] = {{.tv_sec = 1000, .tv_nsec = 0}, {.tv_sec = 1000, .tv_nsec = 0}};
  for (bool err : {false, true}) {
    ASSERT_EQ(::utimensat(AT_FDCWD, logs.Path("old", err).c_str(), times, 0), 0);
    ASSERT_EQ(::utimensat(AT_FDCWD, logs.Path("live", err).c_str(), times, 0), 0);
  }
  EXPECT_EQ(logs.Prune({"live"}, absl::Now()), 2u);
  EXPECT_FALSE(Exists(logs.Path("old", false)));
  EXPECT_TRUE(Exists(logs.Path("new", true)));
  EXPECT_TRUE(Exists(logs.Path("live", false)));

  ProcLogs by_age({.dir = dir.path(), .keep_age = absl::Hours(1)});
  EXPECT_EQ(by_age.Prune({"live"}, absl::Now() + absl::Hours(2)), 2u);
  EXPECT_FALSE(Exists(logs.Path("new", false)));
  EXPECT_TRUE(Exists(logs.Path("live", false)));
}

TEST(ProcLogsTest, ASymlinkAtALogPathIsRefusedAndItsTargetUntouched) {
  testing::TempDir dir;
  ProcLogs logs({.dir = dir.path()});
  std::string target = dir.Join("target");
  std::ofstream(target) << "keep";
  ASSERT_EQ(::symlink(target.c_str(), logs.Path("s", true).c_str()), 0);
  EXPECT_THAT(logs.Open("s", false).status(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("symlink")));
  EXPECT_EQ(Read(target), "keep");
}

}  // namespace
}  // namespace hostd::manager
