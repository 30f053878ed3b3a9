#include "testing/fake_proc_manager.h"

#include <csignal>

#include "absl/strings/str_cat.h"
#include "boost/asio/steady_timer.hpp"
#include "manager/proc_handle_base.h"

namespace hostd::testing {

using proc::ProcStatus;

class FakeHandle final : public manager::ProcHandleBase {
 public:
  FakeHandle(FakeProcManager* mgr, proc::ProcId id, FakeScript script)
      : ProcHandleBase(std::move(id)), mgr_(mgr), script_(std::move(script)) {}

  void End(ProcStatus s) {
    mgr_->procs_.Remove(proc_id().name(), this);
    (void)cell().Transition(std::move(s));
  }

 protected:
  bool RequestStop(absl::string_view) override {
    if (script_.ignores_stop) return true;
    End(ProcStatus::Stopped(0));
    return true;
  }
  void SignalTerm() override { End(ProcStatus::Killed(SIGTERM, false)); }
  void SignalKill() override { End(ProcStatus::Killed(SIGKILL, false)); }

 private:
  FakeProcManager* const mgr_;
  const FakeScript script_;
};

FakeProcManager::FakeProcManager() : loop_(channel::EventLoop::Start("fake-procs")) {}

FakeProcManager::~FakeProcManager() {
  for (auto& h : Procs()) (void)h->Kill();
  loop_.reset();  // drops scripted timers that have not fired
}

void FakeProcManager::Script(const std::string& name, FakeScript script) {
  absl::MutexLock lock(&mu_);
  scripts_[name] = std::move(script);
}

int FakeProcManager::spawn_count() const {
  absl::MutexLock lock(&mu_);
  return spawns_;
}

std::vector<std::shared_ptr<manager::ProcHandle>> FakeProcManager::Procs() const { return procs_.All(); }

manager::TerminateSummary FakeProcManager::TerminateAll(absl::Duration grace, int max_in_flight,
                                                        absl::string_view reason) {
  return manager::TerminateHandles(Procs(), grace, max_in_flight, reason);
}

manager::TerminateSummary FakeProcManager::KillAll(absl::Time deadline) {
  return manager::KillHandles(Procs(), deadline);
}

absl::StatusOr<std::shared_ptr<manager::ProcHandle>> FakeProcManager::Spawn(const proc::ProcId& id,
                                                                            const channel::ChannelAddr&,
                                                                            const manager::SpawnSpec& spec) {
  const std::string& name = id.name();
  FakeScript script;
  std::shared_ptr<FakeHandle> handle;
  channel::ChannelAddr addr = channel::ChannelAddr::Local(0);
  {
    absl::MutexLock lock(&mu_);
    ++spawns_;
    if (auto it = scripts_.find(name); it != scripts_.end()) script = it->second;
    addr = channel::ChannelAddr::Local(next_addr_++);
  }
  handle = std::make_shared<FakeHandle>(this, id, script);
  if (absl::Status added = procs_.Add(name, handle); !added.ok()) return added;
  (void)handle->cell().Transition(ProcStatus::Running(0, absl::Now()));
  auto apply = [handle, script, addr] {
    switch (script.outcome) {
      case FakeOutcome::kReadyAfter: (void)handle->cell().Transition(ProcStatus::Ready(addr)); break;
      case FakeOutcome::kReadyWithoutAddress: {
        ProcStatus ready;
        ready.state = proc::ProcState::kReady;
        (void)handle->cell().Transition(ready);
        break;
      }
      case FakeOutcome::kEndsBeforeReady: handle->End(script.terminal); break;
      case FakeOutcome::kChannelClosed: handle->End(ProcStatus::Failed("readiness channel closed")); break;
      case FakeOutcome::kNeverReady: break;
    }
  };
  if (script.delay <= absl::ZeroDuration()) {
    apply();
  } else {
    loop_->Post([this, apply, delay = script.delay] {
      auto timer = std::make_shared<boost::asio::steady_timer>(loop_->context(), absl::ToChronoNanoseconds(delay));
      timer->async_wait([timer, apply](boost::system::error_code ec) {
        if (!ec) apply();
      });
    });
  }
  absl::Time deadline =
      spec.ready_timeout > absl::ZeroDuration() ? absl::Now() + spec.ready_timeout : absl::InfiniteFuture();
  absl::Status ready = handle->Ready(deadline);
  if (ready.ok()) return handle;
  (void)handle->Kill();
  return absl::Status(ready.code(), absl::StrCat("proc \"", name, "\": ", ready.message()));
}

}  // namespace hostd::testing
