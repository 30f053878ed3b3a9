#include "base/small_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/unique_fd.h"

namespace hostd::base {

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t limit) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  // ENOENT and ESRCH (a /proc entry of a process that is gone) come back as NotFound.
  if (!fd.valid()) return ErrnoError(errno, absl::StrCat("open ", path));
  std::string out;
  char buf[4096];
  while (out.size() < limit) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, absl::StrCat("read ", path));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

absl::Status WriteSmallFile(const std::string& path, absl::string_view value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError(errno, absl::StrCat("open ", path));
  ssize_t n;
  do {
    n = ::write(fd.get(), value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoError(errno, absl::StrCat("write ", path));
  if (n != static_cast<ssize_t>(value.size())) {
    return absl::InternalError(absl::StrCat("write ", path, ": wrote ", n, " of ", value.size(), " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace hostd::base
