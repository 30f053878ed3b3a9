#include "daemon/supervision_controller.h"

#include <algorithm>
#include <functional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "base/log.h"
#include "daemon/worker_pool.h"
#include "proc/agent.h"
#include "proc/proc_runtime.h"

namespace hostd::daemon {

using channel::Message;
using channel::ReturnReason;
using State = ProcRecord::State;
using Fate = ProcRecord::Fate;

struct SupervisionController::Job {
  uint64_t epoch = 0;
  std::vector<std::pair<std::string, uint64_t>> stop;  // name, gen of the incarnation to stop
  std::vector<std::string> start;                      // in this order, after `delay`
  absl::Duration delay;
};

SupervisionController::SupervisionController(ProcTable& table, Router& router, channel::EventLoop& loop,
                                             Options options)
    : table_(table),
      router_(router),
      loop_(loop),
      opts_(options),
      jobs_(std::make_unique<WorkerPool>(std::max(1, opts_.threads), 1u << 16)) {}

SupervisionController::~SupervisionController() { Shutdown(); }

void SupervisionController::Attach() {
  router_.AddMailbox(kStateMailbox, [this](Message m) { OnSavedState(std::move(m)); });
}

void SupervisionController::Shutdown() {
  // Jobs wake, see shut_down_, and stop (a start already under way finishes and
  // its proc is killed).
  {
    absl::MutexLock lock(&table_.mu_);
    shut_down_ = true;
    restarts_paused_ = true;
  }
  jobs_.reset();
}

// ---- Ends and plans (under the table's lock) ------------------------------------------

void SupervisionController::MarkRestarting(Record& r) {
  r.state = State::kRestarting;
  table_.ToRouter([name = r.name](Router& router) { router.Restart(name); });
}

void SupervisionController::ResumeRestart(Record& r) {
  MarkRestarting(r);
  table_.Publish(HostEvent{.kind = HostEvent::Kind::kRestarting,
                           .name = r.name,
                           .status = r.status,
                           .detail = "it was restarting when the previous hostd went down"});
  Submit(Job{.epoch = restart_epoch_, .stop = {}, .start = {r.name}, .delay = absl::ZeroDuration()});
}

Supervisor::Plan SupervisionController::PlanFor(const Record& r) {
  if (!table_.supervisor_.Supervises(r.name) || restarts_paused_ || !table_.stopped_why_.empty()) return {};
  return table_.supervisor_.OnExit(r.name, r.status, absl::Now(), /*start_failed=*/false);
}

std::vector<std::string> SupervisionController::OnMissedEnd(Record& r) {
  if (r.stop_requested) return {};  // (a lease that ran out during the adoption stopped it, say)
  Supervisor::Plan plan = PlanFor(r);
  if (plan.empty()) return {};
  ApplyPlan(r.name, plan, /*start_failed=*/false);
  std::vector<std::string> taken = plan.restart;
  taken.insert(taken.end(), plan.end.begin(), plan.end.end());
  return taken;
}

void SupervisionController::OnEnd(Record& r) {
  const std::string name = r.name;
  if (r.stop_requested || shut_down_) {
    table_.EndRecord(r);
    table_.Publish(HostEvent::Kind::kTerminated, name, r.status);
    return;
  }
  switch (std::exchange(r.fate, Fate::kNone)) {
    case Fate::kRestart:  // its job starts it; its kRestarting event went out while it ran
      MarkRestarting(r);
      table_.Persist(r);  // a hostd that goes down now leaves it restarting for the next
      return;
    case Fate::kEnd:  // its group gave up; the event is out
      table_.EndRecord(r);
      return;
    case Fate::kRequestedRestart:
      MarkRestarting(r);
      table_.Publish(HostEvent{
          .kind = HostEvent::Kind::kRestarting, .name = name, .status = r.status, .detail = "restart requested"});
      Submit(Job{.epoch = restart_epoch_, .stop = {}, .start = {name}, .delay = absl::ZeroDuration()});
      return;
    case Fate::kNone: break;
  }
  Supervisor::Plan plan = PlanFor(r);
  if (plan.empty()) {
    table_.EndRecord(r);
    return;
  }
  ApplyPlan(name, plan, /*start_failed=*/false);
}

void SupervisionController::ApplyPlan(const std::string& failed, const Supervisor::Plan& plan, bool start_failed) {
  auto& records = table_.records_;
  for (const std::string& n : plan.restart) {
    auto it = records.find(n);
    if (it == records.end()) continue;
    Record& r = *it->second;
    if (n == failed || r.state == State::kEnded) {
      MarkRestarting(r);
    } else if (r.live()) {
      r.fate = Fate::kRestart;
    }
    table_.Publish(
        HostEvent{.kind = HostEvent::Kind::kRestarting,
                  .name = n,
                  .status = r.status,
                  .attempt = plan.attempt,
                  .delay = plan.delay,
                  .start_failed = n == failed && start_failed,
                  .detail = n == failed ? plan.why : absl::StrCat("restarted with \"", failed, "\": ", plan.why)});
  }
  for (const std::string& n : plan.end) {
    auto it = records.find(n);
    if (it == records.end()) continue;
    Record& r = *it->second;
    if (r.live() && n != failed) {
      r.fate = Fate::kEnd;
    } else if (r.state != State::kEnded) {
      table_.EndRecord(r);
    }
    table_.Publish(HostEvent{.kind = HostEvent::Kind::kGaveUp, .name = n, .status = r.status, .detail = plan.why});
  }
  for (const std::string& g : plan.gave_up_groups) {
    table_.Publish(HostEvent{.kind = HostEvent::Kind::kGaveUp,
                             .name = g,
                             .groups = table_.supervisor_.PathOfGroup(g),
                             .is_group = true,
                             .detail = plan.why});
  }
  Job job{.epoch = restart_epoch_, .stop = {}, .start = plan.restart, .delay = plan.delay};
  for (const std::string& n : plan.stop) {
    auto it = records.find(n);
    if (it != records.end() && it->second->live()) job.stop.emplace_back(n, it->second->gen);
  }
  if (!job.stop.empty() || !job.start.empty()) Submit(std::move(job));
}

void SupervisionController::PauseRestarts(absl::Duration wait) {
  absl::MutexLock lock(&table_.mu_);
  restarts_paused_ = true;
  ++restart_epoch_;
  for (auto& [n, r] : table_.records_) r->stop_requested = true;
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_) { return restarts_in_flight_ == 0; };
  table_.mu_.AwaitWithTimeout(absl::Condition(&idle), wait);
}

