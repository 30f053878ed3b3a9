// LeaseKeeper: ends the procs whose client lease ran out.
//
// A proc spawned with a lease (owner, TTL) lives while its owner renews it:
// Renew (the RenewLease RPC) pushes the deadline of every live proc of the owner
// to one TTL from now, and an owner held with Hold (an open WatchProcs stream
// naming it) is renewed whenever one of its deadlines comes, until Release, which
// renews it one last time: a client that goes away loses its procs one TTL later.
// A proc whose deadline passes is marked stopped for good (its restart policy no
// longer applies: the owner is gone), then terminated with the usual grace and
// reason kReasonLeaseExpired, which its terminal status carries. Each expiry is
// logged once ("lease expired") and counted (expirations()).
//
// One thread waits for the earliest deadline (or Wake, when a spawn adds one);
// terminations run on a small pool of their own, so a proc that takes its whole
// grace holds up no other expiry. Thread-safe. Shutdown (Host::StopSpawns, or
// the destructor) stops the thread; terminations not yet begun are dropped (a
// hostd that keeps its procs re-arms their leases when it adopts them).
#ifndef HOSTD_DAEMON_LEASE_KEEPER_H_
#define HOSTD_DAEMON_LEASE_KEEPER_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/proc_table.h"
#include "daemon/worker_pool.h"

namespace hostd::daemon {

class LeaseKeeper {
 public:
  // `table` outlives the keeper. `grace`: each expired proc's, as for TerminateProc.
  LeaseKeeper(ProcTable& table, absl::Duration grace);
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Renews `owner`'s leases now; NotFound naming the owner when it holds no live proc.
  absl::StatusOr<ProcTable::Renewal> Renew(const std::string& owner);
  // Keeps `owner`'s leases renewed until Release(id); any number of holds per owner.
  uint64_t Hold(const std::string& owner);
  void Release(uint64_t id);
  // A lease was added: look again at the earliest deadline.
  void Wake();
  void Shutdown();
  uint64_t expirations() const { return expirations_.load(std::memory_order_relaxed); }

 private:
  void Run();

  ProcTable& table_;
  const absl::Duration grace_;
  std::atomic<uint64_t> expirations_{0};
  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::string> holds_ ABSL_GUARDED_BY(mu_);
  uint64_t next_hold_ ABSL_GUARDED_BY(mu_) = 1;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  WorkerPool terminations_;
  std::thread thread_;
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_LEASE_KEEPER_H_
