#include "daemon/host.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "daemon/host_route.h"
#include "daemon/worker_pool.h"

namespace hostd::daemon {
namespace {

using channel::Message;
using channel::ReturnReason;

constexpr size_t kMaxLabels = 32;
constexpr size_t kMaxLabelBytes = 256;

absl::Status ValidateLabels(const Labels& labels) {
  if (labels.size() > kMaxLabels) {
    return absl::InvalidArgumentError(absl::StrFormat("%d labels given; at most %d are allowed", labels.size(), kMaxLabels));
  }
  for (const auto& [k, v] : labels) {
    if (k.empty() || k.size() > kMaxLabelBytes || v.size() > kMaxLabelBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "label \"%s\": keys must be 1-%d bytes and values at most %d bytes", absl::CHexEscape(k.substr(0, 64)),
          kMaxLabelBytes, kMaxLabelBytes));
    }
  }
  return absl::OkStatus();
}

}  // namespace


class Host::Router final : public channel::Receiver {
 public:
  Router(Host& host, bool frontend) : host_(host), frontend_(frontend) {}
  bool Deliver(Message& msg, const Wake& wake) override { return host_.RouteMessage(msg, wake, frontend_); }

 private:
  Host& host_;
  const bool frontend_;
};

Host::Host(manager::ProcManager& manager, manager::BulkTerminate& bulk, HostOptions options)
    : manager_(manager),
      bulk_(bulk),
      opts_(std::move(options)),
      started_at_(absl::Now()),
      loop_(channel::EventLoop::Start("host")),
      front_router_(std::make_unique<Router>(*this, true)),
      back_router_(std::make_unique<Router>(*this, false)),
      gate_(std::make_shared<Gate>()),
      jobs_(std::make_unique<WorkerPool>(std::max(1, opts_.supervisor_threads), 1u << 16)) {
  mailboxes_[kStateMailbox] = [this](Message m) { OnSavedState(std::move(m)); };
  absl::MutexLock lock(&gate_->mu);
  gate_->loop = loop_.get();
}

absl::StatusOr<std::unique_ptr<Host>> Host::Start(manager::ProcManager& manager, manager::BulkTerminate& bulk,
                                                  HostOptions options) {
  std::unique_ptr<Host> host(new Host(manager, bulk, std::move(options)));
  auto fe = channel::Listener::Serve(*host->loop_, host->opts_.frontend, *host->front_router_, host->opts_.listener);
  if (!fe.ok()) return absl::Status(fe.status().code(), absl::StrCat("host frontend: ", fe.status().message()));
  host->frontend_ = *std::move(fe);
  auto be = channel::Listener::Serve(*host->loop_, host->opts_.backend, *host->back_router_, host->opts_.listener);
  if (!be.ok()) return absl::Status(be.status().code(), absl::StrCat("host backend: ", be.status().message()));
  host->backend_ = *std::move(be);
  host->frontend_text_ = host->frontend_->addr().ToString();
  host->backend_text_ = host->backend_->addr().ToString();
  return host;
}

Host::~Host() {
  // Restart jobs first: they wake, see destroying_, and stop (a start already
  // under way finishes and its proc is killed).
  {
    absl::MutexLock lock(&mu_);
    destroying_ = true;
    restarts_paused_ = true;
  }
  jobs_.reset();
  {
    absl::MutexLock lock(&gate_->mu);
    gate_->loop = nullptr;
  }
  std::vector<std::pair<std::shared_ptr<manager::ProcHandle>, uint64_t>> watched;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [name, r] : routes_) {
      if (r->handle) watched.emplace_back(r->handle, r->watch_id);
    }
  }
  for (auto& [h, id] : watched) h->Unwatch(id);
  if (frontend_) frontend_->Close();
  if (backend_) backend_->Close();
  // Close every link on the loop; what they return is dropped (closing_).
  loop_->RunSync([this] {
    closing_ = true;
    std::vector<std::shared_ptr<channel::Sender>> links;
    {
      absl::MutexLock lock(&mu_);
      for (auto& [name, r] : routes_) {
        if (r->link) links.push_back(std::move(r->link));
      }
      routes_.clear();
    }
    for (auto& l : links) l->Close();
    for (auto& [addr, l] : remotes_) l->Close();
  });
  frontend_.reset();
  backend_.reset();
  remotes_.clear();
  // Done callbacks still queued run (and see closing_) or are dropped with the loop.
  loop_.reset();
}