void SupervisionController::ResumeRestarts() { restarts_paused_ = shut_down_; }

// ---- Jobs (a jobs_ thread) -----------------------------------------------------------

void SupervisionController::Submit(Job job) {
  ++restarts_in_flight_;
  size_t starts = job.start.size();
  absl::Status s = jobs_->Submit([this, job = std::move(job)] { RunJob(job); });
  if (!s.ok()) {
    --restarts_in_flight_;
    base::Log().error("restart of {} procs not scheduled: {}", starts, s.ToString());
  }
}

bool SupervisionController::Cancelled(uint64_t epoch) const {
  return restarts_paused_ || shut_down_ || !table_.stopped_why_.empty() || restart_epoch_ != epoch;
}

void SupervisionController::RunJob(const Job& job) {
  for (const auto& [name, gen] : job.stop) {
    std::shared_ptr<manager::ProcHandle> h;
    {
      absl::MutexLock lock(&table_.mu_);
      if (Cancelled(job.epoch)) break;
      Record* r = table_.Find(name, gen);
      if (r != nullptr && r->live()) h = r->handle;
    }
    if (h) (void)h->Terminate(opts_.stop_grace, "its supervision group restarts or gave up");
  }
  {
    absl::MutexLock lock(&table_.mu_);
    auto cancelled = [this, &job]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_) { return Cancelled(job.epoch); };
    table_.mu_.AwaitWithTimeout(absl::Condition(&cancelled), job.delay);
  }
  for (const std::string& name : job.start) StartIncarnation(name, job.epoch);
  absl::MutexLock lock(&table_.mu_);
  --restarts_in_flight_;
}

