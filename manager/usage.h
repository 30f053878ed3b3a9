// What a proc's processes use now, from /proc (Linux's proc(5)): CPU time and
// resident memory summed over its processes (its cgroup's, or its process group's
// without cgroups). A snapshot; processes that come or go meanwhile may be missed.
#ifndef HOSTD_MANAGER_USAGE_H_
#define HOSTD_MANAGER_USAGE_H_

#include <sys/types.h>

#include <cstdint>
#include <vector>

namespace hostd::manager {

struct ProcUsage {
  bool known = false;      // false for in-process procs and ended ones
  int processes = 0;       // how many were counted
  double cpu_seconds = 0;  // user + system, since each process started
  uint64_t rss_bytes = 0;  // resident set, summed (shared pages count in each)
};

// The processes whose process group is `pgid`, from a scan of /proc.
std::vector<pid_t> ProcessGroupMembers(pid_t pgid);

// The sum over `pids`; one that is gone by the time it is read is not counted.
// known is set when at least one was read.
ProcUsage ReadUsage(const std::vector<pid_t>& pids);

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_USAGE_H_
