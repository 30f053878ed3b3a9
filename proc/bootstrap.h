// Child-side bootstrap: the one call a proc binary makes.
//
//   int main() {
//     absl::StatusOr<BootedProc> proc = BootstrapProc();
//     if (!proc.ok()) { fprintf(stderr, "%s\n", ...); return 2; }
//     ... bind ports on proc->runtime ...
//     proc->runtime->WaitForStopRequest(absl::InfiniteFuture());
//     return 0;
//   }
//
// It reads from the environment the manager prepared:
//   HOSTD_PROC_ID        this proc's ProcId                       (required)
//   HOSTD_HOST_BACKEND   the host backend address                 (required)
//   HOSTD_LISTEN         where to serve; default "unix:" (any)    (optional)
//   HOSTD_READY_FD       descriptor to report readiness on        (optional)
//   HOSTD_PARENT_PID     the manager's pid, for the death re-check (optional)
//   HOSTD_OUTLIVE_PARENT "1": do not arm SIGKILL on the parent's death; the proc  (optional)
//                        is to outlive a manager that restarts (hostd --keep-procs)
//   HOSTD_STATE_FD       descriptor holding the state the previous   (optional)
//                        incarnation handed over (ProcRuntime::initial_state())
// validates each (an error names the variable and the problem), arms SIGKILL on
// the parent's death (then re-checks the parent is still the one that started it,
// closing the race with a parent that died first), reads the state descriptor to
// EOF and closes it, starts the runtime, and reports readiness by writing
// "READY <addr>\n" to the ready descriptor and closing it.
#ifndef HOSTD_PROC_BOOTSTRAP_H_
#define HOSTD_PROC_BOOTSTRAP_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "channel/event_loop.h"
#include "proc/proc_id.h"
#include "proc/proc_runtime.h"

namespace hostd::proc {

inline constexpr char kEnvProcId[] = "HOSTD_PROC_ID";
inline constexpr char kEnvOutliveParent[] = "HOSTD_OUTLIVE_PARENT";
inline constexpr char kEnvHostBackend[] = "HOSTD_HOST_BACKEND";
inline constexpr char kEnvListen[] = "HOSTD_LISTEN";
inline constexpr char kEnvReadyFd[] = "HOSTD_READY_FD";
inline constexpr char kEnvParentPid[] = "HOSTD_PARENT_PID";
inline constexpr char kEnvStateFd[] = "HOSTD_STATE_FD";

struct BootstrapEnv {
  ProcId id;
  channel::ChannelAddr host_backend;
  channel::ChannelAddr listen;
  int ready_fd = -1;
  pid_t parent_pid = 0;
  bool outlive_parent = false;  // HOSTD_OUTLIVE_PARENT=1
  int state_fd = -1;  // -1: no state handed over
};

using GetEnv = std::function<const char*(const char*)>;
absl::StatusOr<BootstrapEnv> ReadBootstrapEnv(const GetEnv& getenv);

// PR_SET_PDEATHSIG(SIGKILL), then FailedPrecondition if the parent is no longer
// `expected_parent` (it died before the signal was armed). 0 skips the re-check.
absl::Status ArmParentDeathSignal(pid_t expected_parent);

// The readiness report: "READY <addr>\n", then the descriptor is closed.
absl::Status ReportReady(int fd, const channel::ChannelAddr& addr);

struct BootedProc {
  std::unique_ptr<channel::EventLoop> loop;
  std::unique_ptr<ProcRuntime> runtime;  // declared last: destroyed before the loop
};

// The state on `fd` (HOSTD_STATE_FD), read to EOF; the descriptor is closed
// whatever happens. InvalidArgument naming the variable if it cannot be read or
// holds more than kMaxStateBytes.
absl::StatusOr<std::string> ReadHandedOverState(int fd);

// Reads the environment, arms the parent-death signal, reads the handed-over
// state, starts the runtime, reports readiness. `before_ready` (optional) runs after the runtime starts and before the
// report: bind ports there so no message finds them missing.
absl::StatusOr<BootedProc> BootstrapProc(const std::function<absl::Status(ProcRuntime&)>& before_ready = nullptr,
                                         const GetEnv& getenv = ::getenv);

}  // namespace hostd::proc

#endif  // HOSTD_PROC_BOOTSTRAP_H_