const channel::ChannelAddr& Host::frontend() const { return frontend_->addr(); }
const channel::ChannelAddr& Host::backend() const { return backend_->addr(); }
uint64_t Host::incarnation() const { return frontend_->incarnation(); }

proc::ProcId Host::IdOf(absl::string_view name) const {
  absl::StatusOr<proc::ProcId> id = proc::ProcId::Create(frontend_->addr(), name);
  if (!id.ok()) {  // a programmer error: only validated names reach here
    base::Log().critical("IdOf({}): {}", name, id.status().ToString());
    std::abort();
  }
  return *std::move(id);
}

// ---- Spawning and the table -------------------------------------------------

absl::StatusOr<ProcInfo> Host::Spawn(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                                     Supervision supervision) {
  HOSTD_RETURN_IF_ERROR(proc::ProcId::ValidateName(name));
  HOSTD_RETURN_IF_ERROR(ValidateLabels(labels));
  if (absl::Status s = manager::ValidateRestartPolicy(supervision.restart); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("proc \"", name, "\": ", s.message()));
  }
  uint64_t gen;
  {
    absl::MutexLock lock(&mu_);
    if (!stopped_why_.empty()) {
      return absl::UnavailableError(absl::StrCat("host takes no new spawns: ", stopped_why_));
    }
    HOSTD_RETURN_IF_ERROR(supervisor_.CheckJoin(supervision.group));
    auto it = routes_.find(name);
    if (it != routes_.end() && it->second->state == Route::State::kRestarting) {
      return absl::AlreadyExistsError(absl::StrCat("proc \"", name, "\" already exists (restarting as incarnation ",
                                                   it->second->incarnation + 1, "); pick another name"));
    }
    if (it != routes_.end() && it->second->state != Route::State::kEnded) {
      // The exit monitor may know of the end before the loop applied it (a Kill
      // that just returned): the name is free then, and the old link goes.
      Route& old = *it->second;
      if (old.handle == nullptr || !old.handle->status().terminal()) {
        return absl::AlreadyExistsError(
            absl::StrCat("proc \"", name, "\" already exists (", old.status.ToString(), "); pick another name"));
      }
      if (old.link) loop_->Post([link = std::move(old.link)] { link->Close(); });
    }
    auto r = std::make_unique<Route>();
    r->name = name;
    r->gen = gen = next_gen_++;
    r->labels = std::move(labels);
    r->program = spec.program;
    r->args = spec.args;
    r->created_at = r->incarnation_started = absl::Now();
    r->spec = spec;
    if (it != routes_.end()) SetSavedState(*it->second, std::nullopt);
    routes_[name] = std::move(r);
    supervisor_.AddProc(name, supervision);
    ++spawns_in_flight_;
    Publish(HostEvent::Kind::kSpawned, name, proc::ProcStatus::Starting());
  }

  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> handle = SpawnChecked(name, spec);
  if (!handle.ok()) {
    loop_->RunSync([&] { Abandon(name, gen, handle.status()); });
    absl::MutexLock lock(&mu_);
    --spawns_in_flight_;
    return handle.status();
  }
  std::shared_ptr<manager::ProcHandle> h = *handle;
  loop_->RunSync([&] { Activate(name, gen, h); });
  uint64_t watch_id = WatchRoute(name, gen, *h);
  ProcInfo info{.name = name, .id = IdOf(name), .status = h->status(), .labels = {}, .program = {}, .args = {},
                .created_at = absl::Now(), .handle = h};
  {
    absl::MutexLock lock(&mu_);
    auto it = routes_.find(name);
    if (it != routes_.end() && it->second->gen == gen) {
      it->second->watch_id = watch_id;
      info = InfoOf(*it->second);
    }
    --spawns_in_flight_;
  }
  spawned_.fetch_add(1, std::memory_order_relaxed);
  return info;
}

