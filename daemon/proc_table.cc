#include "daemon/proc_table.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "daemon/supervision_controller.h"

namespace hostd::daemon {

// Lets handle watchers (on manager threads) post to the loop while the table lives.
struct ProcTable::Gate {
  absl::Mutex mu;
  channel::EventLoop* loop ABSL_GUARDED_BY(mu) = nullptr;
  void Post(absl::AnyInvocable<void()> fn) {
    absl::MutexLock lock(&mu);
    if (loop != nullptr) loop->Post(std::move(fn));
  }
};

ProcTable::ProcTable(manager::ProcManager& manager, manager::BulkTerminate& bulk, channel::EventLoop& loop,
                     Router& router, Options options)
    : manager_(manager),
      bulk_(bulk),
      loop_(loop),
      router_(router),
      opts_(std::move(options)),
      gate_(std::make_shared<Gate>()) {
  absl::MutexLock lock(&gate_->mu);
  gate_->loop = &loop_;
}

ProcTable::~ProcTable() { Shutdown(); }

void ProcTable::SetIdentity(std::function<proc::ProcId(absl::string_view)> id_of, channel::ChannelAddr backend,
                            std::string host_name) {
  id_of_ = std::move(id_of);
  backend_ = std::move(backend);
  host_name_ = std::move(host_name);
}

void ProcTable::Shutdown() {
  {
    absl::MutexLock lock(&gate_->mu);
    gate_->loop = nullptr;
  }
  std::vector<std::pair<std::shared_ptr<manager::ProcHandle>, uint64_t>> watched;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    for (auto& [name, r] : records_) {
      if (r->handle) watched.emplace_back(r->handle, r->watch_id);
    }
  }
  for (auto& [h, id] : watched) h->Unwatch(id);
}

void ProcTable::ToRouter(absl::AnyInvocable<void(Router&)> fn) {
  loop_.Post([&router = router_, fn = std::move(fn)]() mutable { fn(router); });
}

absl::Status ProcTable::NotFound(absl::string_view name) const {
  return absl::NotFoundError(absl::StrCat("no proc named \"", name, "\" on host ", host_name_));
}

ProcRecord* ProcTable::Find(absl::string_view name, uint64_t gen) {
  auto it = records_.find(name);
  return it == records_.end() || it->second->gen != gen ? nullptr : it->second.get();
}

// ---- Spawning -----------------------------------------------------------------------

