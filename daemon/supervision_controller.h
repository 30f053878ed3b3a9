// SupervisionController: carries out the Supervisor's decisions
// (manager/supervisor.h) for a ProcTable. When a supervised proc ends on its own,
// it asks the Supervisor for a plan and applies it: members to stop, to start
// again after a backoff, to end for good, groups that gave up. It also runs
// requested restarts (with the proc's state handed over to its next incarnation),
// keeps each proc's last saved state within a host-wide budget, and sends
// broadcast signals.
//
// Threading: decisions are made under the table's lock (ProcTable::mu()), where
// every end is applied, on the Host's loop thread. Acting blocks (stopping procs,
// waiting out a backoff, spawning), so a job does it on one of `threads` worker
// threads and reports back through the table. A restarted proc keeps its name,
// ProcId and route (messages sent meanwhile wait there, ahead of nothing lost); its
// record's `gen` and `incarnation` change with each start.
//
// Lifetime: owned by the Host beside the table; Shutdown (or the destructor)
// stops the jobs, after which no proc is started again.
#ifndef HOSTD_DAEMON_SUPERVISION_CONTROLLER_H_
#define HOSTD_DAEMON_SUPERVISION_CONTROLLER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "channel/event_loop.h"
#include "channel/message.h"
#include "daemon/host_types.h"
#include "daemon/proc_table.h"
#include "daemon/router.h"

namespace hostd::daemon {

class WorkerPool;

class SupervisionController {
 public:
  struct Options {
    absl::Duration stop_grace = absl::Seconds(5);  // for members stopped by their group
    int threads = 4;                               // restarts run at once; more wait their turn
    size_t saved_state_bytes = 64u << 20;          // saved state kept for all procs together
  };
  SupervisionController(ProcTable& table, Router& router, channel::EventLoop& loop, Options options);
  ~SupervisionController();
  SupervisionController(const SupervisionController&) = delete;
  SupervisionController& operator=(const SupervisionController&) = delete;

  // Registers the state mailbox with the router (loop thread).
  void Attach();
  // No restart from here on; returns once running jobs have finished.
  void Shutdown();

  absl::Status CreateGroup(const std::string& name, const GroupSpec& spec);
  absl::Status RemoveGroup(const std::string& name);
  std::vector<TreeNode> Tree() const;
  absl::StatusOr<ProcInfo> Restart(absl::string_view name, const RestartRequest& request);
  void Broadcast(const std::string& name, std::string data, const std::string& group,
                 absl::AnyInvocable<void(absl::StatusOr<BroadcastResult>)> done);

 private:
  friend class ProcTable;
  struct Job;
  using Record = ProcRecord;

  // ---- Called by the table, under its lock ----
  // The live incarnation of `r` ended on its own: end it, or restart it.
  void OnEnd(Record& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_);
  // `r` was restarting under a previous hostd: its next incarnation starts now.
  void ResumeRestart(Record& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_);
  // `r` (restored restarting, its end pending) ended while no hostd was running:
  // its end is applied now as a live proc's is. Returns the procs its plan
  // restarts or ends (none: nothing was done, the caller ends it).
  std::vector<std::string> OnMissedEnd(Record& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_);
  // What an end of `r` on its own calls for: nothing (it ends) when it has no
  // supervision or restarts are paused or the table stopped, else its supervisor's plan.
  Supervisor::Plan PlanFor(const Record& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_);
  // Cancels the jobs of earlier epochs and waits (up to `wait`) for running ones.
  void PauseRestarts(absl::Duration wait) ABSL_LOCKS_EXCLUDED(table_.mu_);
  void ResumeRestarts() ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_);
  bool idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_) { return restarts_in_flight_ == 0; }

  void ApplyPlan(const std::string& failed, const Supervisor::Plan& plan, bool start_failed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_);
  void MarkRestarting(Record& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_);
  void Submit(Job job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_);
  bool Cancelled(uint64_t epoch) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_);
  void RunJob(const Job& job);
  void StartIncarnation(const std::string& name, uint64_t epoch);
  void OnStartFailed(Record& r, const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_);
  // The state mailbox (loop thread): a proc saved its state.
  void OnSavedState(channel::Message msg);

  ProcTable& table_;
  Router& router_;
  channel::EventLoop& loop_;
  const Options opts_;

  uint64_t restart_epoch_ ABSL_GUARDED_BY(table_.mu_) = 1;  // PauseRestarts cancels earlier epochs' jobs
  bool restarts_paused_ ABSL_GUARDED_BY(table_.mu_) = false;
  bool shut_down_ ABSL_GUARDED_BY(table_.mu_) = false;
  int restarts_in_flight_ ABSL_GUARDED_BY(table_.mu_) = 0;
  std::unique_ptr<WorkerPool> jobs_;
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_SUPERVISION_CONTROLLER_H_
