#include "daemon/host.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "base/log.h"
#include "base/quote.h"
#include "base/status_macros.h"
#include "daemon/lease_keeper.h"
#include "daemon/proc_table.h"
#include "daemon/supervision_controller.h"

namespace hostd::daemon {
namespace {

constexpr size_t kMaxLabels = 32;
constexpr size_t kMaxLabelBytes = 256;

absl::Status ValidateLabels(const Labels& labels) {
  if (labels.size() > kMaxLabels) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d labels given; at most %d are allowed", labels.size(), kMaxLabels));
  }
  for (const auto& [k, v] : labels) {
    if (k.empty() || k.size() > kMaxLabelBytes || v.size() > kMaxLabelBytes) {
      return absl::InvalidArgumentError(absl::StrFormat("label %s: keys must be 1-%d bytes and values at most %d bytes",
                                                        base::Quote(k), kMaxLabelBytes, kMaxLabelBytes));
    }
    if (k.find('\0') != std::string::npos || v.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("label ", base::Quote(k), ": keys and values must not contain a NUL byte"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateLeaseOwner(absl::string_view owner) {
  if (absl::Status s = proc::ProcId::ValidateName(owner); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("lease.owner: ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status ValidateLease(const Lease& lease) {
  HOSTD_RETURN_IF_ERROR(ValidateLeaseOwner(lease.owner));
  if (lease.ttl < kMinLeaseTtl || lease.ttl > kMaxLeaseTtl) {
    return absl::InvalidArgumentError(absl::StrCat("lease.ttl: ", absl::FormatDuration(lease.ttl), " is not within ",
                                                   absl::FormatDuration(kMinLeaseTtl), " to ",
                                                   absl::FormatDuration(kMaxLeaseTtl)));
  }
  return absl::OkStatus();
}

}  // namespace

Host::Host(manager::ProcManager& manager, manager::BulkTerminate& bulk, HostOptions options)
    : opts_(std::move(options)), started_at_(absl::Now()), loop_(channel::EventLoop::Start("host")) {
  router_ = std::make_unique<Router>(*loop_, Router::Options{.starting_buffer_messages = opts_.starting_buffer_messages,
                                                             .starting_buffer_bytes = opts_.starting_buffer_bytes,
                                                             .proc_link = opts_.proc_link,
                                                             .remote_link = opts_.remote_link,
                                                             .hold_until_adopted = opts_.hold_until_adopted});
  table_ = std::make_unique<ProcTable>(
      manager, bulk, *loop_, *router_,
      ProcTable::Options{.ended_procs_kept = opts_.ended_procs_kept, .max_live_procs = opts_.max_live_procs});
  controller_ = std::make_unique<SupervisionController>(
      *table_, *router_, *loop_,
      SupervisionController::Options{.stop_grace = opts_.supervisor_stop_grace,
                                     .threads = opts_.supervisor_threads,
                                     .saved_state_bytes = opts_.saved_state_bytes});
  table_->SetController(controller_.get());
  leases_ = std::make_unique<LeaseKeeper>(*table_, opts_.lease_grace);
}

absl::StatusOr<std::unique_ptr<Host>> Host::Start(manager::ProcManager& manager, manager::BulkTerminate& bulk,
                                                  HostOptions options) {
  std::unique_ptr<Host> host(new Host(manager, bulk, std::move(options)));
  auto fe = channel::Listener::Serve(*host->loop_, host->opts_.frontend, host->router_->frontend_receiver(),
                                     host->opts_.listener);
  if (!fe.ok()) return absl::Status(fe.status().code(), absl::StrCat("host frontend: ", fe.status().message()));
  host->frontend_ = *std::move(fe);
  auto be = channel::Listener::Serve(*host->loop_, host->opts_.backend, host->router_->backend_receiver(),
                                     host->opts_.listener);
  if (!be.ok()) return absl::Status(be.status().code(), absl::StrCat("host backend: ", be.status().message()));
  host->backend_ = *std::move(be);
  host->advertised_ = host->opts_.advertise.value_or(host->frontend_->addr());
  Host* h = host.get();
  // Before the first message can be routed: the listeners hand messages to the
  // loop, where this runs first.
  h->loop_->RunSync([h] {
    h->router_->SetAddresses(h->advertised_.ToString(), h->backend_->addr().ToString());
    h->controller_->Attach();
    h->router_->AddMailbox(kLivenessMailbox, [h](channel::Message m) { h->OnHeartbeat(m); });
  });
  h->table_->SetIdentity([h](absl::string_view name) { return h->IdOf(name); }, h->backend_->addr(),
                         h->advertised_.ToString());
  return host;
}

Host::~Host() {
  // Restart jobs first (a start under way finishes and its proc is killed), then
  // the exit monitors' statuses, then the message path.
  if (leases_) leases_->Shutdown();
  if (controller_) controller_->Shutdown();
  if (table_) table_->Shutdown();
  if (frontend_) frontend_->Close();
  if (backend_) backend_->Close();
  // Close every link on the loop; what they return is dropped.
  loop_->RunSync([this] { router_->Close(); });
  frontend_.reset();
  backend_.reset();
  leases_.reset();
  controller_.reset();
  table_.reset();
  // Done callbacks still queued run (and see the router closed) or are dropped with the loop.
  loop_.reset();
  router_.reset();
}

void Host::OnHeartbeat(const channel::Message& msg) {
  absl::string_view src = msg.src();
  const std::string own = advertised_.ToString();
  if (!absl::ConsumePrefix(&src, own) || !absl::ConsumePrefix(&src, ",")) return;
  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> h = table_->Handle(src);
  if (h.ok()) (*h)->Heartbeat();
}

void Host::SetRecorder(ProcRecorder recorder, GroupRecorder group_recorder) {
  table_->SetRecorder(std::move(recorder), std::move(group_recorder));
}

absl::Status Host::Adopt(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                         const Supervision& supervision, int incarnation, std::shared_ptr<manager::ProcHandle> handle,
                         std::optional<Lease> lease) {
  const bool leased = lease.has_value();
  absl::Status s =
      table_->Adopt(name, spec, std::move(labels), supervision, incarnation, std::move(handle), std::move(lease));
  if (leased) leases_->Wake();
  return s;
}

absl::Status Host::RestoreRestarting(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                                     const Supervision& supervision, int incarnation, const proc::ProcStatus& status,
                                     std::optional<Lease> lease) {
  const bool leased = lease.has_value();
  absl::Status s =
      table_->RestoreRestarting(name, spec, std::move(labels), supervision, incarnation, status, std::move(lease));
  if (leased) leases_->Wake();
  return s;
}

void Host::RestoreEnded(const std::string& name, const manager::SpawnSpec& spec, Labels labels, int incarnation,
                        const proc::ProcStatus& status) {
  table_->RestoreEnded(name, spec, std::move(labels), incarnation, status);
}

bool Host::RestoreMissedEnd(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                            const Supervision& supervision, int incarnation, const proc::ProcStatus& status,
                            std::optional<Lease> lease) {
  return table_->RestoreMissedEnd(name, spec, std::move(labels), supervision, incarnation, status, std::move(lease));
}

void Host::ApplyMissedEnds(const std::vector<std::string>& names) {
  table_->ApplyMissedEnds(names);
  leases_->Wake();  // the keeper learns of the restored procs' leases
}

size_t Host::Quiesce(absl::Time deadline) {
  if (frontend_) frontend_->Close();
  if (backend_) backend_->Close();
  while (true) {
    size_t left = 0;
    loop_->RunSync([&] { left = router_->Unacked(); });
    if (left == 0 || absl::Now() >= deadline) return left;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

void Host::Adopted() {
  // After the routes the adoption posted: the loop runs them in order.
  loop_->RunSync([this] { router_->Adopted(); });
}

const channel::ChannelAddr& Host::frontend() const { return advertised_; }
const channel::ChannelAddr& Host::bound_frontend() const { return frontend_->addr(); }
const channel::ChannelAddr& Host::backend() const { return backend_->addr(); }
uint64_t Host::incarnation() const { return frontend_->incarnation(); }

proc::ProcId Host::IdOf(absl::string_view name) const {
  absl::StatusOr<proc::ProcId> id = proc::ProcId::Create(advertised_, name);
  if (!id.ok()) {  // a programmer error: only validated names reach here
    base::Log().critical("IdOf({}): {}", name, id.status().ToString());
    std::abort();
  }
  return *std::move(id);
}

absl::StatusOr<ProcInfo> Host::Spawn(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                                     Supervision supervision, std::optional<Lease> lease) {
  if (absl::Status s = proc::ProcId::ValidateName(name); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("name: ", s.message()));
  }
  HOSTD_RETURN_IF_ERROR(ValidateLabels(labels));
  if (absl::Status s = manager::ValidateRestartPolicy(supervision.restart); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("proc \"", name, "\": ", s.message()));
  }
  if (!supervision.group.empty()) {
    if (absl::Status s = proc::ProcId::ValidateName(supervision.group); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("group: ", s.message()));
    }
  }
  if (lease) HOSTD_RETURN_IF_ERROR(ValidateLease(*lease));
  if (draining()) {
    return absl::FailedPreconditionError(absl::StrCat("host is draining: it takes no new spawns (proc \"", name,
                                                      "\" not started); `hostctl drain --off` ends the drain"));
  }
  const bool leased = lease.has_value();
  absl::StatusOr<ProcInfo> p = table_->Spawn(name, spec, std::move(labels), std::move(supervision), std::move(lease));
  if (leased) leases_->Wake();  // its deadline may be the earliest now
  return p;
}

absl::StatusOr<ProcTable::Renewal> Host::RenewLease(const std::string& owner) {
  HOSTD_RETURN_IF_ERROR(ValidateLeaseOwner(owner));
  return leases_->Renew(owner);
}

absl::StatusOr<uint64_t> Host::HoldLease(const std::string& owner) {
  HOSTD_RETURN_IF_ERROR(ValidateLeaseOwner(owner));
  return leases_->Hold(owner);
}

void Host::ReleaseLease(uint64_t id) { leases_->Release(id); }

bool Host::SetDraining(bool draining) { return draining_.exchange(draining); }

absl::Status Host::CreateGroup(const std::string& name, const GroupSpec& spec) {
  return controller_->CreateGroup(name, spec);
}
absl::Status Host::RemoveGroup(const std::string& name) { return controller_->RemoveGroup(name); }

absl::StatusOr<proc::ProcStatus> Host::Terminate(absl::string_view name, absl::Duration grace,
                                                 absl::string_view reason) {
  return table_->Stop(name, grace, reason, /*kill=*/false);
}
absl::StatusOr<proc::ProcStatus> Host::Kill(absl::string_view name) {
  return table_->Stop(name, absl::ZeroDuration(), "", /*kill=*/true);
}

absl::StatusOr<ProcInfo> Host::Restart(absl::string_view name, const RestartRequest& request) {
  return controller_->Restart(name, request);
}

void Host::Broadcast(const std::string& name, std::string data, const std::string& group,
                     absl::AnyInvocable<void(absl::StatusOr<BroadcastResult>)> done) {
  controller_->Broadcast(name, std::move(data), group, std::move(done));
}

std::vector<TreeNode> Host::Tree() const { return controller_->Tree(); }
absl::StatusOr<ProcInfo> Host::Get(absl::string_view name) const { return table_->Get(name); }
std::vector<ProcInfo> Host::List() const { return table_->List(); }
void Host::Visit(absl::FunctionRef<void(const ProcView&)> fn) const { table_->Visit(fn); }
absl::StatusOr<std::shared_ptr<manager::ProcHandle>> Host::Handle(absl::string_view name) const {
  return table_->Handle(name);
}

manager::TerminateSummary Host::TerminateChildren(absl::Duration grace, int max_in_flight, absl::string_view reason) {
  return table_->TerminateChildren(grace, max_in_flight, reason);
}

bool Host::StopSpawns(std::string why, absl::Time deadline, bool hand_over) {
  // No lease expires from here on: a hostd handing its procs over leaves their
  // leases to the next one (which re-arms them), and one shutting down ends them.
  leases_->Shutdown();
  return table_->StopSpawns(std::move(why), deadline, hand_over);
}

void Host::SendToProc(const std::string& name, const std::string& port, std::string payload, absl::Duration timeout,
                      absl::Duration reply_timeout, absl::AnyInvocable<void(absl::StatusOr<Reply>)> done) {
  router_->SendToProc(name, port, std::move(payload), timeout, reply_timeout, std::move(done));
}

uint64_t Host::Subscribe(EventFn fn, bool snapshot) { return table_->Subscribe(std::move(fn), snapshot); }
void Host::Unsubscribe(uint64_t id) { table_->Unsubscribe(id); }

HostCounters Host::counters() const {
  Router::Counters c = router_->counters();
  return {.forwarded = c.forwarded,
          .returned = c.returned,
          .dropped = c.dropped,
          .spawned = table_->spawned(),
          .lease_expirations = leases_->expirations()};
}

int Host::live_procs() const { return table_->live_procs(); }

Router::Counters Host::router_counters() const { return router_->counters(); }

std::array<Router::LinkTotals, Router::kLinkKinds> Host::link_stats() const {
  std::array<Router::LinkTotals, Router::kLinkKinds> out;
  loop_->RunSync([&] { out = router_->LinkStats(); });
  return out;
}

bool Host::Responsive(absl::Duration timeout) const {
  auto answered = std::make_shared<absl::Notification>();
  loop_->Post([answered] { answered->Notify(); });
  return answered->WaitForNotificationWithTimeout(timeout);
}

}  // namespace hostd::daemon
