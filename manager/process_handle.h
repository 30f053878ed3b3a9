// ProcessHandle: the ProcHandle of one proc that is an OS process, made and driven
// by ProcessProcManager (the only class that creates one).
//
// Owns: the leader's pidfd (until the leader is reaped), the read end of its
// readiness pipe or its notify socket, and the agent link of ProcHandleBase. It
// removes the proc's cgroup once the proc has ended. It does not own the manager,
// the log files or the cgroup tree.
//
// Signalling. Everything of a proc is signalled as a whole: kill(-pgid) for its
// process group (the launcher makes the leader a group leader), plus cgroup.kill
// when it has a cgroup (SIGKILL only: cgroup.kill has no SIGTERM). The group id is
// safe to use because the leader is not reaped until the rest of the proc is gone:
// its zombie keeps the id from being reused. Once the exit monitor has taken over
// (the leader exited), only the monitor signals.
//
// Waiting. The leader's pidfd is watched on the manager's loop; a readable pidfd is
// checked with waitid(P_PIDFD, WNOHANG | WNOWAIT), so a wake-up with no exit behind
// it waits again instead of blocking the loop. On exit the rest of the cgroup (or
// process group) is SIGKILLed and reaped, then the leader is reaped by its pidfd,
// then the terminal status is published: Wait() returning means nothing of the
// proc is left. Never waitpid(-1). Called on the loop thread itself (a watcher
// that Kills), Wait observes the exit there, since the monitor cannot run.
//
// Where a proc can be killed, each place with why (and nowhere else in hostd: code
// outside manager/, the daemon's second stop signal included, asks the manager):
//   - ProcessHandle::SignalTerm / SignalKill: Terminate, Kill, the manager's
//     KillAll and destructor (KillWithoutWaiting): the one path for callers.
//   - ProcessHandle::LivenessFailed: the liveness check's dump signal to the
//     leader (by pid while it is not reaped, or its pidfd when adopted), then
//     KillWithoutWaiting after the dump grace. (The check's own probes are
//     processes of hostd's, not of the proc: liveness.h kills and reaps those.)
//   - ProcessHandle::OnExit: what the proc left behind after its leader exited.
//     For an adopted proc that is not this process's child, the process group
//     unless the leader's pid already names another process (a different start
//     time): a pid is not reused while it is a live process group's id.
//   - ProcessHandle::ReleaseWithManager: pidfd_send_signal(SIGKILL) to a leader
//     whose exit the manager, as it goes, has not observed yet.
//   - The launcher (launcher.h): PR_SET_PDEATHSIG, the kernel's SIGKILL to the
//     leader when the manager's loop thread dies (not armed with keep_procs).
//   - CgroupTree::KillAll (cgroup.h): cgroup.kill, or each member on kernels
//     without it; called from here only.
//   - The janitor (janitor.h): a separate process, since it must act when hostd
//     itself died without cleaning up (even by SIGKILL); it kills the recorded
//     process groups and the manager's whole cgroup subtree (with keep_procs, only
//     if no new owner takes the state lock within the reattach timeout).
//
// Thread-safety: the ProcHandle methods are thread-safe. The methods below marked
// "loop thread" abort when called off the manager's loop (EventLoop::AssertInLoop).
// pid and whether the leader has exited are under mu_; the status is in
// ProcHandleBase's cell.
//
// Lifetime: shared by its callers and the manager (which hands it out and keeps it
// registered until the proc ends). It may outlive the manager: the manager's
// destructor kills the proc, calls DetachFromManager, then ReleaseWithManager on its
// loop, which leaves the handle terminal and holding nothing of the loop.
#ifndef HOSTD_MANAGER_PROCESS_HANDLE_H_
#define HOSTD_MANAGER_PROCESS_HANDLE_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "base/unique_fd.h"
#include "boost/asio/posix/stream_descriptor.hpp"
#include "boost/system/error_code.hpp"
#include "boost/asio/steady_timer.hpp"
#include "manager/liveness.h"
#include "manager/proc_handle_base.h"

namespace hostd::manager {

class ProcessProcManager;

class ProcessHandle final : public ProcHandleBase, public std::enable_shared_from_this<ProcessHandle> {
 public:
  ProcessHandle(ProcessProcManager* mgr, proc::ProcId id, std::string command);

  absl::StatusOr<proc::ProcStatus> Wait(absl::Time deadline) override;
  // Its cgroup's processes, or its process group's.
  ProcUsage Usage() const override;
  void Heartbeat() override;

  // Set by Spawn before the launch (which orders it before any use on the loop).
  void set_cgroup_dir(std::string dir) { cgroup_dir_ = std::move(dir); }
  // Where this spawn's output begins in the stderr log (Spawn, before the launch).
  void set_stderr_start(off_t offset) { stderr_start_ = offset; }
  // The serial of the ProcMark it is launched with (proc_mark.h).
  void set_mark_serial(uint64_t serial) { mark_serial_ = serial; }
  uint64_t mark_serial() const override { return mark_serial_; }
  // The liveness check armed at Ready, and what its probes launch (Spawn or Adopt,
  // before the handle is on the loop).
  void set_liveness(LivenessSpec spec, LaunchRequest probe) {
    liveness_spec_ = std::move(spec);
    liveness_probe_ = std::move(probe);
  }

