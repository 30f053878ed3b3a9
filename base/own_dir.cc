#include "base/own_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/errno_status.h"
#include "base/unique_fd.h"

namespace hostd::base {

absl::Status MakeOwnDir(const std::string& path, mode_t mode) {
  if (path.empty()) return absl::InvalidArgumentError("directory path is empty");
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);  // 0777 & ~umask, as any tool would
    if (ec)
      return absl::PermissionDeniedError(absl::StrCat("cannot create directory ", parent.string(), ": ", ec.message()));
  }
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return ErrnoError(absl::StatusCode::kPermissionDenied, errno, absl::StrCat("cannot create directory ", path));
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ELOOP || errno == ENOTDIR) {
      return absl::FailedPreconditionError(
          absl::StrCat("refusing ", path, ": it is a symlink or not a directory; hostd uses only directories it owns"));
    }
    return ErrnoError(absl::StatusCode::kPermissionDenied, errno, absl::StrCat("cannot open directory ", path));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, absl::StrCat("cannot stat directory ", path));
  if (st.st_uid != ::geteuid()) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "refusing directory %s: it is owned by uid %d, not by hostd's uid %d; remove it or choose another", path,
        st.st_uid, ::geteuid()));
  }
  if ((st.st_mode & 07777) != mode && ::fchmod(fd.get(), mode) != 0) {
    return ErrnoError(errno, absl::StrCat("cannot set the mode of ", path));
  }
  return absl::OkStatus();
}

}  // namespace hostd::base
