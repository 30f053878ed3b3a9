// WorkerPool: a fixed set of threads running queued tasks, for calls that block
// in a proc manager (spawn, terminate) so that gRPC's threads never do.
//
// The queue is bounded: Submit fails with ResourceExhausted when it is full.
// Destroying the pool runs every task already queued, then joins. Thread-safe.
#ifndef HOSTD_DAEMON_WORKER_POOL_H_
#define HOSTD_DAEMON_WORKER_POOL_H_

#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace hostd::daemon {

class WorkerPool {
 public:
  WorkerPool(int threads, size_t max_queued);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  absl::Status Submit(absl::AnyInvocable<void()> task);

 private:
  void Run();

  const size_t max_queued_;
  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_WORKER_POOL_H_