  const std::string& command() const { return command_; }
  const std::string& cgroup_dir() const { return cgroup_dir_; }
  // Why readiness failed, if the proc said something unexpected (empty otherwise).
  std::string ready_problem() const;

  // Loop thread: the child exec'd; the exit monitor starts.
  void Started(pid_t pid, base::UniqueFd pidfd);
  // Loop thread: a proc a previous manager launched was verified and is taken over
  // (ProcessProcManager::Adopt); the exit monitor starts on `pidfd`. If the proc
  // is not this process's child, waitid cannot see its end: the pidfd turning
  // readable is the end, with an unknown status (Failed saying so), and its
  // process group is signalled only while the leader is alive (by its pidfd), since
  // its exited leader's id is not held by a zombie of ours.
  void Adopted(pid_t pid, uint64_t start_time, base::UniqueFd pidfd);
  // Loop thread: waits for "READY <addr>" on the pipe, or EOF.
  void WatchHandshake(base::UniqueFd read_end);
  // Loop thread: waits for a "READY=1" datagram on the notify socket.
  void WatchNotify(base::UniqueFd sock);
  // Loop thread: Ready, with the proc's address if it reported one.
  void MarkReady(std::optional<channel::ChannelAddr> addr);

  // The manager's destructor, before it releases the handle on the loop: from now on
  // calls from other threads do not reach the manager (they find the proc ended).
  void DetachFromManager();
  // Loop thread, when the manager goes (after DetachFromManager): a leader whose exit
  // the monitor has not seen yet (the loop was busy, say) is reaped here, within
  // kKillWait, and its real terminal status published; then everything bound to the
  // loop is dropped. The handle ends terminal whatever happens, so a caller that
  // still holds it never waits forever.
  void ReleaseWithManager();

 protected:
  bool RequestStop(absl::string_view reason) override;
  void SignalTerm() override;
  void SignalKill() override;

 private:
  // `sig` to the process group, while the leader is not reaped.
  void Signal(int sig);
  void ReadReport();
  void AwaitNotify();
  void SetReadyProblem(std::string problem);
  // Loop thread, instead of the monitor: waits until the leader exits or `deadline`,
  // then handles the exit as the monitor would. True if it exited.
  bool ObserveExitHere(absl::Time deadline);
  void AwaitExit();
  // Loop thread: after waitid(P_PIDFD) failed with `err`: true if that means an
  // adopted non-child leader has ended (its pidfd is readable).
  bool EndedAsNonChild(int err);
  void OnExit(boost::system::error_code ec);
  // Loop thread: the liveness check failed (`why`): the dump signal to the leader,
  // if any, then SIGKILL after its grace; the end's reason says so. Ignored unless
  // the proc is Ready (a stop already under way goes on as it was).
  void LivenessFailed(std::string why);
  // Loop thread: the check and the dump grace stop (the proc ended or is released).
  void StopLiveness();

  // Loop-thread code runs only while the manager exists; other threads reach it
  // only through RequestStop, which checks mgr_gone_.
  ProcessProcManager* const mgr_;
  const std::thread::id loop_thread_;  // the manager's loop's
  absl::Mutex mgr_mu_;
  bool mgr_gone_ ABSL_GUARDED_BY(mgr_mu_) = false;
  const std::string command_;
  std::string cgroup_dir_;
  uint64_t mark_serial_ = 0;
  uint64_t full_log_episodes_ = 0;  // LogSpace::episodes() when it started
  off_t stderr_start_ = 0;

  mutable absl::Mutex mu_;
  pid_t pid_ ABSL_GUARDED_BY(mu_) = 0;
  bool leader_exited_ ABSL_GUARDED_BY(mu_) = false;  // OnExit has taken over
  // Adopted: a copy of the leader's pidfd, to check it is alive before signalling.
  base::UniqueFd adopted_pidfd_ ABSL_GUARDED_BY(mu_);
  bool adopted_ = false;  // set by Adopted, before the monitor starts
  uint64_t adopted_start_time_ = 0;
  bool not_child_exit_ = false;  // loop thread: the leader ended, but not as our child
  std::string ready_problem_ ABSL_GUARDED_BY(mu_);
  // Running from Ready until the end; Heartbeat reaches it from any thread.
  std::shared_ptr<LivenessCheck> liveness_ ABSL_GUARDED_BY(mu_);
  LivenessSpec liveness_spec_;
  LaunchRequest liveness_probe_;
  // Loop thread only: why the check failed (empty: it has not), and the dump grace.
  std::string liveness_failure_;
  std::unique_ptr<boost::asio::steady_timer> dump_grace_;

  // Loop thread only. The leader's pidfd, until it is reaped.
  std::unique_ptr<boost::asio::posix::stream_descriptor> exit_watch_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> ready_pipe_;
  std::string ready_buf_;
  size_t ready_len_ = 0;
  std::unique_ptr<boost::asio::posix::stream_descriptor> notify_;
};

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_PROCESS_HANDLE_H_
