// ProcHandleBase: the parts of ProcHandle every manager shares: status through a
// ProcStatusCell, Ready and Wait derived from it, and one termination sequence
// shared by concurrent callers:
//   1. RequestStop (the agent's stop message); if it was sent, wait up to grace/2;
//   2. SignalTerm; wait until grace has passed;
//   3. SignalKill; wait up to kKillWait.
// TerminateEach runs that sequence for many procs at once on the calling thread:
// each phase's signals go out to every proc due for it before any wait, and the
// waits are one wait for the first end or the next due phase, not one per proc.
// A manager implements the three signals; its exit monitor is what moves the status
// to a terminal state (a status is never invented here).
#ifndef HOSTD_MANAGER_PROC_HANDLE_BASE_H_
#define HOSTD_MANAGER_PROC_HANDLE_BASE_H_

#include <atomic>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "channel/event_loop.h"
#include "channel/sender.h"
#include "manager/proc_manager.h"

namespace hostd::manager {

class ProcHandleBase : public ProcHandle {
 public:
  explicit ProcHandleBase(proc::ProcId id) : id_(std::move(id)) {}

  const proc::ProcId& proc_id() const override { return id_; }
  std::optional<channel::ChannelAddr> addr() const override { return cell_.Get().addr; }
  proc::ProcStatus status() const override { return cell_.Get(); }
  uint64_t status_seq() const override { return cell_.Applied(); }
  using ProcHandle::Watch;
  uint64_t Watch(proc::ProcStatusCell::Watcher fn, proc::WatchFrom from) override {
    return cell_.Watch(std::move(fn), from);
  }
  void Unwatch(uint64_t id) override { cell_.Unwatch(id); }

  absl::Status Ready(absl::Time deadline) override;
  absl::StatusOr<proc::ProcStatus> Wait(absl::Time deadline) override;
  absl::StatusOr<proc::ProcStatus> Terminate(absl::Duration grace, absl::string_view reason) override;
  absl::StatusOr<proc::ProcStatus> Kill() override;
  // Kill's signal without its wait: Stopping, then SignalKill, unless it has ended.
  void KillWithoutWaiting();
  // Terminate on each of `handles`, at most `max_in_flight` (at least 1) under way
  // at once, each with its own grace from when its turn starts; a proc whose
  // termination another caller runs is waited for, not signalled again. Returns
  // once each has ended (every watcher has seen it) or been given up on.
  static TerminateSummary TerminateEach(const std::vector<ProcHandleBase*>& handles, absl::Duration grace,
                                        int max_in_flight, absl::string_view reason);

  proc::ProcStatusCell& cell() { return cell_; }

  // Sends "stop <reason>" to the proc's agent, over a link on `loop`; false when the
  // proc has no address (no agent to ask) or the link refuses the message.
  bool SendAgentStop(channel::EventLoop& loop, absl::string_view reason);
  // Drops that link; managers call it when the proc ends, so a handle that outlives
  // its manager holds nothing on the manager's loop.
  void ReleaseAgentLink();

  // How long after SIGKILL the exit must be observed before Terminate/Kill give up.
  static constexpr absl::Duration kKillWait = absl::Seconds(5);

 protected:
  // Asks the proc to stop; false if it has no way to be asked (then SIGTERM comes at once).
  virtual bool RequestStop(absl::string_view reason) = 0;
  virtual void SignalTerm() = 0;
  virtual void SignalKill() = 0;

 private:
  absl::Status NotEnded(absl::string_view what) const;

  const proc::ProcId id_;
  proc::ProcStatusCell cell_;
  std::atomic<bool> terminating_{false};
  // When the shared termination gives up waiting, for callers who joined it.
  std::atomic<int64_t> give_up_unix_nanos_{0};
  absl::Mutex agent_mu_;
  std::unique_ptr<channel::Sender> agent_ ABSL_GUARDED_BY(agent_mu_);
};

// BulkTerminate::KillAll for a manager whose handles are all ProcHandleBase (every
// manager in hostd): KillWithoutWaiting on each, then Wait on each until `deadline`.
TerminateSummary KillHandles(const std::vector<std::shared_ptr<ProcHandle>>& handles, absl::Time deadline);

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_PROC_HANDLE_BASE_H_