absl::StatusOr<ProcInfo> ProcTable::Spawn(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                                          Supervision supervision, std::optional<Lease> lease) {
  uint64_t gen;
  {
    absl::MutexLock lock(&mu_);
    if (!stopped_why_.empty()) {
      return absl::UnavailableError(absl::StrCat("host takes no new spawns: ", stopped_why_));
    }
    if (absl::Status s = supervisor_.CheckJoin(supervision.group); !s.ok()) return s;
    if (opts_.max_live_procs > 0) {
      size_t live = 0;
      for (const auto& [n, r] : records_) live += r->state != ProcRecord::State::kEnded;
      if (live >= opts_.max_live_procs) {
        return absl::ResourceExhaustedError(absl::StrCat("proc \"", name, "\" not spawned: the host already runs ",
                                                         live, " procs, its limit (hostd ",
                                                         "--max-procs); end some, or raise the limit"));
      }
    }
    auto it = records_.find(name);
    if (it != records_.end() && it->second->state == ProcRecord::State::kRestarting) {
      return absl::AlreadyExistsError(absl::StrCat("proc \"", name, "\" already exists (restarting as incarnation ",
                                                   it->second->incarnation + 1, "); pick another name"));
    }
    if (it != records_.end() && it->second->state != ProcRecord::State::kEnded) {
      // The exit monitor may know of the end before the loop applied it (a Kill
      // that just returned): the name is free then.
      ProcRecord& old = *it->second;
      if (old.handle == nullptr || !old.handle->status().terminal()) {
        return absl::AlreadyExistsError(
            absl::StrCat("proc \"", name, "\" already exists (", old.status.ToString(), "); pick another name"));
      }
    }
    if (it != records_.end()) SetSavedState(*it->second, std::nullopt);
    std::unique_ptr<ProcRecord> r = NewRecord(name, spec, std::move(labels), std::move(lease));
    gen = r->gen;
    records_[name] = std::move(r);
    supervisor_.AddProc(name, supervision);
    ++spawns_in_flight_;
    ToRouter([name, gen](Router& router) { router.Open(name, gen); });
    Publish(HostEvent::Kind::kSpawned, name, proc::ProcStatus::Starting());
  }

  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> handle = SpawnChecked(name, spec);
  if (!handle.ok()) {
    absl::MutexLock lock(&mu_);
    --spawns_in_flight_;
    if (Find(name, gen) != nullptr) {
      std::string why(handle.status().message());
      Publish(HostEvent{.kind = HostEvent::Kind::kSpawnFailed,
                        .name = name,
                        .status = proc::ProcStatus::Failed(why),
                        .incarnation = 1,
                        .detail = why});
      records_.erase(name);
      if (recorder_) recorder_(name, nullptr, nullptr, proc::ProcStatus::Failed(why));
      supervisor_.RemoveProc(name);
      ToRouter([name, gen, note = absl::StrCat("proc \"", name, "\" failed to start: ", why)](Router& router) {
        router.Abandon(name, gen, note);
      });
    }
    return handle.status();
  }
  std::shared_ptr<manager::ProcHandle> h = *handle;
  bool activated;
  {
    absl::MutexLock lock(&mu_);
    ProcRecord* r = Find(name, gen);
    activated = r != nullptr && Activate(*r, h);
  }
  if (!activated) {
    (void)h->Kill();
    absl::MutexLock lock(&mu_);
    --spawns_in_flight_;
    return absl::AbortedError(absl::StrCat("proc \"", name, "\" was stopped while it started"));
  }
  Follow(name, gen, h);
  spawned_.fetch_add(1, std::memory_order_relaxed);
  absl::MutexLock lock(&mu_);
  --spawns_in_flight_;
  if (ProcRecord* r = Find(name, gen)) return InfoOf(*r);
  // Ended, and its name taken again, meanwhile.
  return ProcInfo{
      .name = name, .id = id_of_(name), .status = h->status(), .program = spec.program, .args = spec.args, .handle = h};
}

absl::Status ProcTable::Adopt(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                              const Supervision& supervision, int incarnation,
                              std::shared_ptr<manager::ProcHandle> handle, std::optional<Lease> lease) {
  uint64_t gen;
  {
    absl::MutexLock lock(&mu_);
    if (records_.contains(name)) return absl::AlreadyExistsError(absl::StrCat("proc \"", name, "\" already exists"));
    std::unique_ptr<ProcRecord> r = NewRecord(name, spec, std::move(labels), std::move(lease));
    gen = r->gen;
    r->incarnation = incarnation;
    ProcRecord& rec = *r;
    records_[name] = std::move(r);
    supervisor_.AddProc(name, KnownGroupOnly(name, supervision));
    ToRouter([name, gen](Router& router) { router.Open(name, gen); });
    Publish(HostEvent::Kind::kSpawned, name, proc::ProcStatus::Starting());
    Activate(rec, handle);
  }
  Follow(name, gen, handle);
  return absl::OkStatus();
}

absl::Status ProcTable::RestoreRestarting(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                                          const Supervision& supervision, int incarnation,
                                          const proc::ProcStatus& status, std::optional<Lease> lease) {
  absl::MutexLock lock(&mu_);
  if (records_.contains(name)) return absl::AlreadyExistsError(absl::StrCat("proc \"", name, "\" already exists"));
  ProcRecord& rec = Restore(name, spec, std::move(labels), supervision, incarnation, status, std::move(lease));
  Publish(HostEvent::Kind::kSpawned, name, status);
  controller_->table_.mu_.AssertHeld();  // the controller works under this table's lock
  controller_->ResumeRestart(rec);
  return absl::OkStatus();
}

