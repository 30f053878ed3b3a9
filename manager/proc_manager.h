// The proc manager contract shared by every manager (docs/architecture.md,
// "Lifecycle contracts"): ProcManager spawns, ProcHandle observes and stops one
// proc, BulkTerminate stops (or kills) them all.
#ifndef HOSTD_MANAGER_PROC_MANAGER_H_
#define HOSTD_MANAGER_PROC_MANAGER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "channel/channel_addr.h"
#include "manager/cgroup.h"
#include "manager/liveness.h"
#include "manager/usage.h"
#include "proc/proc_id.h"
#include "proc/proc_runtime.h"
#include "proc/proc_status.h"

namespace hostd::manager {

// How a manager learns that a proc is ready.
enum class ReadinessMode {
  kHandshake,  // the proc runtime reports its address (proc/bootstrap.h); the default
  kExec,       // ready once exec succeeded; for any program, no address
  kNotify,     // the program sends "READY=1" to $NOTIFY_SOCKET, like systemd's notify protocol
};

// What to run. ProcessProcManager uses program..readiness; LocalProcManager uses
// local_main (and readiness kHandshake only).
struct SpawnSpec {
  std::string program;                                                    // a path, or a name looked up in PATH
  std::vector<std::string> args;                                          // argv[1..]
  std::vector<std::pair<std::string, std::string>> env;                   // the proc's environment, explicitly
  std::vector<std::string> inherit_env = {"PATH", "HOME", "LANG", "TZ"};  // copied from the daemon if set
  std::string cwd;                                                        // empty: the manager's state directory
  ReadinessMode readiness = ReadinessMode::kHandshake;
  // Launch plus readiness must finish within this; zero disables the deadline.
  absl::Duration ready_timeout = absl::Seconds(30);
  // Handed to the proc at boot (ProcRuntime::initial_state()); at most
  // proc::kMaxStateBytes, else the spawn fails with InvalidArgument (whatever the
  // readiness mode). Both managers use it: a process gets it on a sealed memfd
  // named by HOSTD_STATE_FD, which only the proc runtime's bootstrap reads, so with
  // kExec or kNotify readiness it is ignored; an in-process proc gets it in
  // ProcRuntime::Options.
  std::optional<std::string> initial_state;
  // Process procs: append to the proc's log files rather than truncate them. The
  // Host sets it for a restarted incarnation, so the logs keep every incarnation's
  // output; the terminal status's stderr tail is still this incarnation's only.
  bool append_logs = false;
  // Process procs: run as this user, "NAME" (its primary group and supplementary
  // groups) or "NAME:GROUP"; empty: the daemon's own. Changing user needs root
  // (CAP_SETUID/CAP_SETGID): otherwise the spawn fails with PermissionDenied.
  std::string user;
  // Process procs: asked, with the program's resolved path, before each launch
  // (restarts included); an error fails the spawn with it. The daemon's exec
  // allow-list (daemon/exec_policy.h) is checked here, on the path that is run.
  std::function<absl::Status(const std::string& program)> authorize;
  // Who asked for the proc, as `authorize` knows them (the daemon: the client's
  // certificate identity, "" for none; unset: unknown). Not read by the managers:
  // the daemon records it with the proc, to arm `authorize` for the same client
  // again when a later hostd adopts the proc.
  std::optional<std::string> client_identity;
  // Process procs: an exec probe that cannot be resolved or authorised is not run
  // (logged) instead of failing the launch. The daemon sets it for procs it
  // re-adopted, whose probe a later policy may refuse after the proc was started.
  bool skip_refused_probe = false;
  // Process procs: cgroup limits, written before the program execs; fields left
  // unset take the manager's defaults. Without a cgroup per proc the spawn fails
  // with FailedPrecondition naming the limit and why cgroups are off; an in-process
  // proc with limits is refused the same way.
  CgroupLimits limits = {};
  // Process procs: a liveness check armed once the proc is ready (manager/liveness.h);
  // a proc that fails it is killed with proc::kReasonLiveness. kHeartbeat needs
  // kHandshake readiness (the proc runtime sends the beats); an exec probe's program
  // is resolved and authorised at spawn like the proc's own. In-process procs with
  // one are refused (FailedPrecondition).
  LivenessSpec liveness = {};

  // In-process procs: the body, run on the proc's own thread once its runtime
  // serves; its return value is the exit code. It should return soon after
  // runtime.WaitForStopRequest() returns or `killed` is notified. Unset: wait for a
  // stop request and return 0.
  std::function<int(proc::ProcRuntime& runtime, const absl::Notification& killed)> local_main;
  // In-process procs: runs before readiness is reported (bind ports here). An error
  // fails the spawn.
  std::function<absl::Status(proc::ProcRuntime& runtime)> local_setup;
};

// One spawned proc. Same contract for every manager; all methods thread-safe.
class ProcHandle {
 public:
  virtual ~ProcHandle() = default;

