// ProcessProcManager: procs as OS processes, production grade.
//
//   auto mgr = ProcessProcManager::Create({.state_dir = "/var/lib/hostd"});
//   auto h = (*mgr)->Spawn(id, host_backend, {.program = "/usr/bin/worker"});
//   (*h)->Terminate(absl::Seconds(5), "shutdown");
//
// Each proc is launched by launcher.h (vfork-class, never fork() of the daemon),
// in its own process group and, where the host allows, its own cgroup v2 (see
// cgroups_enabled()); it gets SIGKILL if the manager's loop thread dies. This
// process becomes a child subreaper, so descendants that lose their parent come
// back to it rather than escaping to init. Each proc's handle (process_handle.h)
// watches its leader's pidfd on the loop, signals its process group and cgroup,
// and, when the leader exits, kills and reaps the rest of the proc before the
// terminal status is published, so Wait() returning means nothing of the proc is
// left. Without cgroups a descendant that called setsid() is outside every group
// hostd knows; it is found by the mark every proc carries in its environment
// (proc_mark.h) and killed in the orphan reaper's next sweep (orphan_reaper.h).
// If this process dies without destroying the manager (even by SIGKILL), the procs
// get PR_SET_PDEATHSIG and the janitor kills everything they left (janitor.h).
// As a subreaper this process inherits the procs' orphans (a daemonising double
// fork, say); it reaps the zombies among its children that belong to a proc (by
// process group, or by cgroup), by pid, and leaves every other child alone
// (orphan_reaper.h). It installs no SIGCHLD handler (an embedder's stays, and no
// other thread's poll or epoll_wait is interrupted): it sweeps on its loop every
// second while it has procs, and right after each proc's exit.
//
// stdout and stderr go to <state_dir>/logs/<name>.stdout|.stderr (started afresh at
// each spawn unless SpawnSpec::append_logs), rotated and pruned by ProcLogs
// (manager/proc_logs.h); the last `stderr_tail_bytes` of what this spawn wrote to
// stderr (since the last rotation) are kept in the terminal status.
// The environment is explicit: SpawnSpec::env, the inherit_env names copied from
// this process, and the HOSTD_* bootstrap variables (proc/bootstrap.h).
//
// Watchers see Ready and the end on the manager's loop thread. Kill, Wait and
// Terminate called there (from a watcher) observe the exit themselves, since the
// monitor cannot run meanwhile; they hold the loop while they wait, so a Terminate
// there cannot send its stop request: it goes on to SIGTERM after grace/2.
//
// Procs that outlive this process (keep_procs, hostd --keep-procs): procs are
// launched without PR_SET_PDEATHSIG (HOSTD_OUTLIVE_PARENT=1 tells the proc runtime
// not to arm it either); Create takes an exclusive flock on <state_dir>/hostd.lock
// (FailedPrecondition if another live manager holds it) and writes a fresh token
// into it; the janitor, when this process is gone, waits `reattach_timeout` for a
// new holder of that lock before it kills anything (janitor.h). Adopt takes such a
// proc back under a new manager (a new hostd on the same state directory). The
// ProcMark token is then the state directory's, not the manager's: Create reads it
// from <state_dir>/proc-mark (32 hex digits, mode 0600, written there under the
// lock by the first manager), so a manager finds and kills the escaped descendants
// of procs it adopted as it does its own; an adopted proc keeps the mark serial it
// was launched with, and the manager's serials go on past every recorded one
// (ReserveMarkSerials), so no two procs on the directory share a mark. The
// destructor still kills every proc: a process that means to leave its procs
// running exits without destroying its manager.
//
// Destroying the manager kills every proc it still has and waits for each (each
// within ProcHandleBase::kKillWait), even if its loop was busy meanwhile. Handles
// may outlive it: each is left terminal (Failed if its exit could not be observed)
// and calls on it return that status without touching the manager. Thread-safe.
#ifndef HOSTD_MANAGER_PROCESS_PROC_MANAGER_H_
#define HOSTD_MANAGER_PROCESS_PROC_MANAGER_H_