Supervision ProcTable::KnownGroupOnly(const std::string& name, Supervision supervision) const {
  if (absl::Status s = supervisor_.CheckJoin(supervision.group); !s.ok()) {
    base::Log().warn("proc={} re-adopted outside its group {}: {}", name, supervision.group, s.message());
    supervision.group.clear();
  }
  return supervision;
}

std::unique_ptr<ProcRecord> ProcTable::NewRecord(const std::string& name, const manager::SpawnSpec& spec,
                                                 Labels labels, std::optional<Lease> lease) {
  auto r = std::make_unique<ProcRecord>();
  r->name = name;
  r->id = id_of_(name);
  r->gen = next_gen_++;
  r->labels = std::move(labels);
  r->created_at = r->incarnation_started = absl::Now();
  r->spec = spec;
  r->lease = std::move(lease);
  if (r->lease) {
    r->lease->expires_at = r->created_at + r->lease->ttl;
    r->lease->expired = false;
  }
  return r;
}

ProcRecord& ProcTable::Restore(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                               const Supervision& supervision, int incarnation, const proc::ProcStatus& status,
                               std::optional<Lease> lease) {
  std::unique_ptr<ProcRecord> r = NewRecord(name, spec, std::move(labels), std::move(lease));
  r->incarnation = incarnation;
  r->SetStatus(status);
  ProcRecord& rec = *r;
  records_[name] = std::move(r);
  supervisor_.AddProc(name, KnownGroupOnly(name, supervision));
  ToRouter([name, gen = rec.gen](Router& router) { router.Open(name, gen); });
  return rec;
}

void ProcTable::EndRestored(ProcRecord& r) {
  r.stop_requested = true;
  EndRecord(r);
  Publish(HostEvent::Kind::kTransition, r.name, r.status);
}

void ProcTable::RestoreEnded(const std::string& name, const manager::SpawnSpec& spec, Labels labels, int incarnation,
                             const proc::ProcStatus& status) {
  absl::MutexLock lock(&mu_);
  if (records_.contains(name)) return;
  EndRestored(Restore(name, spec, std::move(labels), Supervision{}, incarnation, status, std::nullopt));
  ForgetEnded(opts_.ended_procs_kept);
}

bool ProcTable::RestoreMissedEnd(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                                 const Supervision& supervision, int incarnation, const proc::ProcStatus& status,
                                 std::optional<Lease> lease) {
  absl::MutexLock lock(&mu_);
  if (records_.contains(name)) return false;
  ProcRecord& rec = Restore(name, spec, std::move(labels), supervision, incarnation, status, std::move(lease));
  if (!supervisor_.Supervises(name)) {
    EndRestored(rec);
    return false;
  }
  // Restarting until ApplyMissedEnds decides: its route waits rather than bounces.
  rec.state = ProcRecord::State::kRestarting;
  return true;
}

void ProcTable::ApplyMissedEnds(const std::vector<std::string>& names) {
  absl::MutexLock lock(&mu_);
  absl::flat_hash_set<std::string> taken;  // by an earlier plan (a group restarts or ends its members together)
  for (const std::string& name : names) {
    auto it = records_.find(name);
    if (taken.contains(name) || it == records_.end() || it->second->state != ProcRecord::State::kRestarting) continue;
    ProcRecord& r = *it->second;
    Publish(HostEvent::Kind::kTransition, name, r.status);  // as a live proc's end: then the verdict
    controller_->table_.mu_.AssertHeld();  // the controller works under this table's lock
    std::vector<std::string> plan = controller_->OnMissedEnd(r);
    if (plan.empty()) {
      EndRecord(r);
      Persist(r);  // recorded ended
    }
    for (std::string& n : plan) taken.insert(std::move(n));
  }
  ForgetEnded(opts_.ended_procs_kept);
}

absl::StatusOr<std::shared_ptr<manager::ProcHandle>> ProcTable::SpawnChecked(const std::string& name,
                                                                             const manager::SpawnSpec& spec) {
  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> handle = manager_.Spawn(id_of_(name), backend_, spec);
  if (handle.ok() && spec.readiness == manager::ReadinessMode::kHandshake && !(*handle)->addr().has_value()) {
    // A proc that says it is ready but gives no address could never get a message.
    (void)(*handle)->Kill();
    handle = absl::FailedPreconditionError(
        absl::StrCat("proc \"", name, "\" reported ready without an address; it was killed"));
  }
  return handle;
}