void SupervisionController::StartIncarnation(const std::string& name, uint64_t epoch) {
  manager::SpawnSpec spec;
  uint64_t gen;
  {
    absl::MutexLock lock(&table_.mu_);
    // A member its group just stopped may not have been seen to end yet; an
    // incarnation that ended as soon as it was ready may still be finishing its
    // start on another job's thread (`spawning`).
    auto settled = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_) {
      auto it = table_.records_.find(name);
      return it == table_.records_.end() || (!it->second->live() && !it->second->spawning) || Cancelled(epoch);
    };
    table_.mu_.AwaitWithTimeout(absl::Condition(&settled), opts_.stop_grace + absl::Seconds(5));
    auto it = table_.records_.find(name);
    if (it == table_.records_.end() || it->second->state != State::kRestarting || it->second->spawning) return;
    Record& r = *it->second;
    if (Cancelled(epoch)) {
      // A later epoch (TerminateChildren) ends it itself; a hand-over leaves it
      // restarting for the next hostd.
      if (restart_epoch_ == epoch && !table_.handing_over_) table_.EndRecord(r);
      return;
    }
    r.spawning = true;
    r.gen = gen = table_.next_gen_++;
    ++r.incarnation;
    r.incarnation_started = absl::Now();
    r.handle.reset();
    spec = r.spec;
    spec.initial_state = r.handoff_state ? r.handoff_state : r.saved_state;
    spec.append_logs = true;  // the logs keep what every incarnation wrote
    ++table_.spawns_in_flight_;
  }
  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> handle = table_.SpawnChecked(name, spec);
  if (!handle.ok()) {
    absl::MutexLock lock(&table_.mu_);
    --table_.spawns_in_flight_;
    if (Record* r = table_.Find(name, gen)) OnStartFailed(*r, handle.status());
    return;
  }
  std::shared_ptr<manager::ProcHandle> h = *handle;
  bool activated = false;
  bool keep = false;
  {
    absl::MutexLock lock(&table_.mu_);
    if (Record* r = table_.Find(name, gen)) {
      r->spawning = false;
      r->handoff_state.reset();
      activated = table_.Activate(*r, h);
      keep = activated && !Cancelled(epoch);
      if (keep) {
        table_.supervisor_.OnReady(name, absl::Now());
        r->announce_restart = true;  // kRestarted follows this incarnation's Ready
      }
    }
  }
  if (activated) table_.Follow(name, gen, h);
  {
    absl::MutexLock lock(&table_.mu_);
    --table_.spawns_in_flight_;
  }
  // Stopped or cancelled while it started: leave nothing running.
  if (!keep) (void)h->Kill();
}

// A new incarnation never became ready.
void SupervisionController::OnStartFailed(Record& r, const absl::Status& why) {
  const std::string name = r.name;
  r.spawning = false;
  r.SetStatus(proc::ProcStatus::Failed(std::string(why.message())));
  table_.Publish(HostEvent{.kind = HostEvent::Kind::kSpawnFailed,
                           .name = name,
                           .status = r.status,
                           .start_failed = true,
                           .detail = std::string(why.message())});
  if (r.state != State::kRestarting) return;  // ended meanwhile
  Supervisor::Plan plan;
  if (!r.stop_requested && !restarts_paused_ && table_.stopped_why_.empty()) {
    plan = table_.supervisor_.OnExit(name, r.status, absl::Now(), /*start_failed=*/true);
  }
  if (plan.empty()) {
    table_.EndRecord(r);
  } else {
    ApplyPlan(name, plan, /*start_failed=*/true);
  }
  table_.ForgetEnded(table_.opts_.ended_procs_kept);
}

// ---- Requested restarts and saved state --------------------------------------------------

