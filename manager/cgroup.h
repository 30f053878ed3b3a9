// CgroupTree: a cgroup v2 per proc, under a parent cgroup this process owns.
//
// Create finds the cgroup2 mount and this process's own cgroup and makes
// `<own>/hostd-<pid>-<n>` beneath it (n tells managers of one process apart); each proc gets
// `<parent>/<name>-<serial>`, which the child joins before exec (launcher.h), so every descendant stays inside, even
// one that calls setsid(). Kill uses cgroup.kill (SIGKILL to all of them at once). Create fails with Unavailable,
// saying why, where the host does not allow it (no cgroup2 mount, read-only, no permission); the manager then falls
// back to process groups. Thread-safe.
//
// Limits (CgroupLimits) are written into a proc's cgroup before the proc joins it, so they hold from its first
// instruction. Create enables the memory, cpu, pids and cpuset controllers for the procs' cgroups where its own
// cgroup offers them (cgroup.controllers); a limit whose controller is not offered is refused (ApplyLimits).
#ifndef HOSTD_MANAGER_CGROUP_H_
#define HOSTD_MANAGER_CGROUP_H_

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hostd::manager {

// Per-proc cgroup v2 limits; a zero or empty field sets nothing.
struct CgroupLimits {
  int64_t memory_max = 0;   // memory.max, bytes; an OOM kill ends the whole cgroup (memory.oom.group)
  double cpus = 0;          // cpu.max as CPUs: 1.5 is "150000 100000"
  int64_t pids_max = 0;     // pids.max: forks past it fail with EAGAIN
  std::string cpuset_cpus;  // cpuset.cpus, e.g. "0-3,6"

  bool empty() const { return memory_max == 0 && cpus == 0 && pids_max == 0 && cpuset_cpus.empty(); }
  // Fields left unset here taken from `defaults`.
  CgroupLimits Or(const CgroupLimits& defaults) const;
  // "memory.max 33554432, pids.max 10": the limits asked for, named by their files.
  std::string ToString() const;
  friend bool operator==(const CgroupLimits&, const CgroupLimits&) = default;
};

// InvalidArgument naming the field (`prefix` + its name) for a negative or out-of-range value, or a cpuset that is
// not a list of CPU numbers and ranges.
absl::Status ValidateLimits(const CgroupLimits& limits, absl::string_view prefix);

class CgroupTree {
 public:
  static absl::StatusOr<std::unique_ptr<CgroupTree>> Create();
  ~CgroupTree();  // removes the parent (its children must be gone)

  const std::string& parent() const { return parent_; }
  // Where the cgroup2 hierarchy is mounted ("" if it is not).
  static const std::string& MountPoint();

  // A new, empty cgroup for a proc; returns its directory.
  absl::StatusOr<std::string> CreateChild(const std::string& name);
  // Writes `limits` into a proc's cgroup `dir` (before anything joins it). FailedPrecondition naming the limit
  // when its controller is not enabled for the procs' cgroups, saying which are; the file's errno otherwise.
  absl::Status ApplyLimits(const std::string& dir, const CgroupLimits& limits) const;
  // The controllers enabled for the procs' cgroups ("cpu memory pids").
  const std::string& controllers() const { return controllers_; }
  // The oom_kill count of a cgroup's memory.events (0 if it has none).
  static int64_t OomKills(const std::string& dir);
  // Processes in a cgroup now.
  static std::vector<pid_t> Pids(const std::string& dir);
  // SIGKILL to every process in it.
  static void KillAll(const std::string& dir);
  // Waits (bounded) until it is empty, then removes it.
  static absl::Status Remove(const std::string& dir);

 private:
  CgroupTree(std::string parent, std::string controllers)
      : parent_(std::move(parent)), controllers_(std::move(controllers)) {}
  const std::string parent_;
  const std::string controllers_;
  std::atomic<uint64_t> serial_{0};
};

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_CGROUP_H_