bool ProcTable::Activate(ProcRecord& r, std::shared_ptr<manager::ProcHandle> handle) {
  if (r.state != ProcRecord::State::kStarting && r.state != ProcRecord::State::kRestarting) return false;
  r.handle = handle;
  r.state = ProcRecord::State::kLive;
  ToRouter([name = r.name, gen = r.gen, addr = handle->addr()](Router& router) { router.Activate(name, gen, addr); });
  return true;
}

// The gate drops what arrives after the table shut down; OnStatus runs on the loop.
void ProcTable::Follow(const std::string& name, uint64_t gen, const std::shared_ptr<manager::ProcHandle>& h) {
  uint64_t watch_id =
      h->Watch([this, gate = gate_, name,
                gen](const proc::ProcStatus& s) { gate->Post([this, name, gen, s] { OnStatus(name, gen, s); }); },
               proc::WatchFrom::kFirst);
  loop_.RunSync([] {});  // what Watch posted is applied
  absl::MutexLock lock(&mu_);
  if (ProcRecord* r = Find(name, gen)) {
    r->watch_id = watch_id;
  } else {
    h->Unwatch(watch_id);  // gone meanwhile: its statuses are ignored anyway
  }
}

void ProcTable::OnStatus(const std::string& name, uint64_t gen, const proc::ProcStatus& status) {
  loop_.AssertInLoop("ProcTable::OnStatus");
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  ProcRecord* r = Find(name, gen);
  // Starting was published as kSpawned (or kRestarting); an ended or restarting
  // record has applied this incarnation's end already.
  if (r == nullptr) return;
  const proc::ProcStatus stamped = WithLeaseReason(r->lease, status);
  if (status.state == proc::ProcState::kStarting || r->status == stamped || r->state == ProcRecord::State::kEnded ||
      r->state == ProcRecord::State::kRestarting) {
    return;
  }
  r->SetStatus(stamped);
  Publish(HostEvent::Kind::kTransition, name, stamped);
  if (status.state == proc::ProcState::kReady && std::exchange(r->announce_restart, false)) {
    Publish(HostEvent::Kind::kRestarted, name, status);
  }
  if (stamped.terminal()) {
    controller_->table_.mu_.AssertHeld();  // the controller works under this table's lock
    controller_->OnEnd(*r);                // ends it, or it restarts
    ForgetEnded(opts_.ended_procs_kept);
  }
}

void ProcTable::EndRecord(ProcRecord& r) {
  r.state = ProcRecord::State::kEnded;
  r.fate = ProcRecord::Fate::kNone;
  r.announce_restart = false;
  r.ended_seq = next_ended_seq_++;
  ended_order_.emplace_back(r.name, r.ended_seq);
  ToRouter([name = r.name, note = absl::StrCat("proc \"", r.name, "\" has ended: ", r.status.ToString())](
               Router& router) mutable { router.End(name, std::move(note)); });
}

void ProcTable::SetSavedState(ProcRecord& r, std::optional<std::string> state) {
  saved_state_total_ -= r.saved_state ? r.saved_state->size() : 0;
  r.saved_state = std::move(state);
  saved_state_total_ += r.saved_state ? r.saved_state->size() : 0;
}

void ProcTable::ForgetEnded(size_t keep) {
  size_t ended = 0;
  for (const auto& [n, r] : records_) ended += r->state == ProcRecord::State::kEnded;
  // The record an entry stands for, if it is still that end.
  auto current = [this](const std::pair<std::string, uint64_t>& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = records_.find(entry.first);
    return it != records_.end() && it->second->state == ProcRecord::State::kEnded &&
                   it->second->ended_seq == entry.second
               ? it
               : records_.end();
  };
  size_t i = 0;
  while (ended > keep && i < ended_order_.size()) {
    auto it = current(ended_order_[i++]);
    if (it == records_.end()) continue;
    Publish(HostEvent::Kind::kRemoved, it->first, it->second->status);
    SetSavedState(*it->second, std::nullopt);
    supervisor_.RemoveProc(it->first);
    ToRouter([name = it->first](Router& router) { router.Forget(name); });
    records_.erase(it);
    --ended;
  }
  ended_order_.erase(ended_order_.begin(), ended_order_.begin() + static_cast<std::ptrdiff_t>(i));
  // Every ended record has one current entry; past twice that, the stale go.
  if (ended_order_.size() > 2 * ended + 64) {
    std::erase_if(ended_order_, [&](const auto& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return current(entry) == records_.end();
    });
  }
}

