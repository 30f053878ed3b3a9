// Adoption: how a hostd started with --keep-procs takes back the procs a previous
// hostd on the same state directory left running (after SIGTERM with
// --keep-procs, a crash, SIGKILL, or `hostctl upgrade`).
//
// RecordInto feeds the durable table (daemon/proc_store.h) from the Host's
// lifecycle events. AdoptStored goes through the rows the table held at start:
//   - a live row whose process is still the same one (pid, its start time, and
//     cgroup when it had one: ProcessProcManager::Adopt) is adopted: it is live
//     again under its name, with its incarnation, route and logs (appended to),
//     watched by pidfd; no restart policy is restored (it is not restarted); its
//     lease, if it had one, keeps owner and TTL and expires one TTL after adoption;
//   - a live row whose process is gone becomes an ended proc with
//     Failed{ended while hostd was down}; one whose pid now names another process
//     (a different start time or cgroup) is never touched and ends the same way,
//     saying so;
//   - a starting or restarting row (its readiness report went with the old hostd)
//     is killed if it is still the same process, and ends Failed saying why;
//   - rows of procs that had already ended are dropped.
// Each name is adopted at most once (the table refuses a known name), and no row is
// adopted without the identity check.
#ifndef HOSTD_DAEMON_ADOPTION_H_
#define HOSTD_DAEMON_ADOPTION_H_

#include <string>
#include <vector>

#include "daemon/host.h"
#include "daemon/proc_store.h"
#include "manager/process_proc_manager.h"

namespace hostd::daemon {

struct AdoptionSummary {
  int rows = 0;       // live, starting or restarting rows found
  int adopted = 0;    // running again under this hostd
  int ended = 0;      // gone while hostd was down
  int strangers = 0;  // pid reused by another process: not adopted
  int killed = 0;     // were starting or restarting: killed
};

// Makes `host` record every proc's lifecycle in `store`. `store` outlives `host`.
void RecordInto(Host& host, ProcStore& store);

// Adopts what `rows` (ProcStore::loaded) say still runs; see the file comment.
AdoptionSummary AdoptStored(const std::vector<StoredProc>& rows, manager::ProcessProcManager& mgr, Host& host,
                            ProcStore& store);

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_ADOPTION_H_
