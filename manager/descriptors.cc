#include "manager/descriptors.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace hostd::manager {
namespace {

// Every function here may run in a child that shares the parent's memory (vfork
// style): no sanitizer instrumentation, no allocation, no libc state.
#define HOSTD_CHILD_SAFE __attribute__((no_sanitize("address", "undefined")))

// Closes (or marks close-on-exec) the descriptors /proc/self/fd lists from `lowest`.
HOSTD_CHILD_SAFE int SweepListed(int lowest, bool close_them) {
  int dir = ::open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return errno;
  alignas(8) char buf[2048];
  long n;
  while ((n = ::syscall(SYS_getdents64, dir, buf, sizeof(buf))) > 0) {
    for (long off = 0; off < n;) {
      const auto* d = reinterpret_cast<const struct dirent64*>(buf + off);
      off += d->d_reclen;
      int fd = 0;
      bool number = d->d_name[0] != '\0';
      for (const char* c = d->d_name; number && *c != '\0'; ++c) {
        number = *c >= '0' && *c <= '9';
        fd = fd * 10 + (*c - '0');
      }
      if (!number || fd < lowest || fd == dir) continue;
      if (close_them) {
        ::close(fd);
      } else {
        int flags = ::fcntl(fd, F_GETFD);
        if (flags >= 0 && (flags & FD_CLOEXEC) == 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
      }
    }
  }
  int err = n < 0 ? errno : 0;
  ::close(dir);
  return err;
}

}  // namespace

HOSTD_CHILD_SAFE int CloseListedDescriptorsFrom(int lowest) { return SweepListed(lowest, true); }
HOSTD_CHILD_SAFE int MarkListedCloseOnExecFrom(int lowest) { return SweepListed(lowest, false); }

HOSTD_CHILD_SAFE int CloseDescriptorsFrom(int lowest) {
  if (::syscall(SYS_close_range, lowest, ~0U, 0) == 0) return 0;
  return SweepListed(lowest, true);  // ENOSYS: before Linux 5.9
}

HOSTD_CHILD_SAFE int MarkCloseOnExecFrom(int lowest) {
  if (::syscall(SYS_close_range, lowest, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return 0;
  return SweepListed(lowest, false);  // EINVAL before Linux 5.11, ENOSYS before 5.9
}

}  // namespace hostd::manager