#include <atomic>
#include <limits>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "boost/asio/steady_timer.hpp"
#include "base/unique_fd.h"
#include "channel/event_loop.h"
#include "manager/cgroup.h"
#include "manager/janitor.h"
#include "manager/launcher.h"
#include "manager/log_space.h"
#include "manager/orphan_reaper.h"
#include "manager/proc_logs.h"
#include "manager/proc_manager.h"
#include "manager/proc_registry.h"

namespace hostd::manager {

class ProcessHandle;

struct ProcessProcManagerOptions {
  std::string state_dir = {};  // required; logs go under <state_dir>/logs
  bool use_cgroups = true;     // false: process groups only
  // Fork a janitor (manager/janitor.h) that kills the procs' descendants if this
  // process dies without cleaning up, e.g. by SIGKILL.
  bool janitor = true;
  size_t stderr_tail_bytes = 4096;
  // Proc logs kept bounded (manager/proc_logs.h): rotation past log_max_bytes
  // (0: none), checked every log_check_interval; ended procs' logs removed past
  // log_keep_ended names or log_keep_age.
  size_t log_max_bytes = 0;
  int log_rotations = 2;
  size_t log_keep_ended = std::numeric_limits<size_t>::max();
  absl::Duration log_keep_age = absl::InfiniteDuration();
  absl::Duration log_check_interval = absl::Milliseconds(500);
  // Procs outlive this process; see the class comment.
  bool keep_procs = false;
  absl::Duration reattach_timeout = absl::Seconds(60);
  // Limits for every proc's fields its spec leaves unset. Create fails with
  // FailedPrecondition if there are any and no cgroup per proc can be made.
  CgroupLimits default_limits = {};
};

// A proc a previous manager launched, as recorded then (the durable proc table).
struct AdoptRequest {
  pid_t pid = 0;
  uint64_t start_time = 0;                   // ProcStartTime when it was launched
  std::string cgroup_dir;                    // its cgroup directory, empty if it had none
  std::optional<channel::ChannelAddr> addr;  // what it reported at readiness
  std::string command;
  uint64_t mark_serial = 0;  // the serial of its ProcMark (0: unknown, its escapees are not tracked)
  // Its liveness check, re-armed at once (its initial delay from now), and what an
  // exec probe runs with: env, inherit_env, cwd, user, authorize (the rest unused).
  SpawnSpec spec;
};

class ProcessProcManager final : public ProcManager, public BulkTerminate {
 public:
  static absl::StatusOr<std::unique_ptr<ProcessProcManager>> Create(ProcessProcManagerOptions options);
  ~ProcessProcManager() override;

