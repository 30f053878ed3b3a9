// CgroupTree: a cgroup v2 per proc, under a parent cgroup this process owns.
//
// Create finds the cgroup2 mount and this process's own cgroup and makes
// `<own>/hostd-<pid>-<n>` beneath it (n tells managers of one process apart); each proc gets
// `<parent>/<name>-<serial>`, which the child joins before exec (launcher.h), so every descendant stays inside, even
// one that calls setsid(). Kill uses cgroup.kill (SIGKILL to all of them at once). Create fails with Unavailable,
// saying why, where the host does not allow it (no cgroup2 mount, read-only, no permission); the manager then falls
// back to process groups. Thread-safe.
#ifndef HOSTD_MANAGER_CGROUP_H_
#define HOSTD_MANAGER_CGROUP_H_

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hostd::manager {

class CgroupTree {
 public:
  static absl::StatusOr<std::unique_ptr<CgroupTree>> Create();
  ~CgroupTree();  // removes the parent (its children must be gone)

  const std::string& parent() const { return parent_; }
  // Where the cgroup2 hierarchy is mounted ("" if it is not).
  static const std::string& MountPoint();

  // A new, empty cgroup for a proc; returns its directory.
  absl::StatusOr<std::string> CreateChild(const std::string& name);
  // Processes in a cgroup now.
  static std::vector<pid_t> Pids(const std::string& dir);
  // SIGKILL to every process in it.
  static void KillAll(const std::string& dir);
  // Waits (bounded) until it is empty, then removes it.
  static absl::Status Remove(const std::string& dir);

 private:
  explicit CgroupTree(std::string parent) : parent_(std::move(parent)) {}
  const std::string parent_;
  std::atomic<uint64_t> serial_{0};
};

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_CGROUP_H_
