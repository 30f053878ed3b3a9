#include "daemon/host_service.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/log.h"
#include "boost/asio/steady_timer.hpp"
#include "daemon/proto_convert.h"
#include "daemon/unparsed_request.h"
#include "daemon/unary_call.h"

namespace hostd::daemon {
namespace {

constexpr absl::Duration kDefaultGrace = absl::Seconds(10);
constexpr int kDefaultTerminateInFlight = 64;
constexpr int kDefaultSpawnInFlight = 16;
constexpr int kMaxSpawnInFlight = 256;
// A call this many entries long leaves enough freed heap behind to trim.
constexpr size_t kLargeCall = 256;

// Keeps a bulk reply under its byte budget: Take(m) counts m in if it fits.
class ReplyBudget {
 public:
  explicit ReplyBudget(size_t bytes) : left_(bytes) {}
  bool Take(const google::protobuf::Message& m) {
    size_t cost = Cost(m);
    if (cost > left_) return false;
    left_ -= cost;
    return true;
  }

 private:
  static size_t Cost(const google::protobuf::Message& m) { return m.ByteSizeLong() + 8; }  // + tag and length
  size_t left_;
};

size_t CountNodes(const std::vector<TreeNode>& nodes) {
  size_t n = nodes.size();
  for (const TreeNode& c : nodes) n += CountNodes(c.children);
  return n;
}

// Adds `n` to `to` and then as many of its descendants as the budget admits, depth
// first; counts the nodes left out (one that does not fit, with its descendants).
void AddWithinBudget(const TreeNode& n, absl::Time now, ReplyBudget& budget,
                     google::protobuf::RepeatedPtrField<v1::TreeNode>* to, int64_t& omitted) {
  v1::TreeNode node;
  ToProto(n, now, &node);
  if (!budget.Take(node)) {
    omitted += static_cast<int64_t>(1 + CountNodes(n.children));
    return;
  }
  v1::TreeNode* added = to->Add();
  *added = std::move(node);
  for (const TreeNode& c : n.children) AddWithinBudget(c, now, budget, added->mutable_children(), omitted);
}

absl::StatusOr<Supervision> SupervisionFrom(const v1::SpawnProcRequest& req) {
  // Host::Spawn checks the policy's limits and the group's name.
  absl::StatusOr<manager::RestartPolicy> restart = FromProto(req.restart(), req.has_restart());
  if (!restart.ok()) return restart.status();
  return Supervision{.restart = *restart, .group = req.group()};
}

// Host::Spawn checks the owner and the TTL's bounds.
absl::StatusOr<std::optional<Lease>> LeaseFrom(const v1::SpawnProcRequest& req) {
  if (!req.has_lease()) return std::nullopt;
  absl::StatusOr<absl::Duration> ttl =
      FromProto(req.lease().ttl(), req.lease().has_ttl(), absl::ZeroDuration(), "lease.ttl");
  if (!ttl.ok()) return ttl.status();
  return Lease{.owner = req.lease().owner(), .ttl = *ttl};
}

absl::StatusOr<std::shared_ptr<manager::ProcHandle>> HandleFor(Host& host, absl::string_view name) {
  absl::Status valid = ValidateName(name);
  if (!valid.ok()) return valid;
  return host.Handle(name);
}

// The Proc for `name` after an operation on it, falling back to `status`.
void FillProc(Host& host, absl::string_view name, const proc::ProcStatus& status, v1::Proc* out) {
  absl::StatusOr<ProcInfo> info = host.Get(name);
  if (info.ok()) {
    info->status = WithLeaseReason(info->lease, status);
    ToProto(*info, out);
  } else {
    out->set_name(std::string(name));
    ToProto(status, out->mutable_status());
  }
}

// Fails the wait with DEADLINE_EXCEEDED after `timeout` (none if infinite).
void ArmWaitTimeout(channel::EventLoop& timers, const UnaryCall<v1::Proc>::StatePtr& st, absl::Duration timeout,
                    std::string what) {
  if (timeout == absl::InfiniteDuration()) return;
  auto timer = std::make_shared<boost::asio::steady_timer>(timers.context());
  timer->expires_after(absl::ToChronoNanoseconds(timeout));
  timer->async_wait([st, what = std::move(what), timer](const boost::system::error_code& ec) {
    if (ec) return;
    UnaryCall<v1::Proc>::Complete(st, absl::DeadlineExceededError(what));
  });
  UnaryCall<v1::Proc>::OnDoneRun(st, [loop = &timers, timer] { loop->Post([timer] { timer->cancel(); }); });
}

// WaitProc with for_good: answers once the Host has ended the proc for good (it
// will not be restarted), or forgotten it. Every event about the proc triggers a
// look at it on `timers`, off the Host's locks (events are published under them,
// after the Host has decided what the end means); one look follows the
// subscription, so an end before it is not missed.
grpc::ServerUnaryReactor* WaitForGood(Host& host, channel::EventLoop& timers, const std::string& name,
                                      absl::Duration timeout, v1::Proc* resp) {
  absl::StatusOr<ProcInfo> first = host.Get(name);
  auto* call = new UnaryCall<v1::Proc>(resp);
  auto st = call->state();
  if (!first.ok()) {
    UnaryCall<v1::Proc>::Complete(st, first.status());
    return call;
  }
  // `removed`: the status the proc was forgotten with.
  auto look = [&host, st, name, created = first->created_at](std::optional<proc::ProcStatus> removed) {
    absl::StatusOr<ProcInfo> now = host.Get(name);
    if (now.ok() && now->created_at == created) {
      if (now->ended) UnaryCall<v1::Proc>::Complete(st, absl::OkStatus(), [&](v1::Proc& out) { ToProto(*now, &out); });
    } else if (removed) {
      UnaryCall<v1::Proc>::Complete(st, absl::OkStatus(), [&](v1::Proc& out) {
        out.set_name(name);
        ToProto(*removed, out.mutable_status());
      });
    }
  };
  uint64_t sub = host.Subscribe(
      [&timers, name, look](const HostEvent& e) {
        if (e.is_group || e.name != name) return;
        std::optional<proc::ProcStatus> removed;
        if (e.kind == HostEvent::Kind::kRemoved) removed = e.status;
        timers.Post([look, removed] { look(removed); });
      },
      /*snapshot=*/false);
  UnaryCall<v1::Proc>::OnDoneRun(st, [&host, sub] { host.Unsubscribe(sub); });
  timers.Post([look] { look(std::nullopt); });
  ArmWaitTimeout(timers, st, timeout, absl::StrCat("proc \"", name, "\" had not ended for good by the timeout"));
  return call;
}

}  // namespace

HostService::HostService(Host& host, HostServiceOptions options)
    : host_(host),
      opts_(std::move(options)),
      listing_(host_),
      watch_budget_(std::make_shared<WatchBudget>(opts_.max_watch_streams, opts_.max_watch_bytes)),
      timers_(channel::EventLoop::Start("grpc-timers")),
      pool_(opts_.workers, opts_.max_queued_calls) {}

HostService::~HostService() = default;


void HostService::Authorize(grpc::CallbackServerContext& ctx, manager::SpawnSpec& spec) const {
  opts_.exec_policy.Arm(CallerOf(ctx).identity, spec);
}

void HostService::TrimSoon() {
  if (trim_armed_.exchange(true)) return;
  auto timer = std::make_shared<boost::asio::steady_timer>(timers_->context());
  timers_->Post([this, timer] {
    // Late enough that gRPC has freed the call's request and reply.
    timer->expires_after(std::chrono::seconds(1));
    timer->async_wait([this, timer](const boost::system::error_code& ec) {
      trim_armed_.store(false);
      if (ec) return;
      int released = malloc_trim(0);
      base::Log().debug("heap trimmed after a large call (memory released: {})", released != 0);
    });
  });
}

grpc::ServerUnaryReactor* HostService::SpawnProc(grpc::CallbackServerContext* ctx, const v1::SpawnProcRequest* req,
                                                 v1::SpawnProcResponse* resp) {
  // The name, labels and policy are Host::Spawn's to check; here only what the
  // request's fields must be to convert.
  absl::StatusOr<manager::SpawnSpec> spec = FromProto(req->spec());
  if (spec.ok()) Authorize(*ctx, *spec);
  absl::StatusOr<Supervision> sup = SupervisionFrom(*req);
  absl::StatusOr<std::optional<Lease>> lease = LeaseFrom(*req);
  absl::Status valid = !spec.ok() ? spec.status() : !sup.ok() ? sup.status() : lease.status();
  Caller who = CallerOf(*ctx);
  base::LogEvent(spdlog::level::info, "spawn requested",
                 {{"proc", req->name()},
                  {"program", req->spec().program()},
                  {"uid", who.uid},
                  {"caller_pid", who.pid},
                  {"peer", who.peer},
                  {"identity", who.identity}});
  if (!valid.ok()) {
    if (opts_.on_spawn_done) opts_.on_spawn_done(valid);
    return Answer<v1::SpawnProcResponse>(ctx, valid);
  }
  Labels labels(req->labels().begin(), req->labels().end());
  return OnPool<v1::SpawnProcResponse>(
      pool_, resp,
      [this, name = req->name(), spec = *std::move(spec), labels, sup = *sup,
       lease = *std::move(lease)](v1::SpawnProcResponse& out) {
        absl::StatusOr<ProcInfo> p = host_.Spawn(name, spec, labels, sup, lease);
        if (opts_.on_spawn_done) opts_.on_spawn_done(p.status());
        if (!p.ok()) return p.status();
        ToProto(*p, out.mutable_proc());
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* HostService::SpawnProcs(grpc::CallbackServerContext* ctx, const v1::SpawnProcsRequest* req,
                                                  v1::SpawnProcsResponse* resp) {
  struct One {
    std::string name;
    absl::StatusOr<manager::SpawnSpec> spec;
    Labels labels;
    Supervision sup;
    std::optional<Lease> lease;
  };
  if (static_cast<size_t>(req->procs_size()) >= kLargeCall) TrimSoon();  // the request's memory, once gRPC frees it
  if (static_cast<size_t>(req->procs_size()) > opts_.max_spawn_batch) {
    return Answer<v1::SpawnProcsResponse>(
        ctx, absl::ResourceExhaustedError(absl::StrFormat(
                 "SpawnProcs: %d entries is over the limit of %d per request (hostd --max-spawn-batch); "
                 "send them in batches",
                 req->procs_size(), opts_.max_spawn_batch)));
  }
  std::optional<RankVars> ranks;
  if (req->has_ranks()) {
    absl::StatusOr<RankVars> r = FromProto(req->ranks(), req->procs_size());
    if (!r.ok()) return Answer<v1::SpawnProcsResponse>(ctx, r.status());
    ranks = *std::move(r);
  }
  auto all = std::make_shared<std::vector<One>>();
  all->reserve(req->procs_size());
  for (const v1::SpawnProcRequest& r : req->procs()) {
    absl::StatusOr<manager::SpawnSpec> spec = FromProto(r.spec());
    if (spec.ok() && ranks) {
      if (absl::Status s = AddRankVars(*ranks, static_cast<int>(all->size()), *spec); !s.ok()) spec = s;
    }
    if (spec.ok()) Authorize(*ctx, *spec);
    absl::StatusOr<Supervision> sup = SupervisionFrom(r);
    if (!sup.ok()) spec = sup.status();
    absl::StatusOr<std::optional<Lease>> lease = LeaseFrom(r);
    if (!lease.ok()) spec = lease.status();
    all->push_back({r.name(), std::move(spec), Labels(r.labels().begin(), r.labels().end()),
                    sup.value_or(Supervision{}), lease.value_or(std::nullopt)});
  }
  if (req->max_in_flight() < 0) {
    return Answer<v1::SpawnProcsResponse>(ctx, absl::InvalidArgumentError("max_in_flight: must not be negative"));
  }
  int in_flight = std::min(req->max_in_flight() == 0 ? kDefaultSpawnInFlight : req->max_in_flight(), kMaxSpawnInFlight);
  Caller who = CallerOf(*ctx);
  base::LogEvent(spdlog::level::info, "spawns requested",
                 {{"count", req->procs_size()},
                  {"uid", who.uid},
                  {"caller_pid", who.pid},
                  {"peer", who.peer},
                  {"identity", who.identity}});
  return OnPool<v1::SpawnProcsResponse>(pool_, resp, [this, all, in_flight](v1::SpawnProcsResponse& out) {
    ReplyBudget budget(opts_.reply_budget_bytes);
    std::vector<v1::SpawnResult> results(all->size());
    std::atomic<size_t> next{0};
    auto run = [&] {
      for (size_t i = next++; i < all->size(); i = next++) {
        One& one = (*all)[i];
        v1::SpawnResult& r = results[i];
        r.set_name(one.name);
        absl::StatusOr<ProcInfo> p = one.spec.ok() ? host_.Spawn(one.name, *one.spec, one.labels, one.sup, one.lease)
                                                   : absl::StatusOr<ProcInfo>(one.spec.status());
        if (opts_.on_spawn_done) opts_.on_spawn_done(p.status());
        r.set_code(static_cast<int>(p.status().code()));
        if (p.ok()) {
          ToProto(*p, r.mutable_proc());
        } else {
          r.set_error(std::string(p.status().message()));
        }
      }
    };
    std::vector<std::thread> threads;
    int n = std::min<int>(in_flight, static_cast<int>(all->size()));
    for (int i = 1; i < n; ++i) threads.emplace_back(run);
    run();
    for (std::thread& t : threads) t.join();
    for (v1::SpawnResult& r : results) {
      (r.code() == 0 ? out.set_ok(out.ok() + 1) : out.set_failed(out.failed() + 1));
      if (!budget.Take(r)) {
        bool had_proc = r.has_proc();
        r.clear_proc();  // name, code and error still fit, maybe
        if (!budget.Take(r)) {
          out.set_results_omitted(out.results_omitted() + 1);
          continue;
        }
        if (had_proc) out.set_details_omitted(out.details_omitted() + 1);
      }
      *out.add_results() = std::move(r);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* HostService::GetProc(grpc::CallbackServerContext* ctx, const v1::GetProcRequest* req,
                                               v1::Proc* resp) {
  absl::Status valid = ValidateName(req->name());
  if (!valid.ok()) return Answer<v1::Proc>(ctx, valid);
  absl::StatusOr<ProcInfo> p = host_.Get(req->name());
  if (p.ok()) {
    ToProto(*p, resp);
    if (opts_.deaths != nullptr) {
      for (const ProcEnd& e : opts_.deaths->Of(req->name())) ToProto(e, resp->add_recent_ends());
    }
  }
  return Answer<v1::Proc>(ctx, p.status());
}

grpc::ServerUnaryReactor* HostService::ListProcs(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req_bytes,
                                                 grpc::ByteBuffer* resp) {
  absl::Time start = absl::Now();
  v1::ListProcsRequest req;
  std::vector<grpc::Slice> slices;
  std::string body;
  const bool dumped = req_bytes->Dump(&slices).ok();
  for (const grpc::Slice& sl : slices) body.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  if (!dumped || !req.ParseFromString(body)) {
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(UnparsedRequestStatus("/hostd.v1.HostService/ListProcs"));
    return r;
  }
  ProcListing::Reply reply = listing_.List(req, opts_.reply_budget_bytes);
  if (reply.walked >= kLargeCall) TrimSoon();
  // The reply's bytes move into the slice: no copy.
  auto* bytes = new std::string(std::move(reply.bytes));
  grpc::Slice slice(bytes->data(), bytes->size(), [](void* p) { delete static_cast<std::string*>(p); }, bytes);
  *resp = grpc::ByteBuffer(&slice, 1);
  // What the call cost this server (serialization included: the reply is bytes
  // already), for clients and benchmarks.
  ctx->AddTrailingMetadata("hostd-server-time-us", std::to_string(absl::ToInt64Microseconds(absl::Now() - start)));
  return Answer<v1::ListProcsResponse>(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* HostService::WaitProc(grpc::CallbackServerContext* ctx, const v1::WaitProcRequest* req,
                                                v1::Proc* resp) {
  absl::StatusOr<absl::Duration> timeout =
      FromProto(req->timeout(), req->has_timeout(), absl::InfiniteDuration(), "timeout");
  if (timeout.ok() && req->for_good()) {
    absl::Status valid = ValidateName(req->name());
    if (!valid.ok()) return Answer<v1::Proc>(ctx, valid);
    return WaitForGood(host_, *timers_, req->name(), *timeout, resp);
  }
  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> handle =
      timeout.ok() ? HandleFor(host_, req->name()) : timeout.status();
  if (!handle.ok()) {
    // An ended proc whose handle the host no longer needs still has its status.
    absl::StatusOr<ProcInfo> p = host_.Get(req->name());
    if (p.ok() && p->status.terminal()) {
      ToProto(*p, resp);
      return Answer<v1::Proc>(ctx, absl::OkStatus());
    }
    return Answer<v1::Proc>(ctx, handle.status());
  }
  auto* call = new UnaryCall<v1::Proc>(resp);
  auto st = call->state();
  std::string name = req->name();
  std::shared_ptr<manager::ProcHandle> h = *handle;
  auto on_status = [this, st, name](const proc::ProcStatus& s) {
    if (!s.terminal()) return;
    UnaryCall<v1::Proc>::Complete(st, absl::OkStatus(), [&](v1::Proc& out) { FillProc(host_, name, s, &out); });
  };
  uint64_t watch = h->Watch(on_status);
  UnaryCall<v1::Proc>::OnDoneRun(st, [h, watch] { h->Unwatch(watch); });
  ArmWaitTimeout(*timers_, st, *timeout, absl::StrCat("proc \"", name, "\" had not ended by the timeout"));
  return call;
}

grpc::ServerUnaryReactor* HostService::TerminateProc(grpc::CallbackServerContext* ctx,
                                                     const v1::TerminateProcRequest* req, v1::Proc* resp) {
  absl::StatusOr<absl::Duration> grace = FromProto(req->grace(), req->has_grace(), kDefaultGrace, "grace");
  absl::Status valid = grace.ok() ? ValidateName(req->name()) : grace.status();
  if (!valid.ok()) return Answer<v1::Proc>(ctx, valid);
  std::string reason = req->reason().empty() ? "terminated through the API" : req->reason();
  Caller who = CallerOf(*ctx);
  base::LogEvent(spdlog::level::info, "terminate requested",
                 {{"proc", req->name()},
                  {"grace_ms", absl::ToInt64Milliseconds(*grace)},
                  {"reason", reason},
                  {"uid", who.uid},
                  {"caller_pid", who.pid},
                  {"peer", who.peer},
                  {"identity", who.identity}});
  return OnPool<v1::Proc>(pool_, resp, [this, g = *grace, reason, name = req->name()](v1::Proc& out) {
    absl::StatusOr<proc::ProcStatus> s = host_.Terminate(name, g, reason);
    if (!s.ok()) return s.status();
    FillProc(host_, name, *s, &out);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* HostService::KillProc(grpc::CallbackServerContext* ctx, const v1::KillProcRequest* req,
                                                v1::Proc* resp) {
  absl::Status valid = ValidateName(req->name());
  if (!valid.ok()) return Answer<v1::Proc>(ctx, valid);
  Caller who = CallerOf(*ctx);
  base::LogEvent(spdlog::level::info, "kill requested",
                 {{"proc", req->name()},
                  {"uid", who.uid},
                  {"caller_pid", who.pid},
                  {"peer", who.peer},
                  {"identity", who.identity}});
  return OnPool<v1::Proc>(pool_, resp, [this, name = req->name()](v1::Proc& out) {
    absl::StatusOr<proc::ProcStatus> s = host_.Kill(name);
    if (!s.ok()) return s.status();
    FillProc(host_, name, *s, &out);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* HostService::TerminateAll(grpc::CallbackServerContext* ctx,
                                                    const v1::TerminateAllRequest* req,
                                                    v1::TerminateAllResponse* resp) {
  absl::StatusOr<absl::Duration> grace = FromProto(req->grace(), req->has_grace(), kDefaultGrace, "grace");
  if (!grace.ok()) return Answer<v1::TerminateAllResponse>(ctx, grace.status());
  if (req->max_in_flight() < 0) {
    return Answer<v1::TerminateAllResponse>(ctx, absl::InvalidArgumentError("max_in_flight: must not be negative"));
  }
  int in_flight = req->max_in_flight() == 0 ? kDefaultTerminateInFlight : req->max_in_flight();
  std::string reason = req->reason().empty() ? "terminate-all through the API" : req->reason();
  Caller who = CallerOf(*ctx);
  base::LogEvent(spdlog::level::info, "terminate-all requested",
                 {{"grace_ms", absl::ToInt64Milliseconds(*grace)},
                  {"reason", reason},
                  {"uid", who.uid},
                  {"caller_pid", who.pid},
                  {"peer", who.peer},
                  {"identity", who.identity}});
  return OnPool<v1::TerminateAllResponse>(
      pool_, resp, [this, g = *grace, in_flight, reason](v1::TerminateAllResponse& out) {
        manager::TerminateSummary s = host_.TerminateChildren(g, in_flight, reason);
        out.set_attempted(s.attempted);
        out.set_ok(s.ok);
        out.set_failed(s.failed);
        if (s.outcomes.size() >= kLargeCall) TrimSoon();
        // Failures first: they matter most when the budget runs out.
        std::stable_partition(s.outcomes.begin(), s.outcomes.end(),
                              [](const manager::TerminateOutcome& o) { return !o.result.ok(); });
        ReplyBudget budget(opts_.reply_budget_bytes);
        for (const manager::TerminateOutcome& o : s.outcomes) {
          v1::TerminateOutcome po;
          po.set_name(o.proc_id.name());
          po.set_ok(o.result.ok());
          if (o.result.ok()) {
            ToProto(*o.result, po.mutable_status());
          } else {
            po.set_error(std::string(o.result.status().message()));
          }
          if (!budget.Take(po)) {
            out.set_outcomes_omitted(out.outcomes_omitted() + 1);
            continue;
          }
          *out.add_outcomes() = std::move(po);
        }
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* HostService::SendMessage(grpc::CallbackServerContext* ctx, const v1::SendMessageRequest* req,
                                                   v1::SendMessageResponse* resp) {
  absl::Status valid = ValidateName(req->name());
  absl::StatusOr<absl::Duration> timeout = FromProto(req->timeout(), req->has_timeout(), absl::Seconds(10), "timeout");
  absl::StatusOr<absl::Duration> reply =
      FromProto(req->reply_timeout(), req->has_reply_timeout(), absl::ZeroDuration(), "reply_timeout");
  if (valid.ok() && !timeout.ok()) valid = timeout.status();
  if (valid.ok() && !reply.ok()) valid = reply.status();
  if (valid.ok() && req->port().empty()) valid = absl::InvalidArgumentError("port: required");
  if (valid.ok() &&
      req->payload().size() + req->name().size() + req->port().size() + 256 > channel::kDefaultMaxFrameBody) {
    valid = absl::InvalidArgumentError(absl::StrFormat("payload: %d bytes is over the frame limit of %d bytes",
                                                       req->payload().size(), channel::kDefaultMaxFrameBody));
  }
  if (!valid.ok()) return Answer<v1::SendMessageResponse>(ctx, valid);
  auto* call = new UnaryCall<v1::SendMessageResponse>(resp);
  auto st = call->state();
  host_.SendToProc(req->name(), req->port(), req->payload(), *timeout, *reply, [st](absl::StatusOr<Host::Reply> r) {
    UnaryCall<v1::SendMessageResponse>::Complete(st, r.status(), [&](v1::SendMessageResponse& out) {
      out.set_replied(r->replied);
      out.set_reply_port(r->port);
      out.set_reply_payload(r->payload);
    });
  });
  return call;
}

grpc::ServerUnaryReactor* HostService::Upgrade(grpc::CallbackServerContext* ctx, const v1::UpgradeRequest* req,
                                               v1::UpgradeResponse* resp) {
  if (!opts_.upgrade) {
    return Answer<v1::UpgradeResponse>(
        ctx, absl::UnimplementedError("Upgrade: this server has no upgrade hook (only hostd re-executes itself)"));
  }
  absl::Status s = opts_.upgrade(req->path());
  if (s.ok()) resp->set_pid(getpid());
  return Answer<v1::UpgradeResponse>(ctx, s);
}

grpc::ServerUnaryReactor* HostService::GetHostInfo(grpc::CallbackServerContext* ctx, const v1::GetHostInfoRequest*,
                                                   v1::HostInfo* resp) {
  resp->set_frontend_addr(host_.frontend().ToString());
  resp->set_backend_addr(host_.backend().ToString());
  resp->set_version(opts_.version);
  resp->set_incarnation(host_.incarnation());
  ToProto(absl::Now() - host_.started_at(), resp->mutable_uptime());
  int live = 0;
  int ended = 0;
  host_.Visit([&](const ProcView& p) { (p.info().status.terminal() ? ended : live)++; });
  resp->set_live_procs(live);
  resp->set_ended_procs(ended);
  resp->set_spawned_total(static_cast<int64_t>(host_.counters().spawned));
  resp->set_manager(opts_.manager_kind);
  resp->set_pid(getpid());
  resp->set_cgroup_fallback(opts_.cgroup_fallback);
  resp->set_draining(host_.draining());
  return Answer<v1::HostInfo>(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* HostService::Drain(grpc::CallbackServerContext* ctx, const v1::DrainRequest* req,
                                             v1::DrainResponse* resp) {
  bool draining = !req->undrain();
  bool was = host_.SetDraining(draining);
  if (opts_.on_drain) opts_.on_drain(draining);
  Caller who = CallerOf(*ctx);
  int live = host_.live_procs();
  base::LogEvent(spdlog::level::info, draining ? "drain started" : "drain ended",
                 {{"was_draining", was},
                  {"live_procs", live},
                  {"uid", who.uid},
                  {"caller_pid", who.pid},
                  {"peer", who.peer},
                  {"identity", who.identity}});
  resp->set_draining(draining);
  resp->set_was_draining(was);
  resp->set_live_procs(live);
  return Answer<v1::DrainResponse>(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* HostService::RenewLease(grpc::CallbackServerContext* ctx, const v1::RenewLeaseRequest* req,
                                                  v1::RenewLeaseResponse* resp) {
  absl::StatusOr<ProcTable::Renewal> r = host_.RenewLease(req->owner());
  if (r.ok()) {
    resp->set_procs(r->procs);
    ToProto(r->expires_at, resp->mutable_expires_at());
  }
  return Answer<v1::RenewLeaseResponse>(ctx, r.status());
}

Caller HostService::CallerOf(grpc::CallbackServerContext& ctx) const {
  std::string peer = ctx.peer();
  return opts_.caller_of ? opts_.caller_of(peer) : Caller{.peer = std::move(peer)};
}

// ---- Supervision ----------------------------------------------------------------

grpc::ServerUnaryReactor* HostService::CreateGroup(grpc::CallbackServerContext* ctx, const v1::CreateGroupRequest* req,
                                                   v1::Group* resp) {
  absl::StatusOr<GroupSpec> spec = FromProto(*req);
  absl::Status s = spec.ok() ? host_.CreateGroup(req->name(), *spec) : spec.status();
  if (s.ok()) {
    GroupInfo g;
    g.name = req->name();
    g.spec = *spec;
    ToProto(g, resp);
  }
  return Answer<v1::Group>(ctx, s);
}

grpc::ServerUnaryReactor* HostService::DeleteGroup(grpc::CallbackServerContext* ctx, const v1::DeleteGroupRequest* req,
                                                   v1::DeleteGroupResponse*) {
  return Answer<v1::DeleteGroupResponse>(ctx, host_.RemoveGroup(req->name()));
}

grpc::ServerUnaryReactor* HostService::RestartProc(grpc::CallbackServerContext* ctx, const v1::RestartProcRequest* req,
                                                   v1::Proc* resp) {
  RestartRequest r{.handoff = req->handoff()};
  absl::Status valid = ValidateName(req->name());
  for (auto [field, present, proto, out] :
       {std::tuple{"handoff_timeout", req->has_handoff_timeout(), &req->handoff_timeout(), &r.handoff_timeout},
        std::tuple{"grace", req->has_grace(), &req->grace(), &r.grace}}) {
    absl::StatusOr<absl::Duration> d = FromProto(*proto, present, *out, field);
    if (valid.ok() && !d.ok()) valid = d.status();
    if (d.ok()) *out = *d;
  }
  if (!valid.ok()) return Answer<v1::Proc>(ctx, valid);
  return OnPool<v1::Proc>(pool_, resp, [this, r, name = req->name()](v1::Proc& out) {
    absl::StatusOr<ProcInfo> p = host_.Restart(name, r);
    if (!p.ok()) return p.status();
    ToProto(*p, &out);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* HostService::BroadcastSignal(grpc::CallbackServerContext*,
                                                       const v1::BroadcastSignalRequest* req,
                                                       v1::BroadcastSignalResponse* resp) {
  auto* call = new UnaryCall<v1::BroadcastSignalResponse>(resp);
  auto st = call->state();
  host_.Broadcast(req->signal(), req->data(), req->group(), [st](absl::StatusOr<BroadcastResult> r) {
    UnaryCall<v1::BroadcastSignalResponse>::Complete(st, r.status(), [&](v1::BroadcastSignalResponse& out) {
      out.set_targeted(r->targeted);
      out.set_delivered(r->delivered);
      out.set_queued(r->queued);
      out.set_failed(r->failed);
    });
  });
  return call;
}

grpc::ServerUnaryReactor* HostService::GetTree(grpc::CallbackServerContext* ctx, const v1::GetTreeRequest*,
                                               v1::Tree* resp) {
  absl::Time now = absl::Now();
  ReplyBudget budget(opts_.reply_budget_bytes);
  int64_t omitted = 0;
  std::vector<TreeNode> tree = host_.Tree();
  for (const TreeNode& n : tree) AddWithinBudget(n, now, budget, resp->mutable_roots(), omitted);
  if (tree.size() >= kLargeCall) TrimSoon();
  resp->set_nodes_omitted(static_cast<int32_t>(omitted));
  ToProto(now, resp->mutable_at());
  return Answer<v1::Tree>(ctx, absl::OkStatus());
}

}  // namespace hostd::daemon