// ---- Reading ------------------------------------------------------------------------

ProcInfo ProcTable::InfoOf(const ProcRecord& r) const {
  ProcInfo info{.id = *r.id};
  FillInfo(r, info);
  return info;
}

void ProcTable::FillInfo(const ProcRecord& r, ProcInfo& out) const {
  // A live proc's handle is fresher than the last status the loop applied. An end
  // read there that the loop has not applied yet is final when a stop was asked
  // for or nothing restarts the proc; otherwise its supervision has yet to decide,
  // and it shows as restarting until it has: never as an end that looks final for
  // a proc about to start again.
  const bool ended = r.state == ProcRecord::State::kEnded;
  const bool restarting = r.state == ProcRecord::State::kRestarting;
  out.name = r.name;
  out.id = *r.id;
  out.status = WithLeaseReason(r.lease, r.handle && !ended && !restarting ? r.handle->status() : r.status);
  const bool undecided =
      out.status.terminal() && !ended && !restarting && !r.stop_requested && supervisor_.Supervises(r.name);
  out.labels = r.labels;
  out.program = r.spec.program;
  out.args = r.spec.args;
  out.limits = r.spec.limits;
  out.created_at = r.created_at;
  out.handle = restarting ? nullptr : r.handle;
  out.incarnation = r.incarnation;
  out.incarnation_started = r.incarnation_started;
  const Supervision* sup = supervisor_.SupervisionOf(r.name);
  out.supervision = sup != nullptr ? *sup : Supervision{};
  out.groups = sup != nullptr ? supervisor_.PathOfGroup(sup->group) : std::vector<std::string>{};
  out.restarting = restarting || undecided;
  out.ended = ended;
  out.saved_state_bytes = r.saved_state ? r.saved_state->size() : 0;
  out.lease = r.lease;
  out.liveness = r.spec.liveness;
}

absl::StatusOr<ProcInfo> ProcTable::Get(absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  auto it = records_.find(name);
  if (it == records_.end()) return NotFound(name);
  return InfoOf(*it->second);
}

std::vector<ProcInfo> ProcTable::List() const {
  std::vector<ProcInfo> out;
  Visit([&](const ProcView& p) { out.push_back(p.info()); });
  return out;
}

ProcVersion ProcTable::VersionOf(const ProcRecord& r) const {
  const bool live_handle = r.handle && r.state != ProcRecord::State::kEnded &&
                           r.state != ProcRecord::State::kRestarting;
  return ProcVersion{
      .gen = r.gen,
      .state = r.state,
      .handle_status = live_handle ? r.handle->status_seq() : 0,
      .status_rev = r.status_rev,
      .stop_requested = r.stop_requested,
      .saved_state_bytes = r.saved_state ? r.saved_state->size() : 0,
      .lease_expires = r.lease ? r.lease->expires_at : absl::InfinitePast(),
      .lease_expired = r.lease && r.lease->expired,
  };
}

ProcVersion ProcView::current_version() const {
  table_.mu_.AssertHeld();  // a view lives inside Visit, under the lock
  return table_.VersionOf(r_);
}

const ProcVersion& ProcView::version() const {
  table_.mu_.AssertHeld();  // a view lives inside Visit, under the lock
  if (!version_.has_value()) version_ = table_.VersionOf(r_);
  return *version_;
}

const ProcInfo& ProcView::info() const {
  table_.mu_.AssertHeld();  // a view lives inside Visit, under the lock
  if (!filled_) {
    (void)version();  // first: what is derived from the info is never older than the version
    if (info_.has_value()) {
      table_.FillInfo(r_, *info_);
    } else {
      info_.emplace(table_.InfoOf(r_));
    }
    filled_ = true;
  }
  return *info_;
}

