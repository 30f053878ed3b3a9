// Descriptor clean-up between fork and exec (manager/descriptors.h), both ways: with
// close_range and with the /proc/self/fd listing older kernels get. Each case runs in
// a forked child, which may only make async-signal-safe calls; its exit code says
// which check failed.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "manager/descriptors.h"

namespace hostd::manager {
namespace {

enum class Sweep { kClose, kMarkCloseOnExec };

// In a child: opens four descriptors without close-on-exec (one far up), applies
// `fn` from the second one, and checks the first is untouched and the rest were
// closed or marked. Returns the child's exit code: 0 when all held.
int RunInChild(Sweep what, int (*fn)(int)) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int fds[4];
    for (int i = 0; i < 3; ++i) fds[i] = ::open("/dev/null", O_RDONLY);
    fds[3] = ::dup2(fds[2], 900);
    for (int fd : fds) {
      if (fd < 0 || (::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0) ::_exit(10);
    }
    if (fn(fds[1]) != 0) ::_exit(11);
    if (::fcntl(fds[0], F_GETFD) != 0) ::_exit(12);  // below `lowest`: untouched
    if (::fcntl(STDERR_FILENO, F_GETFD) < 0) ::_exit(13);
    for (int i = 1; i < 4; ++i) {
      int flags = ::fcntl(fds[i], F_GETFD);
      if (what == Sweep::kClose && !(flags < 0 && errno == EBADF)) ::_exit(20 + i);
      if (what == Sweep::kMarkCloseOnExec && !(flags >= 0 && (flags & FD_CLOEXEC) != 0)) ::_exit(30 + i);
    }
    ::_exit(0);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

TEST(DescriptorsTest, CloseRangeClosesEverythingFromLowest) {
  EXPECT_EQ(RunInChild(Sweep::kClose, CloseDescriptorsFrom), 0);
}

TEST(DescriptorsTest, CloseRangeMarksEverythingFromLowestCloseOnExec) {
  EXPECT_EQ(RunInChild(Sweep::kMarkCloseOnExec, MarkCloseOnExecFrom), 0);
}

TEST(DescriptorsTest, WithoutCloseRangeTheListedDescriptorsAreClosed) {
  EXPECT_EQ(RunInChild(Sweep::kClose, CloseListedDescriptorsFrom), 0);
}

TEST(DescriptorsTest, WithoutCloseRangeTheListedDescriptorsAreMarkedCloseOnExec) {
  EXPECT_EQ(RunInChild(Sweep::kMarkCloseOnExec, MarkListedCloseOnExecFrom), 0);
}

}  // namespace
}  // namespace hostd::manager
