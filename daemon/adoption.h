// Adoption: how a hostd started with --keep-procs takes back the procs a previous
// hostd on the same state directory left running (after SIGTERM with
// --keep-procs, a crash, SIGKILL, or `hostctl upgrade`).
//
// RecordInto feeds the durable table (daemon/proc_store.h) from the Host's
// lifecycle events and group changes. AdoptStored first creates the groups the
// table held at start again (each after its parent), then goes through its procs:
//   - a live row whose process is still the same one (pid, its start time, and
//     cgroup when it had one: ProcessProcManager::Adopt) is adopted: it is live
//     again under its name, with its incarnation, spec (its limits included),
//     labels, restart policy and group, route and logs (appended to), watched by
//     pidfd, its escaped descendants still found by its ProcMark; its lease, if it
//     had one, keeps owner and TTL and expires one TTL after adoption;
//   - a live row whose process has ended (certainly: its pidfd says so, or its pid
//     now names another process, a different start time, which is never
//     touched) ended with Failed{ended while hostd was down}, saying which;
//   - a live row whose process may still run but cannot be adopted (the same
//     process moved out of its cgroup, or its identity could not be read) is left
//     alone, ended Failed saying why, and never started a second time;
//   - a restarting row (its last incarnation ended, the next was on the way) is
//     restarted under its restart policy, its next incarnation started at once (a
//     launch the old hostd had begun is killed first: its readiness report went
//     with the old hostd);
//   - a starting row (its first launch as last recorded: its spawn may have
//     failed for its client) is killed if it is still the same process and ends
//     Failed saying why, or is Failed{ended while hostd was down}; not restarted;
//   - rows of procs that had already ended are dropped.
// The ends of the live rows whose process has ended are applied after every other
// row is back, as if just seen: a proc with a restart policy or a group is
// restarted, or given up, under it (its group's strategy included: a plan that
// takes several such members applies once), the unknown end counting as a
// failure; any other stays ended. Restarted and restored procs keep their lease.
// Each name is adopted at most once (the table refuses a known name), and no row is
// adopted without the identity check. Whatever an adopted or restarted proc
// launches from then on (its restarts, its exec probe) must pass this hostd's exec
// policy for the client that asked for the proc (recorded with it; for a row
// recorded before clients were, any rule's client); a proc already running is not
// ended by a stricter policy, but an exec probe the policy no longer allows is not
// run (logged); its spec keeps it, for a later hostd whose policy allows it.
#ifndef HOSTD_DAEMON_ADOPTION_H_
#define HOSTD_DAEMON_ADOPTION_H_

#include <string>
#include <vector>

#include "daemon/exec_policy.h"
#include "daemon/host.h"
#include "daemon/proc_store.h"
#include "manager/process_proc_manager.h"

namespace hostd::daemon {

struct AdoptionSummary {
  int rows = 0;       // live, starting or restarting rows found
  int adopted = 0;    // running again under this hostd
  int ended = 0;      // gone while hostd was down
  int strangers = 0;  // pid reused by another process: not adopted
  int killed = 0;     // were starting: killed
  int restarted = 0;  // were restarting: restarting again
  int not_adopted = 0;  // might still run but could not be adopted: left alone
  int unrecorded = 0;   // processes with the state directory's mark but no row: killed
};

// Makes `host` record every proc's lifecycle, and every group, in `store`;
// `log_path(name, stderr)` names a proc's logs in its row. `store` outlives `host`.
void RecordInto(Host& host, ProcStore& store, std::function<std::string(const std::string&, bool)> log_path);

// Restores `groups` and adopts what `rows` say still runs (ProcStore::loaded_groups
// and loaded), each proc's launches armed with `policy`; see the file comment.
AdoptionSummary AdoptStored(const std::vector<StoredProc>& rows, const std::vector<StoredGroup>& groups,
                            manager::ProcessProcManager& mgr, Host& host, ProcStore& store,
                            const ExecPolicy& policy);

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_ADOPTION_H_