  virtual const proc::ProcId& proc_id() const = 0;
  // The proc's backend address, once Ready (none in exec/notify readiness).
  virtual std::optional<channel::ChannelAddr> addr() const = 0;
  virtual proc::ProcStatus status() const = 0;
  // Changes exactly when status() does (and costs no copy of it): a reader that
  // kept what it derived from one status knows whether it is still current.
  virtual uint64_t status_seq() const = 0;
  // `fn` sees the current status (kFirst: every status so far, oldest first), then
  // every transition in order (ProcStatusCell::Watch).
  virtual uint64_t Watch(proc::ProcStatusCell::Watcher fn, proc::WatchFrom from) = 0;
  uint64_t Watch(proc::ProcStatusCell::Watcher fn) { return Watch(std::move(fn), proc::WatchFrom::kNow); }
  virtual void Unwatch(uint64_t id) = 0;

  // OK once Ready. FailedPrecondition carrying the terminal status if the proc ended
  // first; DeadlineExceeded otherwise. Any number of waiters.
  virtual absl::Status Ready(absl::Time deadline) = 0;
  // The terminal status as observed by the exit monitor; DeadlineExceeded if it has
  // not ended by `deadline`. Any number of waiters.
  virtual absl::StatusOr<proc::ProcStatus> Wait(absl::Time deadline = absl::InfiniteFuture()) = 0;
  // Asks politely (a stop message to the proc's agent), then SIGTERM to its process
  // group, then SIGKILL after `grace`; returns the terminal status. Concurrent callers
  // share one termination; an already-ended proc returns its status. Bounded: grace
  // plus a short kill wait.
  virtual absl::StatusOr<proc::ProcStatus> Terminate(absl::Duration grace, absl::string_view reason) = 0;
  // SIGKILL to the group now; returns the terminal status.
  virtual absl::StatusOr<proc::ProcStatus> Kill() = 0;
  // CPU and memory of the proc's processes now (manager/usage.h); unknown once it
  // has ended, and for in-process procs, which share their manager's process.
  virtual ProcUsage Usage() const { return {}; }
  // The serial of the ProcMark its process carries (manager/proc_mark.h); 0 when
  // it carries none (an in-process proc).
  virtual uint64_t mark_serial() const { return 0; }
  // A heartbeat from the proc's runtime (manager/liveness.h); ignored unless the
  // proc has a heartbeat check. Any thread, never blocks.
  virtual void Heartbeat() {}
};

class ProcManager {
 public:
  virtual ~ProcManager() = default;

  // Spawns `id`, which will send what is not addressed to it to `forwarder` (the
  // host backend), and waits until it is ready, within spec.ready_timeout.
  // Transactional: if it does not become ready, it is killed, reaped and forgotten,
  // and the error names the command, the exit status and the end of its stderr.
  // AlreadyExists if a live proc has that name. Many spawns may run at once.
  // The handle is shared by the caller and the manager, which keeps it for
  // TerminateAll until the proc has ended.
  virtual absl::StatusOr<std::shared_ptr<ProcHandle>> Spawn(const proc::ProcId& id,
                                                            const channel::ChannelAddr& forwarder,
                                                            const SpawnSpec& spec) = 0;
  // Live procs now.
  virtual std::vector<std::shared_ptr<ProcHandle>> Procs() const = 0;
};

struct TerminateOutcome {
  proc::ProcId proc_id;
  absl::StatusOr<proc::ProcStatus> result;  // the terminal status, or why termination failed
};

struct TerminateSummary {
  int attempted = 0;
  int ok = 0;      // ended (or had already ended)
  int failed = 0;  // could not be confirmed ended
  std::vector<TerminateOutcome> outcomes;
};

class BulkTerminate {
 public:
  virtual ~BulkTerminate() = default;
  // Terminates every live proc, at most `max_in_flight` at a time, each with its own
  // `grace` from when its termination starts.
  virtual TerminateSummary TerminateAll(absl::Duration grace, int max_in_flight, absl::string_view reason) = 0;
  // SIGKILLs every live proc at once (a process proc's whole process group and
  // cgroup; an in-process proc is abandoned as ProcHandle::Kill does): no stop
  // request, no SIGTERM, no grace. Then waits until each is seen ended, but never
  // past `deadline`; absl::InfinitePast() signals without waiting. ok counts the
  // procs seen ended by then; each other outcome is DeadlineExceeded (its SIGKILL
  // was sent all the same). The way for hostd to kill everything now, e.g. on a
  // second stop signal: every kill of a proc goes through its manager.
  virtual TerminateSummary KillAll(absl::Time deadline) = 0;
};

// Runs Terminate on each handle, at most `max_in_flight` at once (a shared helper
// for managers' TerminateAll).
TerminateSummary TerminateHandles(const std::vector<std::shared_ptr<ProcHandle>>& handles, absl::Duration grace,
                                  int max_in_flight, absl::string_view reason);

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_PROC_MANAGER_H_