absl::StatusOr<ProcInfo> SupervisionController::Restart(absl::string_view name_view, const RestartRequest& request) {
  const std::string name(name_view);
  std::shared_ptr<manager::ProcHandle> h;
  uint64_t gen;
  absl::Duration ready_timeout;
  {
    absl::MutexLock lock(&table_.mu_);
    auto it = table_.records_.find(name);
    if (it == table_.records_.end()) return table_.NotFound(name);
    Record& r = *it->second;
    if (!r.live() || r.fate != Fate::kNone || r.stop_requested) {
      return absl::FailedPreconditionError(absl::StrCat("proc \"", name, "\" is ", r.status.ToString(),
                                                        r.state == State::kRestarting ? " (restarting)" : "",
                                                        "; only a running proc can be restarted"));
    }
    if (r.restart_requested) {
      return absl::FailedPreconditionError(absl::StrCat("a restart of proc \"", name, "\" is already under way"));
    }
    r.restart_requested = true;
    h = r.handle;
    gen = r.gen;
    ready_timeout = r.spec.ready_timeout == absl::ZeroDuration() ? absl::Minutes(5) : r.spec.ready_timeout;
  }
  auto fail = [&](absl::Status why) {
    absl::MutexLock lock(&table_.mu_);
    if (Record* r = table_.Find(name, gen)) {
      r->restart_requested = false;
      table_.Publish(HostEvent{.kind = HostEvent::Kind::kRestartFailed,
                               .name = name,
                               .status = r->status,
                               .detail = std::string(why.message())});
    }
    return why;
  };

  std::optional<std::string> state;
  if (request.handoff) {
    absl::Notification answered;
    absl::StatusOr<Router::Reply> reply;
    router_.SendToProc(name, std::string(proc::kAgentPort), "handoff", request.handoff_timeout, request.handoff_timeout,
                       [&](absl::StatusOr<Router::Reply> r) {
                         reply = std::move(r);
                         answered.Notify();
                       });
    answered.WaitForNotification();
    constexpr absl::string_view kState = "state\n";
    if (!reply.ok() || !reply->replied || !absl::StartsWith(reply->payload, kState)) {
      std::string why = !reply.ok()       ? std::string(reply.status().message())
                        : !reply->replied ? "no reply"
                                          : reply->payload.substr(0, 300);
      return fail(absl::FailedPreconditionError(
          absl::StrCat("proc \"", name, "\" could not hand over its state (", why, "); it keeps running")));
    }
    state = reply->payload.substr(kState.size());
  }
  {
    absl::MutexLock lock(&table_.mu_);
    auto it = table_.records_.find(name);
    if (it == table_.records_.end() || it->second->gen != gen || !it->second->live() ||
        it->second->fate != Fate::kNone) {
      if (it != table_.records_.end()) it->second->restart_requested = false;
      return absl::AbortedError(absl::StrCat("proc \"", name, "\" ended or restarted while its restart was prepared"));
    }
    Record& r = *it->second;
    if (state) {
      table_.SetSavedState(r, state);
      r.handoff_state = std::move(state);
    }
    r.fate = Fate::kRequestedRestart;
  }
  (void)h->Terminate(request.grace, "restart requested");

  absl::MutexLock lock(&table_.mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_) {
    auto it = table_.records_.find(name);
    return it == table_.records_.end() || it->second->state == State::kEnded ||
           (it->second->gen != gen && it->second->live() && !it->second->spawning);
  };
  table_.mu_.AwaitWithTimeout(absl::Condition(&done), request.grace + ready_timeout + absl::Seconds(10));
  auto it = table_.records_.find(name);
  if (it == table_.records_.end()) {
    return absl::NotFoundError(absl::StrCat("proc \"", name, "\" was removed during its restart"));
  }
  Record& r = *it->second;
  r.restart_requested = false;
  if (r.state == State::kEnded) {
    return absl::FailedPreconditionError(
        absl::StrCat("proc \"", name, "\" ended instead of restarting: ", r.status.ToString()));
  }
  if (!r.live() || r.gen == gen) {
    return absl::DeadlineExceededError(absl::StrCat("proc \"", name, "\" is not ready again yet; watch its events"));
  }
  return table_.InfoOf(r);
}

void SupervisionController::OnSavedState(Message msg) {
  loop_.AssertInLoop("SupervisionController::OnSavedState");
  const std::string& host = table_.host_name_;
  std::string prefix = absl::StrCat(host, ",");
  ReturnReason reason = ReturnReason::kNone;
  std::string note;
  if (!absl::StartsWith(msg.src(), prefix)) {
    reason = ReturnReason::kUnroutable;
    note = absl::StrCat("state can be saved only by procs of host ", host);
  } else {
    std::string name(msg.src().substr(prefix.size()));
    absl::MutexLock lock(&table_.mu_);
    auto it = table_.records_.find(name);
    size_t size = msg.payload().size();
    if (it == table_.records_.end() || !it->second->live()) {
      reason = ReturnReason::kUnknownProc;
      note = absl::StrCat("no running proc named \"", name, "\" saves state here");
    } else if (size > proc::kMaxStateBytes) {
      reason = ReturnReason::kTooLarge;
      note = absl::StrCat("saved state of ", size, " bytes is over the limit of ", proc::kMaxStateBytes);
    } else {
      Record& r = *it->second;
      size_t old = r.saved_state ? r.saved_state->size() : 0;
      if (table_.saved_state_total_ - old + size > opts_.saved_state_bytes) {
        reason = ReturnReason::kBufferFull;
        note = absl::StrCat("the host keeps at most ", opts_.saved_state_bytes, " bytes of saved state for all procs");
      } else {
        table_.SetSavedState(r, std::string(msg.payload()));
      }
    }
  }
  if (reason != ReturnReason::kNone) router_.Return(std::move(msg), reason, note);
}

