// DeathHistory: each proc name's most recent ends (when, the terminal status with
// the end of its stderr, the incarnation), for GetProc and `hostctl get`.
//
//   DeathHistory deaths(host, {.per_name = 8});
//   for (const ProcEnd& e : deaths.Of("worker-3")) ...   // newest first
//
// Fed by the Host's events: every terminal transition and every failed start. A
// name's record outlives the proc (RemoveProc, a respawn under the same name); at
// most `max_names` names are kept, the one whose last end is oldest going first,
// so memory is bounded by max_names * per_name * a status (whose stderr tail the
// manager bounds: ProcessProcManagerOptions::stderr_tail_bytes).
//
// Thread-safe. Subscribes in the constructor and unsubscribes in the destructor;
// the Host must outlive it.
#ifndef HOSTD_DAEMON_DEATH_HISTORY_H_
#define HOSTD_DAEMON_DEATH_HISTORY_H_

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/host.h"
#include "proc/proc_status.h"

namespace hostd::daemon {

struct ProcEnd {
  absl::Time at;
  proc::ProcStatus status;
  int incarnation = 0;
};

struct DeathHistoryOptions {
  size_t per_name = 8;  // 0: keep none
  size_t max_names = 4096;
};

class DeathHistory {
 public:
  DeathHistory(Host& host, DeathHistoryOptions opts);
  ~DeathHistory();
  DeathHistory(const DeathHistory&) = delete;
  DeathHistory& operator=(const DeathHistory&) = delete;

  // `name`'s recorded ends, newest first.
  std::vector<ProcEnd> Of(const std::string& name) const;

 private:
  void Record(const HostEvent& e);

  Host& host_;
  const DeathHistoryOptions opts_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::deque<ProcEnd>> ends_ ABSL_GUARDED_BY(mu_);  // newest first
  uint64_t subscription_ = 0;
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_DEATH_HISTORY_H_
