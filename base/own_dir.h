// MakeOwnDir: a directory hostd keeps its files in, made or taken safely.
//
//   HOSTD_RETURN_IF_ERROR(base::MakeOwnDir(state_dir, 0700));
//
// Missing parents are created 0755; `path` itself is created with exactly `mode`,
// whatever the umask. An existing `path` is taken only if it is a real directory
// (not a symlink: it is opened with O_NOFOLLOW) owned by this process's effective
// user; its mode is then set to `mode`. A directory owned by another user is
// refused (PermissionDenied naming the path and both uids), so a local user who
// planted it cannot read or replace what hostd puts there. Thread-safe.
#ifndef HOSTD_BASE_OWN_DIR_H_
#define HOSTD_BASE_OWN_DIR_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"

namespace hostd::base {

absl::Status MakeOwnDir(const std::string& path, mode_t mode);

}  // namespace hostd::base

#endif  // HOSTD_BASE_OWN_DIR_H_
