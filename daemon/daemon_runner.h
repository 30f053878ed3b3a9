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
//
// With --keep-procs (process manager only) instead:
//   2'. the manager holds <state dir>/hostd.lock and launches procs that outlive
//       hostd; the procs the durable table (<state dir>/procs.db) lists as live are
//       re-adopted before readiness is announced (daemon/adoption.h);
//   4'. the first SIGTERM/SIGINT, or an Upgrade RPC, hands over: no new spawns,
//       the gRPC server drained, the message listeners closed and what the host
//       took acknowledged (bounded), the table flushed; then exit 0 leaving every
//       proc running, or (upgrade) execv of the new binary with the same argv, in
//       place, so the procs stay children of this pid. A failed exec exits 1: the
//       procs then wait --reattach-timeout for another hostd.
// Without --keep-procs the table is still written, and the rows a previous hostd
// left are dropped at start (its procs died with it).
#ifndef HOSTD_DAEMON_DAEMON_RUNNER_H_
#define HOSTD_DAEMON_DAEMON_RUNNER_H_

#include "absl/status/status.h"
#include "daemon/config.h"

namespace hostd::daemon {

inline constexpr char kVersion[] = "0.1.0";

absl::Status RunDaemon(const DaemonConfig& cfg);

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_DAEMON_RUNNER_H_