absl::StatusOr<std::shared_ptr<manager::ProcHandle>> Host::SpawnChecked(const std::string& name,
                                                                        const manager::SpawnSpec& spec) {
  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> handle = manager_.Spawn(IdOf(name), backend(), spec);
  if (handle.ok() && spec.readiness == manager::ReadinessMode::kHandshake && !(*handle)->addr().has_value()) {
    // A proc that says it is ready but gives no address could never get a message.
    (void)(*handle)->Kill();
    handle = absl::FailedPreconditionError(
        absl::StrCat("proc \"", name, "\" reported ready without an address; it was killed"));
  }
  return handle;
}

// From here the route follows the exit monitor. The gate drops what arrives after
// the Host began to close; OnStatus runs on the loop, which the Host owns.
uint64_t Host::WatchRoute(const std::string& name, uint64_t gen, manager::ProcHandle& h) {
  return h.Watch([this, gate = gate_, name, gen](const proc::ProcStatus& s) {
    gate->Post([this, name, gen, s] { OnStatus(name, gen, s); });
  });
}

// Loop thread: the spawn failed; forget the route and return what waited for it.
void Host::Abandon(const std::string& name, uint64_t gen, const absl::Status& why) {
  Held held;
  {
    absl::MutexLock lock(&mu_);
    auto it = routes_.find(name);
    if (it == routes_.end() || it->second->gen != gen) return;
    held = std::move(it->second->buffer);
    Publish(HostEvent{.kind = HostEvent::Kind::kSpawnFailed, .name = name,
                      .status = proc::ProcStatus::Failed(std::string(why.message())), .incarnation = 1,
                      .detail = std::string(why.message())});
    routes_.erase(it);
    supervisor_.RemoveProc(name);
  }
  std::string note = absl::StrCat("proc \"", name, "\" failed to start: ", why.message());
  for (auto& [m, hook] : held) Return(std::move(m), ReturnReason::kProcExited, note);
}

// Loop thread: the proc is ready; open its link and flush what waited, in order.
// Runs before any later message is routed (both on the loop), so order holds.
// A proc may have ended already; its end is left to the watch that follows
// (OnStatus), so that OnStatus does not take it for a status it has seen.
void Host::Activate(const std::string& name, uint64_t gen, std::shared_ptr<manager::ProcHandle> handle) {
  Held held;
  std::shared_ptr<channel::Sender> link;
  {
    absl::MutexLock lock(&mu_);
    auto it = routes_.find(name);
    if (it == routes_.end() || it->second->gen != gen) return;
    Route& r = *it->second;
    if (r.state != Route::State::kStarting && r.state != Route::State::kRestarting) return;
    r.handle = handle;
    proc::ProcStatus now = handle->status();
    if (!now.terminal()) r.status = now;
    std::optional<channel::ChannelAddr> addr = handle->addr();
    if (addr.has_value()) {
      r.addr = addr;
      r.state = Route::State::kReady;
      if (!r.buffer.empty()) link = LinkOf(r);
    } else {
      r.state = Route::State::kNoAddress;
    }
    held = std::move(r.buffer);
    r.buffered_bytes = 0;
    r.buffer_front = 0;
    if (!now.terminal()) Publish(HostEvent::Kind::kTransition, name, r.status);
  }
  for (auto& [m, hook] : held) {
    if (link == nullptr) {
      Return(std::move(m), ReturnReason::kUnroutable, absl::StrCat("proc \"", name, "\" takes no messages"));
      continue;
    }
    // The buffer is smaller than a fresh link's queue, so this never waits.
    (void)Forward(*link, m, [] {}, name, gen, hook ? &hook : nullptr);
  }
}

// A proc's link is dialed when the first message for it arrives: most procs of a
// big host are never messaged, and an idle link costs memory.
std::shared_ptr<channel::Sender> Host::LinkOf(Route& r) {
  if (r.link == nullptr) {
    channel::SenderOptions o = opts_.proc_link;
    o.on_peer_restart = channel::OnPeerRestart::kReturn;
    r.link = channel::Sender::Dial(*loop_, *r.addr, o);
  }
  return r.link;
}