namespace {
// The cache lines of a record that VersionOf reads, asked for ahead of the read.
void PrefetchRecord(const ProcRecord& r) {
  for (const void* p : {static_cast<const void*>(&r.state), static_cast<const void*>(&r.status),
                        static_cast<const void*>(&r.handle), static_cast<const void*>(&r.lease)}) {
    __builtin_prefetch(p);
  }
}
}  // namespace

void ProcTable::Visit(absl::FunctionRef<void(const ProcView&)> fn) const {
  absl::MutexLock lock(&mu_);
  // The records are kept in name order. One info at a time, filled again for each
  // that is asked for, so a thousand of them (close to 1 KiB each) never sit in memory.
  std::optional<ProcInfo> info;
  for (auto it = records_.begin(); it != records_.end(); ++it) {
    // The records lie wherever they were allocated, and reading them is mostly
    // waiting for memory: the next one loads while this one is read.
    if (auto next = std::next(it); next != records_.end()) PrefetchRecord(*next->second);
    const ProcRecord& r = *it->second;
    fn(ProcView(*this, r, info));
  }
}

absl::StatusOr<std::shared_ptr<manager::ProcHandle>> ProcTable::Handle(absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  auto it = records_.find(name);
  if (it == records_.end()) return NotFound(name);
  if (!it->second->handle) {
    return absl::UnavailableError(absl::StrCat("proc \"", name, "\" is still starting; retry once it is ready"));
  }
  if (it->second->state == ProcRecord::State::kRestarting) {
    return absl::UnavailableError(absl::StrCat("proc \"", name, "\" is restarting; retry once it is ready"));
  }
  return it->second->handle;
}

int ProcTable::live_procs() const {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& [name, r] : records_) n += r->state != ProcRecord::State::kEnded;
  return n;  // restarting procs count: they will be live again
}

// ---- Stopping -----------------------------------------------------------------------

absl::StatusOr<proc::ProcStatus> ProcTable::Stop(absl::string_view name, absl::Duration grace, absl::string_view reason,
                                                 bool kill) {
  std::shared_ptr<manager::ProcHandle> h;
  {
    absl::MutexLock lock(&mu_);
    auto it = records_.find(name);
    if (it == records_.end()) return NotFound(name);
    ProcRecord& r = *it->second;
    if (r.state == ProcRecord::State::kEnded) {
      r.stop_requested = true;
      return r.status;
    }
    if (r.state == ProcRecord::State::kRestarting) {
      // No process to stop: it ends here (a start under way is killed by its job).
      r.stop_requested = true;
      r.SetStatus(WithLeaseReason(r.lease, r.status));
      EndRecord(r);
      Publish(HostEvent::Kind::kTerminated, r.name, r.status);
      return r.status;
    }
    if (r.state == ProcRecord::State::kStarting) {
      return absl::UnavailableError(absl::StrCat("proc \"", name, "\" is still starting; retry once it is ready"));
    }
    r.stop_requested = true;
    h = r.handle;
  }
  return kill ? h->Kill() : h->Terminate(grace, reason);
}

manager::TerminateSummary ProcTable::TerminateChildren(absl::Duration grace, int max_in_flight,
                                                       absl::string_view reason) {
  // No restart from here: waiting jobs wake and give up; a start under way is
  // awaited (bounded by its ready deadline; one that outlives the wait is killed
  // by its job when it returns).
  controller_->PauseRestarts(grace + absl::Seconds(5));
  manager::TerminateSummary summary = bulk_.TerminateAll(grace, max_in_flight, reason);
  // Watchers have posted every terminal status by now; let the loop apply them.
  loop_.RunSync([] {});
  absl::MutexLock lock(&mu_);
  for (auto& [n, r] : records_) {
    if (r->state == ProcRecord::State::kRestarting) EndRecord(*r);
  }
  ForgetEnded(0);
  controller_->table_.mu_.AssertHeld();  // the controller works under this table's lock
  controller_->ResumeRestarts();
  return summary;
}

