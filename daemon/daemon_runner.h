// RunDaemon: hostd's life, from a DaemonConfig to exit.
//
//   1. Blocks SIGTERM and SIGINT (call it before any thread starts: threads
//      inherit the mask; procs get a clean one from the launcher).
//   2. Creates the runtime and state directories, the proc manager, the Host
//      and the gRPC server (HostService, grpc.health.v1, server reflection); a
//      unix control socket is made mode 0600 inside a 0700 directory and accepted
//      by hostd itself (daemon/control_socket.h), so each caller is known.
//   3. Announces readiness: a log line and, under systemd, READY=1.
//   4. On the first SIGTERM/SIGINT: STOPPING=1, health NOT_SERVING, no new spawns,
//      every proc terminated within the grace (each gets its own), the summary
//      logged, the server drained; returns OK (exit 0).
//      A second signal meanwhile: the manager SIGKILLs every proc at once
//      (BulkTerminate::KillAll) and the process exits with 128+signal as soon as
//      each is seen ended, within a second (the janitor kills what is left).
// If hostd is SIGKILLed, its procs die with it (PR_SET_PDEATHSIG and the janitor,
// manager/janitor.h).
#ifndef HOSTD_DAEMON_DAEMON_RUNNER_H_
#define HOSTD_DAEMON_DAEMON_RUNNER_H_

#include "absl/status/status.h"
#include "daemon/config.h"

namespace hostd::daemon {

inline constexpr char kVersion[] = "0.1.0";

absl::Status RunDaemon(const DaemonConfig& cfg);

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_DAEMON_RUNNER_H_