  absl::StatusOr<std::shared_ptr<ProcHandle>> Spawn(const proc::ProcId& id, const channel::ChannelAddr& forwarder,
                                                    const SpawnSpec& spec) override;
  std::vector<std::shared_ptr<ProcHandle>> Procs() const override;
  // Takes over a running proc a previous manager launched (needs keep_procs): it
  // must be the same process (pid, start time and, if recorded, cgroup), else
  // NotFound (it has ended: certain), FailedPrecondition (its pid now belongs to
  // a stranger, so it has ended too), Aborted (the same process, moved out of its
  // cgroup) or Unavailable (it could not be checked; it may still run).
  // The handle starts Ready (with `addr`); its exit is watched by pidfd. A proc
  // that is not this process's child (adopted after a restart, not a re-exec)
  // ends with Failed saying its exit status is unknown: only a parent can learn it.
  // AlreadyExists if the name is taken.
  // An exec liveness probe that cannot be resolved or is not authorised is not
  // run: the proc is adopted without its check (a warning says so).
  absl::StatusOr<std::shared_ptr<ProcHandle>> Adopt(const proc::ProcId& id, const AdoptRequest& request);
  // Launches from now on take mark serials above `last` (the highest a previous
  // manager on the state directory recorded), so none repeats an adopted proc's.
  void ReserveMarkSerials(uint64_t last);
  // Before adopting a previous manager's procs: as ReserveMarkSerials, above
  // `last` and above every serial a process carries now under this manager's mark
  // (a launch the previous manager began but never recorded). Returns the first
  // serial of this manager's own launches.
  uint64_t ReserveMarkSerialsInUse(uint64_t last);
  // After adopting: SIGKILLs every process carrying this manager's mark with a
  // serial below `first_own` that none of its procs has, nor `spared` (procs the
  // caller leaves alone): a launch the previous manager never recorded, or what a
  // proc that ended while no manager ran left behind. Nothing of this manager's
  // own launches is touched. Returns how many it killed.
  int KillUnadoptedMarked(uint64_t first_own, const std::vector<uint64_t>& spared);
  TerminateSummary TerminateAll(absl::Duration grace, int max_in_flight, absl::string_view reason) override;
  TerminateSummary KillAll(absl::Time deadline) override;

  bool cgroups_enabled() const { return cgroups_ != nullptr; }
  // Why cgroups are not used (empty when they are).
  const std::string& cgroup_fallback_reason() const { return cgroup_fallback_reason_; }
  // rotation 1 is the newest rotated file.
  std::string LogPath(const std::string& name, bool stderr_log, int rotation = 0) const;
  // The janitor process (0 if none): a child of this process for the manager's life.
  pid_t janitor_pid() const { return janitor_ ? janitor_->pid() : 0; }
  bool keep_procs() const { return options_.keep_procs; }

 private:
  friend class ProcessHandle;
  explicit ProcessProcManager(ProcessProcManagerOptions options);
  // What each exec liveness probe of a proc with `spec` launches (empty for other
  // checks); InvalidArgument for a spec out of bounds (ValidateLiveness) or a
  // heartbeat without the proc runtime; the probe's program must resolve and pass
  // spec.authorize, like the proc's own.
  absl::StatusOr<LaunchRequest> ProbeRequest(const SpawnSpec& spec) const;

  const ProcessProcManagerOptions options_;
  std::unique_ptr<channel::EventLoop> loop_;
  std::unique_ptr<CgroupTree> cgroups_;
  std::unique_ptr<Janitor> janitor_;
  base::UniqueFd state_lock_;  // keep_procs: <state_dir>/hostd.lock, flock'ed for the manager's life
  std::string cgroup_fallback_reason_;
  // Every proc's environment carries MarkValue(mark_token_, serial) (proc_mark.h).
  // Set by Create before anything uses it: fresh, or the state directory's.
  std::string mark_token_;
  std::atomic<uint64_t> next_mark_serial_{1};
  ProcRegistry procs_;
  // Loop thread only (created and destroyed there): the procs' orphans' reaper.
  std::unique_ptr<OrphanReaper> reaper_;
  // Loop thread only, like reaper_: whether the logs' file system is full.
  std::unique_ptr<LogSpace> log_space_;
  std::thread::id loop_thread_;  // set once by Create
  ProcLogs logs_;
  // Loop thread only: the log check, and what it last pruned after.
  void CheckLogs();
  std::unique_ptr<boost::asio::steady_timer> log_timer_;
  size_t log_checks_ = 0;
  uint64_t ended_at_last_prune_ = 0;
  std::atomic<uint64_t> procs_ended_{0};  // any thread: each proc's end adds one
  mutable absl::Mutex mu_;
  // Every handle handed out, live or not: their Asio objects belong to loop_ and are
  // released before it goes, even if a caller still holds the handle.
  std::vector<std::weak_ptr<ProcessHandle>> handed_out_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_PROCESS_PROC_MANAGER_H_
