// ProcIdentity: what tells one process from another that later gets the same pid,
// so that a hostd re-adopting procs after a restart adopts no stranger.
//
// A pid alone is reused once its process is reaped; its start time (field 22 of
// /proc/<pid>/stat, in clock ticks since boot) is fixed for the life of the process
// and differs for any later process with the pid (two processes cannot start in
// the same tick with the same pid). The cgroup is a further check where procs
// have one. Both are read with plain system calls (base/small_file.h) and fail
// with NotFound when the process is gone.
#ifndef HOSTD_MANAGER_PROC_IDENTITY_H_
#define HOSTD_MANAGER_PROC_IDENTITY_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace hostd::manager {

// The start time of `pid`, in clock ticks since boot. NotFound if it is gone.
absl::StatusOr<uint64_t> ProcStartTime(pid_t pid);

// The cgroup v2 path of `pid` relative to the cgroup2 mount ("/a/b"), from the
// "0::" line of /proc/<pid>/cgroup; empty if it has none. NotFound if it is gone.
absl::StatusOr<std::string> ProcCgroupPath(pid_t pid);

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_PROC_IDENTITY_H_