// ---- Groups, the tree and signals ---------------------------------------------------------

absl::Status SupervisionController::CreateGroup(const std::string& name, const GroupSpec& spec) {
  absl::MutexLock lock(&table_.mu_);
  absl::Status s = table_.supervisor_.AddGroup(name, spec);
  if (s.ok() && table_.group_recorder_) table_.group_recorder_(name, &spec);
  return s;
}

absl::Status SupervisionController::RemoveGroup(const std::string& name) {
  absl::MutexLock lock(&table_.mu_);
  absl::Status s = table_.supervisor_.RemoveGroup(name);
  if (s.ok() && table_.group_recorder_) table_.group_recorder_(name, nullptr);
  return s;
}

std::vector<TreeNode> SupervisionController::Tree() const {
  std::vector<TreeNode> roots;
  {
    absl::MutexLock lock(&table_.mu_);
    absl::flat_hash_map<std::string, GroupInfo> groups;
    for (GroupInfo& g : table_.supervisor_.Groups()) groups.emplace(g.name, std::move(g));
    std::function<void(const std::vector<GroupInfo::Child>&, std::vector<TreeNode>*)> build =
        [&](const std::vector<GroupInfo::Child>& children, std::vector<TreeNode>* out)
            ABSL_EXCLUSIVE_LOCKS_REQUIRED(table_.mu_) {
              for (const auto& c : children) {
                TreeNode node;
                node.is_group = c.is_group;
                node.name = c.name;
                if (c.is_group) {
                  node.group = groups.at(c.name);
                  build(node.group.children, &node.children);
                } else {
                  auto it = table_.records_.find(c.name);
                  if (it == table_.records_.end()) continue;
                  node.proc = table_.InfoOf(*it->second);
                }
                out->push_back(std::move(node));
              }
            };
    build(table_.supervisor_.TopLevel(), &roots);
  }
  // /proc is read without the lock.
  std::function<void(std::vector<TreeNode>*)> usage = [&](std::vector<TreeNode>* nodes) {
    for (TreeNode& n : *nodes) {
      if (n.is_group) {
        usage(&n.children);
      } else if (n.proc && n.proc->handle != nullptr) {
        n.usage = n.proc->handle->Usage();
      }
    }
  };
  usage(&roots);
  return roots;
}

namespace {

absl::Status ValidateSignal(absl::string_view name, absl::string_view data) {
  constexpr size_t kMaxData = 64 << 10;
  bool ok = !name.empty() && name.size() <= 64;
  for (char c : name) ok = ok && (absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-');
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat("invalid signal name \"", absl::CHexEscape(name.substr(0, 80)),
                                                   "\": use 1-64 letters, digits, '_', '.' and '-'"));
  }
  if (data.size() > kMaxData) {
    return absl::InvalidArgumentError(
        absl::StrCat("signal \"", name, "\": data is ", data.size(), " bytes; at most ", kMaxData));
  }
  return absl::OkStatus();
}

}  // namespace

void SupervisionController::Broadcast(const std::string& name, std::string data, const std::string& group,
                                      absl::AnyInvocable<void(absl::StatusOr<BroadcastResult>)> done) {
  if (absl::Status s = ValidateSignal(name, data); !s.ok()) {
    loop_.Post([done = std::move(done), s]() mutable { done(s); });
    return;
  }
  std::vector<std::string> names;
  {
    absl::MutexLock lock(&table_.mu_);
    if (!group.empty() && table_.supervisor_.PathOfGroup(group).empty()) {
      loop_.Post([done = std::move(done), group]() mutable {
        done(absl::NotFoundError(absl::StrCat("no group named \"", group, "\"")));
      });
      return;
    }
    for (const auto& [n, r] : table_.records_) {
      if (!group.empty()) {
        std::vector<std::string> path = table_.supervisor_.GroupPath(n);
        if (std::find(path.begin(), path.end(), group) == path.end()) continue;
      }
      names.push_back(n);
    }
    // Posted under the lock: after every route change the table decided before.
    std::string payload = data.empty() ? name : absl::StrCat(name, "\n", data);
    table_.ToRouter(
        [names = std::move(names), payload = std::move(payload), done = std::move(done)](Router& router) mutable {
          router.Signal(names, payload, [done = std::move(done)](BroadcastResult r) mutable { done(r); });
        });
  }
}

}  // namespace hostd::daemon