// Loop thread: a status from the proc's exit monitor.
void Host::OnStatus(const std::string& name, uint64_t gen, const proc::ProcStatus& status) {
  if (closing_) return;
  std::shared_ptr<channel::Sender> link;
  Bounce bounce;
  {
    absl::MutexLock lock(&mu_);
    auto it = routes_.find(name);
    if (it == routes_.end() || it->second->gen != gen) return;
    Route& r = *it->second;
    if (r.state == Route::State::kEnded || r.state == Route::State::kRestarting || r.status == status) return;
    r.status = status;
    Publish(HostEvent::Kind::kTransition, name, status);
    if (status.terminal()) {
      link = std::move(r.link);
      OnEnd(r, &bounce);  // ended, or restarting
      ForgetEnded(opts_.ended_procs_kept);
    }
  }
  // What is still queued comes back through ForwardFailed: as kProcExited, or
  // into the buffer of a restarting proc.
  if (link) link->Close();
  BounceAll(std::move(bounce));
}

bool Host::Live(const Route& r) const {
  return r.state == Route::State::kReady || r.state == Route::State::kNoAddress;
}

void Host::ForgetEnded(size_t keep) {
  size_t ended = 0;
  for (const auto& [n, r] : routes_) ended += r->state == Route::State::kEnded;
  size_t i = 0;
  while (ended > keep && i < ended_order_.size()) {
    auto it = routes_.find(ended_order_[i++]);
    if (it == routes_.end() || it->second->state != Route::State::kEnded) continue;
    Publish(HostEvent::Kind::kRemoved, it->first, it->second->status);
    SetSavedState(*it->second, std::nullopt);
    supervisor_.RemoveProc(it->first);
    routes_.erase(it);
    --ended;
  }
  ended_order_.erase(ended_order_.begin(), ended_order_.begin() + i);
}

ProcInfo Host::InfoOf(const Route& r) const {
  // A live proc's handle is fresher than the last status the loop applied.
  return ProcInfo{.name = r.name,
                  .id = IdOf(r.name),
                  .status = r.handle && r.state != Route::State::kEnded ? r.handle->status() : r.status,
                  .labels = r.labels,
                  .program = r.program,
                  .args = r.args,
                  .created_at = r.created_at,
                  .handle = r.state == Route::State::kRestarting ? nullptr : r.handle,
                  .incarnation = r.incarnation,
                  .incarnation_started = r.incarnation_started,
                  .supervision = supervisor_.SupervisionOf(r.name).value_or(Supervision{}),
                  .groups = supervisor_.GroupPath(r.name),
                  .restarting = r.state == Route::State::kRestarting,
                  .ended = r.state == Route::State::kEnded,
                  .saved_state_bytes = r.saved_state ? r.saved_state->size() : 0};
}

absl::StatusOr<ProcInfo> Host::Get(absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  auto it = routes_.find(name);
  if (it == routes_.end()) {
    return absl::NotFoundError(absl::StrCat("no proc named \"", name, "\" on host ", frontend_text_));
  }
  return InfoOf(*it->second);
}

std::vector<ProcInfo> Host::List() const {
  absl::MutexLock lock(&mu_);
  // Sorted by name; the routes are sorted, not the (much bigger) infos.
  std::vector<const Route*> sorted;
  sorted.reserve(routes_.size());
  for (const auto& [n, r] : routes_) sorted.push_back(r.get());
  std::sort(sorted.begin(), sorted.end(), [](const Route* a, const Route* b) { return a->name < b->name; });
  std::vector<ProcInfo> out;
  out.reserve(sorted.size());
  for (const Route* r : sorted) out.push_back(InfoOf(*r));
  return out;
}

absl::StatusOr<std::shared_ptr<manager::ProcHandle>> Host::Handle(absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  auto it = routes_.find(name);
  if (it == routes_.end()) {
    return absl::NotFoundError(absl::StrCat("no proc named \"", name, "\" on host ", frontend_text_));
  }
  if (!it->second->handle) {
    return absl::UnavailableError(absl::StrCat("proc \"", name, "\" is still starting; retry once it is ready"));
  }
  if (it->second->state == Route::State::kRestarting) {
    return absl::UnavailableError(absl::StrCat("proc \"", name, "\" is restarting; retry once it is ready"));
  }
  return it->second->handle;
}

absl::StatusOr<proc::ProcStatus> Host::Terminate(absl::string_view name, absl::Duration grace,
                                                 absl::string_view reason) {
  return Stop(name, grace, reason, /*kill=*/false);
}

absl::StatusOr<proc::ProcStatus> Host::Kill(absl::string_view name) {
  return Stop(name, absl::ZeroDuration(), "", /*kill=*/true);
}

