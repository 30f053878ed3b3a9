#include "manager/local_proc_manager.h"

#include <csignal>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "base/log.h"
#include "manager/proc_handle_base.h"

namespace hostd::manager {

using proc::ProcStatus;

class LocalHandle final : public ProcHandleBase {
 public:
  LocalHandle(LocalProcManager* mgr, proc::ProcId id) : ProcHandleBase(std::move(id)), mgr_(mgr) {}

  absl::Notification& killed() { return killed_; }
  void set_runtime(std::weak_ptr<proc::ProcRuntime> rt) { runtime_ = std::move(rt); }

  // On the proc's thread, once its main returned.
  void Exited(int code) {
    ReleaseAgentLink();
    mgr_->procs_.Remove(proc_id().name(), this);
    (void)cell().Transition(ProcStatus::Stopped(code));  // refused if it was killed first
  }

 protected:
  bool RequestStop(absl::string_view reason) override { return SendAgentStop(*mgr_->loop_, reason); }
  void SignalTerm() override {}  // no signals in-process: the stop request is all there is
  void SignalKill() override {
    // Killed is recorded before the body is woken, so its exit cannot be taken for
    // a clean stop.
    mgr_->procs_.Remove(proc_id().name(), this);
    (void)cell().Transition(ProcStatus::Killed(SIGKILL, false));
    ReleaseAgentLink();
    if (!killed_.HasBeenNotified()) killed_.Notify();
    if (auto rt = runtime_.lock()) rt->RequestStop("killed");  // wakes a body waiting to be stopped
  }

 private:
  LocalProcManager* const mgr_;
  absl::Notification killed_;
  std::weak_ptr<proc::ProcRuntime> runtime_;
};

LocalProcManager::LocalProcManager(channel::ChannelAddr listen)
    : listen_(std::move(listen)), loop_(channel::EventLoop::Start("local-procs")) {}

LocalProcManager::~LocalProcManager() {
  for (auto& h : Procs()) (void)h->Kill();
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_threads_ == 0; };
  mu_.Await(absl::Condition(&done));  // local_main returns once killed (the contract)
}

std::vector<std::shared_ptr<ProcHandle>> LocalProcManager::Procs() const { return procs_.All(); }

TerminateSummary LocalProcManager::TerminateAll(absl::Duration grace, int max_in_flight, absl::string_view reason) {
  return TerminateHandles(Procs(), grace, max_in_flight, reason);
}

TerminateSummary LocalProcManager::KillAll(absl::Time deadline) { return KillHandles(Procs(), deadline); }

absl::StatusOr<std::shared_ptr<ProcHandle>> LocalProcManager::Spawn(const proc::ProcId& id,
                                                                    const channel::ChannelAddr& forwarder,
                                                                    const SpawnSpec& spec) {
  const std::string& name = id.name();
  if (!spec.user.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot spawn proc \"", name, "\": in-process procs run as hostd's user, not \"", spec.user, "\""));
  }
  if (spec.readiness != ReadinessMode::kHandshake) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot spawn proc \"", name, "\": in-process procs support handshake readiness only"));
  }
  if (spec.initial_state.has_value() && spec.initial_state->size() > proc::kMaxStateBytes) {
    return absl::InvalidArgumentError(absl::StrCat("cannot spawn proc \"", name, "\": initial state is ",
                                                   spec.initial_state->size(), " bytes; at most ", proc::kMaxStateBytes,
                                                   " allowed"));
  }
  if (!spec.limits.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("cannot spawn proc \"", name, "\": its limits (",
                                                      spec.limits.ToString(),
                                                      ") need a cgroup per proc, and in-process procs share hostd's"));
  }
  if (spec.liveness.enabled()) {
    return absl::FailedPreconditionError(absl::StrCat("cannot spawn proc \"", name, "\": its liveness check (",
                                                      spec.liveness.ToString(),
                                                      ") is for process procs; in-process procs share hostd's"));
  }
  auto handle = std::make_shared<LocalHandle>(this, id);
  if (absl::Status added = procs_.Add(name, handle); !added.ok()) return added;
  (void)handle->cell().Transition(ProcStatus::Running(0, absl::Now()));
  absl::StatusOr<std::unique_ptr<proc::ProcRuntime>> rt =
      proc::ProcRuntime::Start(*loop_, {id, listen_, forwarder, spec.initial_state});
  absl::Status setup = rt.ok() ? absl::OkStatus() : rt.status();
  if (setup.ok() && spec.local_setup) setup = spec.local_setup(**rt);
  if (!setup.ok()) {
    procs_.Remove(name, handle.get());
    (void)handle->cell().Transition(ProcStatus::Failed(std::string(setup.message())));
    return absl::Status(setup.code(), absl::StrCat("proc \"", name, "\" failed to start: ", setup.message()));
  }
  // The runtime is the handle's before anyone can see it Ready: a Kill from then on
  // (a watcher's, while Ready is delivered) must find it to stop.
  std::shared_ptr<proc::ProcRuntime> runtime = *std::move(rt);
  handle->set_runtime(runtime);
  absl::Status ready = handle->cell().Transition(ProcStatus::Ready(runtime->addr()));
  if (ProcStatus now = handle->status(); !ready.ok() || now.terminal()) {
    // Killed during setup, or by a watcher as Ready was delivered: the spawn did not
    // produce a live proc. Nothing runs its body; its runtime closes here.
    procs_.Remove(name, handle.get());
    runtime.reset();
    return absl::FailedPreconditionError(absl::StrCat(
        "proc \"", name, "\" ended ", ready.ok() ? "as it became ready: " : "before it was ready: ", now.ToString()));
  }
  auto main = spec.local_main;
  {
    absl::MutexLock lock(&mu_);
    ++running_threads_;
  }
  std::thread([this, handle, runtime, main]() mutable {
    int code = 0;
    if (main) {
      code = main(*runtime, handle->killed());
    } else {
      (void)runtime->WaitForStopRequest(absl::InfiniteFuture());  // a stop, or a kill, ends it
    }
    runtime.reset();  // stop serving before reporting the exit
    handle->Exited(code);
    handle.reset();  // nothing of the proc may touch the manager once it can be destroyed
    main = nullptr;
    absl::MutexLock lock(&mu_);
    --running_threads_;
  }).detach();
  return handle;
}

}  // namespace hostd::manager