bool ProcTable::StopSpawns(std::string why, absl::Time deadline, bool hand_over) {
  absl::MutexLock lock(&mu_);
  stopped_why_ = why.empty() ? "stopping" : std::move(why);
  handing_over_ = hand_over;
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    controller_->table_.mu_.AssertHeld();  // the controller works under this table's lock
    return spawns_in_flight_ == 0 && controller_->idle();
  };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

// ---- Leases -------------------------------------------------------------------------

namespace {
// A lease whose deadline counts: its proc is live or restarting, and it has not run out.
bool Counts(const ProcRecord& r) {
  return r.lease && !r.lease->expired &&
         (r.state == ProcRecord::State::kLive || r.state == ProcRecord::State::kRestarting);
}
}  // namespace

ProcTable::Renewal ProcTable::RenewLease(absl::string_view owner, absl::Time now) {
  absl::MutexLock lock(&mu_);
  Renewal out;
  for (auto& [name, r] : records_) {
    // A starting proc's lease is renewed too: it counts once the proc is live.
    bool starting = r->state == ProcRecord::State::kStarting && r->lease && !r->lease->expired;
    if ((!Counts(*r) && !starting) || r->lease->owner != owner) continue;
    r->lease->expires_at = now + r->lease->ttl;
    out.expires_at = std::min(out.expires_at, r->lease->expires_at);
    ++out.procs;
  }
  return out;
}

absl::Time ProcTable::NextLeaseExpiry() const {
  absl::MutexLock lock(&mu_);
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [name, r] : records_) {
    if (Counts(*r)) next = std::min(next, r->lease->expires_at);
  }
  return next;
}

std::vector<std::pair<std::string, Lease>> ProcTable::ExpireLeases(absl::Time now) {
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<std::string, Lease>> out;
  for (auto& [name, r] : records_) {
    if (!Counts(*r) || r->lease->expires_at > now) continue;
    r->lease->expired = true;
    r->stop_requested = true;  // an end from here on is for good
    out.emplace_back(name, *r->lease);
  }
  return out;
}

// ---- Events -------------------------------------------------------------------------

void ProcTable::Publish(HostEvent::Kind kind, const std::string& name, const proc::ProcStatus& status) {
  Publish(HostEvent{.kind = kind, .name = name, .status = status});
}

void ProcTable::Publish(HostEvent e) {
  e.seq = ++event_seq_;
  e.at = absl::Now();
  if (!e.is_group) {
    e.groups = supervisor_.GroupPath(e.name);
    auto it = records_.find(e.name);
    if (e.incarnation == 0 && it != records_.end()) e.incarnation = it->second->incarnation;
  }
  for (auto& [id, fn] : subscribers_) fn(e);
  if (recorder_ && !e.is_group) {
    auto it = records_.find(e.name);
    const bool gone = e.kind == HostEvent::Kind::kRemoved || it == records_.end();
    recorder_(e.name, gone ? nullptr : it->second.get(), gone ? nullptr : supervisor_.SupervisionOf(e.name), e.status);
  }
}

void ProcTable::Persist(const ProcRecord& r) {
  if (recorder_) recorder_(r.name, &r, supervisor_.SupervisionOf(r.name), r.status);
}

uint64_t ProcTable::Subscribe(EventFn fn, bool snapshot) {
  absl::MutexLock lock(&mu_);
  if (snapshot) {
    for (const auto& [name, r] : records_) {
      fn(HostEvent{.seq = event_seq_,
                   .kind = HostEvent::Kind::kSnapshot,
                   .name = name,
                   .status = r->status,
                   .at = absl::Now(),
                   .incarnation = r->incarnation,
                   .groups = supervisor_.GroupPath(name)});
    }
  }
  uint64_t id = next_subscriber_++;
  subscribers_.emplace_back(id, std::move(fn));
  return id;
}

void ProcTable::Unsubscribe(uint64_t id) {
  absl::MutexLock lock(&mu_);
  std::erase_if(subscribers_, [id](const auto& s) { return s.first == id; });
}

}  // namespace hostd::daemon