absl::StatusOr<proc::ProcStatus> Host::Stop(absl::string_view name, absl::Duration grace, absl::string_view reason,
                                            bool kill) {
  std::shared_ptr<manager::ProcHandle> h;
  {
    absl::MutexLock lock(&mu_);
    auto it = routes_.find(name);
    if (it == routes_.end()) {
      return absl::NotFoundError(absl::StrCat("no proc named \"", name, "\" on host ", frontend_text_));
    }
    Route& r = *it->second;
    r.stop_requested = true;
    if (r.state == Route::State::kEnded) return r.status;
    if (r.state == Route::State::kRestarting) {
      // No process to stop: it ends here (a start under way is killed by its job).
      EndSoon(r);
      Publish(HostEvent::Kind::kTerminated, r.name, r.status);
      return r.status;
    }
    if (!r.handle) {
      r.stop_requested = false;
      return absl::UnavailableError(absl::StrCat("proc \"", name, "\" is still starting; retry once it is ready"));
    }
    h = r.handle;
  }
  return kill ? h->Kill() : h->Terminate(grace, reason);
}

int Host::live_procs() const {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& [name, r] : routes_) n += r->state != Route::State::kEnded;
  return n;  // restarting procs count: they will be live again
}

manager::TerminateSummary Host::TerminateChildren(absl::Duration grace, int max_in_flight,
                                                  absl::string_view reason) {
  // No restart from here: waiting jobs wake and give up; a start under way is
  // awaited (bounded by its ready deadline; one that outlives the wait is killed
  // by its job when it returns).
  {
    absl::MutexLock lock(&mu_);
    restarts_paused_ = true;
    ++restart_epoch_;
    for (auto& [n, r] : routes_) r->stop_requested = true;
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return restarts_in_flight_ == 0; };
    mu_.AwaitWithTimeout(absl::Condition(&idle), grace + absl::Seconds(5));
  }
  manager::TerminateSummary summary = bulk_.TerminateAll(grace, max_in_flight, reason);
  // Watchers have posted every terminal status by now; let the loop apply them.
  loop_->RunSync([&] {
    Bounce bounce;
    {
      absl::MutexLock lock(&mu_);
      for (auto& [n, r] : routes_) {
        if (r->state == Route::State::kRestarting) EndRoute(*r, &bounce);
      }
    }
    BounceAll(std::move(bounce));
  });
  absl::MutexLock lock(&mu_);
  ForgetEnded(0);
  restarts_paused_ = false;
  return summary;
}

bool Host::StopSpawns(std::string why, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  stopped_why_ = why.empty() ? "stopping" : std::move(why);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return spawns_in_flight_ == 0 && restarts_in_flight_ == 0;
  };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

// ---- Events ------------------------------------------------------------------

void Host::Publish(HostEvent::Kind kind, const std::string& name, const proc::ProcStatus& status) {
  Publish(HostEvent{.kind = kind, .name = name, .status = status});
}

void Host::Publish(HostEvent e) {
  e.seq = ++event_seq_;
  e.at = absl::Now();
  if (!e.is_group) {
    e.groups = supervisor_.GroupPath(e.name);
    auto it = routes_.find(e.name);
    if (e.incarnation == 0 && it != routes_.end()) e.incarnation = it->second->incarnation;
  }
  for (auto& [id, fn] : subscribers_) fn(e);
}

uint64_t Host::Subscribe(EventFn fn, bool snapshot) {
  absl::MutexLock lock(&mu_);
  if (snapshot) {
    for (const auto& [name, r] : routes_) {
      fn(HostEvent{.seq = event_seq_, .kind = HostEvent::Kind::kSnapshot, .name = name, .status = r->status,
                   .at = absl::Now(), .incarnation = r->incarnation, .groups = supervisor_.GroupPath(name)});
    }
  }
  uint64_t id = next_subscriber_++;
  subscribers_.emplace_back(id, std::move(fn));
  return id;
}

void Host::Unsubscribe(uint64_t id) {
  absl::MutexLock lock(&mu_);
  std::erase_if(subscribers_, [id](const auto& s) { return s.first == id; });
}

HostCounters Host::counters() const {
  return {.forwarded = forwarded_.load(), .returned = returned_.load(), .dropped = dropped_.load(),
          .spawned = spawned_.load()};
}

}  // namespace hostd::daemon
