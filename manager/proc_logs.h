// ProcLogs: the files a proc's stdout and stderr go to, kept bounded.
//
//   ProcLogs logs({.dir = state_dir + "/logs", .max_bytes = 16 << 20, .rotations = 2,
//                  .keep_ended = 256, .keep_age = absl::Hours(168)});
//   auto fds = logs.Open("worker-3", /*append=*/false);   // <dir>/worker-3.stdout, .stderr
//   ... every so often, with the names of the procs that run:
//   logs.RotateOversized(live, on_rotated);
//   logs.Prune(live, absl::Now());
//
// The child writes its log directly (hostd is not in the path of its output), so a
// log is rotated by copy-then-truncate: <log>.1 .. .<rotations> shift up (the
// oldest goes), the log is copied to <log>.1 and truncated; the child's descriptor
// is O_APPEND, so it goes on writing at the new end. A log therefore passes
// max_bytes by what the proc writes between two checks, and a write that lands
// during the copy of a rotation can be lost.
// Ended procs' logs (every file of a name that is not live) are removed past the
// keep_ended newest names or keep_age after their last write.
//
// Files are created 0640 with O_NOFOLLOW and O_EXCL where new, in a directory the
// caller made hostd's own (base::MakeOwnDir): a symlink planted at a log's path is
// refused, never written through. Not thread-safe: one thread (the manager's loop)
// calls it.
#ifndef HOSTD_MANAGER_PROC_LOGS_H_
#define HOSTD_MANAGER_PROC_LOGS_H_

#include <cstddef>
#include <functional>
#include <limits>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"

namespace hostd::manager {

struct ProcLogsOptions {
  std::string dir;
  size_t max_bytes = 0;  // per log; 0: never rotated
  int rotations = 2;     // rotated files kept per log
  size_t keep_ended = std::numeric_limits<size_t>::max();
  absl::Duration keep_age = absl::InfiniteDuration();
};

class ProcLogs {
 public:
  explicit ProcLogs(ProcLogsOptions options) : opts_(std::move(options)) {}

  const ProcLogsOptions& options() const { return opts_; }
  // <dir>/<name>.stdout or .stderr; rotation r (1 is the newest) adds ".<r>".
  std::string Path(const std::string& name, bool stderr_log, int rotation = 0) const;

  // Both logs of `name`, write-only and O_APPEND: kept (append) or started afresh,
  // their rotations removed. FailedPrecondition naming a symlink at either path.
  absl::StatusOr<std::pair<base::UniqueFd, base::UniqueFd>> Open(const std::string& name, bool append) const;

  // Rotates each log of the `live` names that is past max_bytes; `rotated(name,
  // stderr_log)` runs after each.
  void RotateOversized(const absl::flat_hash_set<std::string>& live,
                       const std::function<void(const std::string&, bool)>& rotated) const;

  // Removes the logs of names not in `live` past keep_ended (oldest first) or
  // last written before now - keep_age. Returns how many files went.
  size_t Prune(const absl::flat_hash_set<std::string>& live, absl::Time now) const;

 private:
  absl::Status Rotate(const std::string& path) const;

  const ProcLogsOptions opts_;
};

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_PROC_LOGS_H_
