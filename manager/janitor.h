// Janitor: kills what a manager's procs leave behind when the process that owns the
// manager dies without cleaning up, even by SIGKILL.
//
// Procs die with their manager by PR_SET_PDEATHSIG, but their descendants do not:
// nothing inherits that signal, and with the daemon gone nobody writes cgroup.kill.
// So Start forks (once, while the daemon is small, before it launches anything) a
// janitor that runs only async-signal-safe code: it closes every descriptor but one
// end of a socketpair, ignores terminal signals, leaves the daemon's process group,
// and blocks reading process-group ids the manager reports as procs start and end.
// When the other end closes (the daemon exited, however it exited) it writes
// cgroup.kill of the manager's parent cgroup (every descendant, setsid() escapees
// included), SIGKILLs every process group still recorded, SIGKILLs every process
// carrying the manager's mark (proc_mark.h: the setsid() escapees when there are
// no cgroups), removes the emptied cgroups, and exits. A manager destroyed normally has already ended its procs; it
// closes the socket and reaps the janitor.
#ifndef HOSTD_MANAGER_JANITOR_H_
#define HOSTD_MANAGER_JANITOR_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/unique_fd.h"

namespace hostd::manager {

class Janitor {
 public:
  // Process groups it can hold at once; more are not tracked (and logged).
  static constexpr size_t kCapacity = 1 << 16;

  // `cgroup_parent` may be empty (no cgroups: process groups only); `mark_token`
  // is the manager's ProcMark token (empty: no marked processes to kill).
  static absl::StatusOr<std::unique_ptr<Janitor>> Start(const std::string& cgroup_parent,
                                                        const std::string& mark_token);
  ~Janitor();

  void Track(pid_t pgid);
  void Untrack(pid_t pgid);
  pid_t pid() const { return pid_; }

 private:
  Janitor(pid_t pid, base::UniqueFd sock) : pid_(pid), sock_(std::move(sock)) {}
  void Send(uint32_t op, pid_t pgid);

  const pid_t pid_;
  absl::Mutex mu_;
  base::UniqueFd sock_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_JANITOR_H_
