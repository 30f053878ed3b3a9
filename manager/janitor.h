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
//
// With a reattach lock (JanitorReattach, hostd --keep-procs) the procs are meant to
// outlive this process: on EOF the janitor does not kill at once. It waits up to
// `timeout` for a new owner: a process holding an exclusive flock(2) on `lock_path`
// whose file holds a token other than its own owner's (a new hostd on the same
// state directory, or this one re-executed). When one appears, the janitor exits
// without killing anything (the new owner re-adopts the procs and has a janitor of
// its own); when none does, it kills everything as above. The token tells the new
// owner from the old one still releasing its lock as it dies.
#ifndef HOSTD_MANAGER_JANITOR_H_
#define HOSTD_MANAGER_JANITOR_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"

namespace hostd::manager {

struct JanitorReattach {
  std::string lock_path;  // empty: kill as soon as the owner is gone
  std::string token;      // what the owner wrote into the lock file
  absl::Duration timeout = absl::Seconds(60);
};

class Janitor {
 public:
  // Process groups it can hold at once; more are not tracked (and logged).
  static constexpr size_t kCapacity = 1 << 16;

  // `cgroup_parent` may be empty (no cgroups: process groups only); `mark_token`
  // is the manager's ProcMark token (empty: no marked processes to kill).
  static absl::StatusOr<std::unique_ptr<Janitor>> Start(const std::string& cgroup_parent, const std::string& mark_token,
                                                        const JanitorReattach& reattach = {});
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
