// FakeProcManager: a ProcManager whose procs run nothing; a test scripts, per proc
// name, how readiness goes, to drive a Host through every spawn outcome without
// real processes. It keeps the real Spawn contract: it waits for readiness within
// the spec's ready_timeout (zero disables it) and, if the proc does not become
// ready, "kills" it, forgets it and returns the error.
//
//   FakeProcManager mgr;
//   mgr.Script("slow", {.outcome = FakeOutcome::kReadyAfter, .delay = absl::Seconds(5)});
//   mgr.Spawn(id_of("slow"), backend, {.ready_timeout = absl::Milliseconds(100)});  // DeadlineExceeded
//
// Fake procs obey a stop request (Stopped(0)) unless `ignores_stop`; SIGTERM and
// SIGKILL end them as Killed(SIGTERM / SIGKILL). Thread-safe.
#ifndef HOSTD_TESTING_FAKE_PROC_MANAGER_H_
#define HOSTD_TESTING_FAKE_PROC_MANAGER_H_

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "channel/event_loop.h"
#include "manager/proc_manager.h"
#include "manager/proc_registry.h"

namespace hostd::testing {

enum class FakeOutcome {
  kReadyAfter,           // Ready after `delay`, with `addr`
  kReadyWithoutAddress,  // Ready after `delay`, with no address
  kEndsBeforeReady,      // `terminal` after `delay`, never Ready
  kChannelClosed,        // Failed("readiness channel closed") after `delay`
  kNeverReady,           // stays Running
};

struct FakeScript {
  FakeOutcome outcome = FakeOutcome::kReadyAfter;
  absl::Duration delay = absl::ZeroDuration();
  proc::ProcStatus terminal = proc::ProcStatus::Stopped(1, "fake proc failed");
  bool ignores_stop = false;
};

class FakeHandle;

class FakeProcManager final : public manager::ProcManager, public manager::BulkTerminate {
 public:
  FakeProcManager();
  ~FakeProcManager() override;

  // How the next spawn of `name` goes (default: ready at once with an address).
  void Script(const std::string& name, FakeScript script);
  int spawn_count() const;

  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> Spawn(const proc::ProcId& id,
                                                             const channel::ChannelAddr& forwarder,
                                                             const manager::SpawnSpec& spec) override;
  std::vector<std::shared_ptr<manager::ProcHandle>> Procs() const override;
  manager::TerminateSummary TerminateAll(absl::Duration grace, int max_in_flight, absl::string_view reason) override;
  manager::TerminateSummary KillAll(absl::Time deadline) override;

 private:
  friend class FakeHandle;

  std::unique_ptr<channel::EventLoop> loop_;
  manager::ProcRegistry procs_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, FakeScript> scripts_ ABSL_GUARDED_BY(mu_);
  int spawns_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_addr_ ABSL_GUARDED_BY(mu_) = uint64_t{1} << 40;  // local ids no real listener takes
};

}  // namespace hostd::testing

#endif  // HOSTD_TESTING_FAKE_PROC_MANAGER_H_
