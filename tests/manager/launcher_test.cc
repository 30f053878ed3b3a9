// The launcher (manager/launcher.h): how a child that does not reach exec is reported.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/launcher.h"
#include "manager_test_util.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace hostd::manager {
namespace {

using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(LauncherTest, ResolveProgramSearchesPath) {
  absl::StatusOr<std::string> sh = ResolveProgram("sh", "/nonexistent:/bin");
  ASSERT_THAT(sh, IsOk());
  EXPECT_EQ(*sh, "/bin/sh");
  EXPECT_THAT(ResolveProgram("", "/bin"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(LauncherTest, ResolveProgramSkipsDirectoriesEmptyEntriesAndMissingPrograms) {
  testing::TempDir dir;
  // A directory with the program's name and the x bit is not the program.
  std::filesystem::create_directories(dir.Join("a/sh"));
  absl::StatusOr<std::string> sh = ResolveProgram("sh", absl::StrCat(dir.Join("a"), "::/bin"));
  ASSERT_THAT(sh, IsOk());
  EXPECT_EQ(*sh, "/bin/sh");
  EXPECT_THAT(ResolveProgram("no-such-program-hostd", "/bin:/usr/bin"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("program \"no-such-program-hostd\" not found in PATH=\"/bin:/usr/bin\"")));
  EXPECT_THAT(ResolveProgram("/nonexistent/hostd-program", "/bin"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("program \"/nonexistent/hostd-program\""), HasSubstr("ENOENT"))));
}

TEST(LauncherTest, StateDescriptorLandsOnItsNumberWithoutAReadinessPipe) {
  testing::TempDir dir;
  std::string out_path = dir.Join("out");
  base::UniqueFd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  base::UniqueFd state(::memfd_create("hostd-test-state", MFD_CLOEXEC));
  ASSERT_TRUE(out.valid());
  ASSERT_TRUE(state.valid());
  LaunchRequest req;
  req.path = HOSTD_TEST_PROC;
  req.argv = {req.path, "--plain", "--list-fds", "--exit-after-ms=0"};
  req.stdout_fd = out.get();
  req.state_fd = state.get();
  absl::StatusOr<Launched> l = Launch(req);
  ASSERT_THAT(l, IsOk());
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PIDFD, static_cast<id_t>(l->pidfd.get()), &info, WEXITED), 0);
  EXPECT_EQ(info.si_code, CLD_EXITED);
  EXPECT_EQ(ReadFile(out_path), absl::StrCat("fds: 0 1 2 ", kStateFd, "\n")) << "nothing at kReadyFd";
}

TEST(LauncherTest, ExecFailureIsReportedWithItsErrno) {
  LaunchRequest req;
  req.path = "/nonexistent/hostd-program";
  req.argv = {req.path};
  absl::StatusOr<Launched> l = Launch(req);
  // FailedPrecondition, not NotFound: to a client NotFound means "no such proc".
  EXPECT_THAT(l, StatusIs(absl::StatusCode::kFailedPrecondition,
                          AllOf(HasSubstr("exec /nonexistent/hostd-program"), HasSubstr("No such file"))));
}

// A child that dies between clone and exec (a signal) wrote nothing: that is not
// an exec. The child is held before exec by opening a fifo nobody reads (as its
// cgroup.procs) and SIGKILLed there.
TEST(LauncherTest, ChildKilledBeforeExecIsAnErrorAndReaped) {
  testing::TempDir dir;
  std::string fifo = dir.Join("hold");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  LaunchRequest req;
  req.path = "/bin/true";
  req.argv = {"true"};
  req.cgroup_procs = fifo;
  std::atomic<pid_t> launcher_tid{0};
  absl::StatusOr<Launched> launched = absl::UnknownError("not launched");
  absl::Notification done;
  std::thread launcher([&] {
    launcher_tid = static_cast<pid_t>(::syscall(SYS_gettid));
    launched = Launch(req);
    done.Notify();
  });
  // The child is the launching thread's only child.
  pid_t child = 0;
  Eventually([&] {
    if (launcher_tid == 0) return false;
    std::string children = ReadFile(absl::StrCat("/proc/self/task/", launcher_tid.load(), "/children"));
    return absl::SimpleAtoi(absl::StripAsciiWhitespace(children), &child) && child != 0;
  });
  ASSERT_NE(child, 0) << "no child appeared";
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_TRUE(done.WaitForNotificationWithDeadline(HangGuard()));
  launcher.join();
  EXPECT_THAT(launched, StatusIs(absl::StatusCode::kInternal,
                                 AllOf(HasSubstr("starting /bin/true"), HasSubstr("killed by SIGKILL before exec"))));
  EXPECT_FALSE(std::filesystem::exists(absl::StrCat("/proc/", child))) << "the child is reaped";
}

}  // namespace
}  // namespace hostd::manager
