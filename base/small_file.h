// Reading and writing small files (/proc, /sys/fs/cgroup) with plain system calls.
//
// std::ifstream is not usable there: libstdc++ throws from its read when read()
// fails, and reading /proc/<pid>/... of a process that is exiting fails with ESRCH,
// which would take the daemon down. These never throw; errors are Status values
// naming the path.
#ifndef HOSTD_BASE_SMALL_FILE_H_
#define HOSTD_BASE_SMALL_FILE_H_

#include <string>

#include "absl/status/statusor.h"

namespace hostd::base {

// The whole file, read until EOF (at most `limit` bytes).
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t limit = 1 << 20);
// Writes `value` with one write(2) (what cgroup and /proc files expect).
absl::Status WriteSmallFile(const std::string& path, absl::string_view value);

}  // namespace hostd::base

#endif  // HOSTD_BASE_SMALL_FILE_H_
