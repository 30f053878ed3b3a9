// ProcStore: the durable proc table, <state dir>/procs.db.
//
// One row per proc name hostd knows: its spec (program, args, environment, working
// directory, readiness, cgroup limits), labels, supervision (restart policy and
// group), incarnation, the table's state (starting, live, restarting, ended) and
// last status, its pid with the pid's start time and cgroup
// (manager/proc_identity.h: what proves it is the same process later), the serial
// of its ProcMark (manager/proc_mark.h), its backend address, its log paths, and
// its lease's owner and TTL (not its deadline: an adopted proc's lease is re-armed
// with a full TTL, since its owner could not renew it while hostd was away); and
// one row per supervision group (its spec). A hostd started with --keep-procs on
// the same state directory reads them back (Load) to re-adopt what still runs
// (daemon/adoption.h). A table written by an older hostd, without the later
// columns, gains them (empty) when opened.
//
// Storage: SQLite in WAL mode with synchronous=NORMAL: a crash of hostd (even by
// SIGKILL) loses nothing committed, and the database is never left half-written;
// a power loss may lose the last transactions, never consistency. The file is
// created mode 0600 (it holds procs' environments). A database it cannot open or
// read fails Open with the path and SQLite's message.
//
// Writes are off the message path: Record and Forget queue (latest row per name
// wins) and return; one writer thread commits what is queued in one transaction,
// and reads each new pid's start time and cgroup there, from /proc. A pid is read
// moments after its Running event: a proc that ends and has its pid reused in that
// moment is recorded with the stranger's start time and, being gone, is never
// adopted: the error falls on the safe side. Flush waits until everything queued
// is committed (hostd calls it before it exits or re-executes with its procs
// running). Thread-safe.
#ifndef HOSTD_DAEMON_PROC_STORE_H_
#define HOSTD_DAEMON_PROC_STORE_H_

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "daemon/host_types.h"
#include "manager/proc_manager.h"

struct sqlite3;

namespace hostd::daemon {

struct StoredProc {
  std::string name;
  // program, args, env, inherit_env, cwd, readiness, user, liveness, limits, client_identity
  manager::SpawnSpec spec;
  Labels labels;
  Supervision supervision;  // restart policy and group
  int incarnation = 1;
  std::string state;   // "starting", "live", "restarting" or "ended"
  std::string status;  // ProcStatus::ToString()
  bool terminal = false;
  pid_t pid = 0;
  uint64_t start_time = 0;  // ticks since boot (ProcStartTime); 0 unknown
  std::string cgroup;       // cgroup directory, empty if none
  std::string addr;         // backend address reported at readiness, empty if none
  uint64_t mark_serial = 0;  // its ProcMark serial; 0 unknown
  std::string stdout_log, stderr_log;
  absl::Time updated_at;
  std::string lease_owner;  // empty: no lease
  absl::Duration lease_ttl = absl::ZeroDuration();
};

struct StoredGroup {
  std::string name;
  GroupSpec spec;
};

class ProcStore {
 public:
  static constexpr char kFileName[] = "procs.db";

  static absl::StatusOr<std::unique_ptr<ProcStore>> Open(const std::string& state_dir);
  ~ProcStore();  // commits what is queued, then closes
  ProcStore(const ProcStore&) = delete;
  ProcStore& operator=(const ProcStore&) = delete;

  // The rows as they were when Open ran.
  const std::vector<StoredProc>& loaded() const { return loaded_; }
  // The groups as they were when Open ran, each after its parent.
  const std::vector<StoredGroup>& loaded_groups() const { return loaded_groups_; }
  // Queues a row (start_time and cgroup are filled in by the writer).
  void Record(StoredProc row);
  // Queues the removal of `name`'s row.
  void Forget(const std::string& name);
  // Queues a group's row (its spec), or its removal (nullopt).
  void RecordGroup(const std::string& name, std::optional<GroupSpec> spec);
  // Returns once everything queued before the call is committed.
  void Flush();
  const std::string& path() const { return path_; }

 private:
  ProcStore(std::string path, sqlite3* db);
  absl::Status Load();
  void Run();
  // Writer thread: one transaction for `batch` and `groups` (nullopt: a removal).
  void Commit(std::vector<std::pair<std::string, std::optional<StoredProc>>>& batch,
              std::vector<std::pair<std::string, std::optional<GroupSpec>>>& groups);

  const std::string path_;
  sqlite3* const db_;
  std::vector<StoredProc> loaded_;
  std::vector<StoredGroup> loaded_groups_;

  absl::Mutex mu_;
  // Pending writes in order of first arrival; the latest per name wins.
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::optional<StoredProc>> pending_ ABSL_GUARDED_BY(mu_);
  // Group writes in the order they came (a parent is created before its children).
  std::vector<std::pair<std::string, std::optional<GroupSpec>>> pending_groups_ ABSL_GUARDED_BY(mu_);
  uint64_t queued_ ABSL_GUARDED_BY(mu_) = 0;     // writes queued so far
  uint64_t committed_ ABSL_GUARDED_BY(mu_) = 0;  // of those, committed
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Writer thread only: what it last knew of each name's pid.
  struct Identity {
    pid_t pid = 0;
    uint64_t start_time = 0;
    std::string cgroup;
  };
  absl::flat_hash_map<std::string, Identity> identities_;
  std::thread writer_;
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_PROC_STORE_H_
