// LocalProcManager: procs as in-process runtimes on the `local` transport, for tests
// and for embedding. Same ProcStatus semantics as the process manager:
//   - Spawn starts a ProcRuntime (its agent included), runs SpawnSpec::local_setup,
//     reports Ready with the runtime's local address, then runs local_main on the
//     proc's own thread; local_main's return value is the exit code (Stopped).
//   - Terminate sends the agent a stop (the default local_main returns 0 on it), and
//     after grace "kills": Kill abandons the proc at once, reporting Killed(SIGKILL),
//     notifies its `killed` flag and closes its runtime when its thread returns.
// A local proc has no pid (Running reports 0). Destroying the manager kills every
// live proc and joins their threads, so local_main must return once `killed` is
// notified. Thread-safe.
#ifndef HOSTD_MANAGER_LOCAL_PROC_MANAGER_H_
#define HOSTD_MANAGER_LOCAL_PROC_MANAGER_H_

#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "channel/event_loop.h"
#include "manager/proc_manager.h"
#include "manager/proc_registry.h"

namespace hostd::manager {

class LocalHandle;

class LocalProcManager final : public ProcManager, public BulkTerminate {
 public:
  // Procs serve `listen` (an "any" form: each gets its own address). The default,
  // the in-process `local` transport, needs no socket file or port; "unix:" or
  // "tcp:127.0.0.1:0" put in-process procs on real sockets (benchmarks do).
  explicit LocalProcManager(channel::ChannelAddr listen = channel::ChannelAddr::Local(0));
  ~LocalProcManager() override;

  absl::StatusOr<std::shared_ptr<ProcHandle>> Spawn(const proc::ProcId& id, const channel::ChannelAddr& forwarder,
                                                    const SpawnSpec& spec) override;
  std::vector<std::shared_ptr<ProcHandle>> Procs() const override;
  TerminateSummary TerminateAll(absl::Duration grace, int max_in_flight, absl::string_view reason) override;
  TerminateSummary KillAll(absl::Time deadline) override;

 private:
  friend class LocalHandle;

  const channel::ChannelAddr listen_;
  std::unique_ptr<channel::EventLoop> loop_;
  ProcRegistry procs_;
  mutable absl::Mutex mu_;
  int running_threads_ ABSL_GUARDED_BY(mu_) = 0;  // proc threads not yet finished
};

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_LOCAL_PROC_MANAGER_H_
