// The Host's supervision (daemon/host.h, daemon/supervisor.h): what happens when
// a proc ends, restart jobs, requested restarts with state handoff, saved state,
// groups and the tree.
//
// Decisions are made on the loop thread, where every end is observed (OnStatus),
// under mu_. Acting blocks (stopping procs, waiting out a backoff, spawning), so a
// Job does it on a thread of jobs_ and reports back through the loop. A route
// keeps its name, ProcId and buffer across incarnations; `gen` changes with each.
#include <algorithm>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "base/log.h"
#include "daemon/host.h"
#include "daemon/host_route.h"
#include "daemon/worker_pool.h"
#include "proc/agent.h"

namespace hostd::daemon {

using channel::Message;
using channel::ReturnReason;

struct Host::Job {
  uint64_t epoch = 0;
  std::vector<std::pair<std::string, uint64_t>> stop;  // name, gen of the incarnation to stop
  std::vector<std::string> start;                      // in this order, after `delay`
  absl::Duration delay;
};

// ---- Ends and plans (loop thread) ------------------------------------------------

void Host::OnEnd(Route& r, Bounce* bounce) {
  const std::string name = r.name;
  if (r.stop_requested || destroying_) {
    EndRoute(r, bounce);
    Publish(HostEvent::Kind::kTerminated, name, r.status);
    return;
  }
  Route::Fate fate = std::exchange(r.fate, Route::Fate::kNone);
  switch (fate) {
    case Route::Fate::kRestart:  // its job starts it
      r.state = Route::State::kRestarting;
      return;
    case Route::Fate::kEnd:  // its group gave up; the event is out
      EndRoute(r, bounce);
      return;
    case Route::Fate::kRequestedRestart:
      r.state = Route::State::kRestarting;
      Publish(HostEvent{.kind = HostEvent::Kind::kRestarting, .name = name, .status = r.status,
                        .detail = "restart requested"});
      Submit(Job{.epoch = restart_epoch_, .stop = {}, .start = {name}, .delay = absl::ZeroDuration()});
      return;
    case Route::Fate::kNone:
      break;
  }
  if (!supervisor_.Supervises(name) || restarts_paused_ || !stopped_why_.empty()) {
    EndRoute(r, bounce);
    return;
  }
  Supervisor::Plan plan = supervisor_.OnExit(name, r.status, absl::Now(), /*start_failed=*/false);
  if (plan.empty()) {
    EndRoute(r, bounce);
    return;
  }
  ApplyPlan(name, plan, /*start_failed=*/false, bounce);
}

void Host::ApplyPlan(const std::string& failed, const Supervisor::Plan& plan, bool start_failed, Bounce* bounce) {
  for (const std::string& n : plan.restart) {
    auto it = routes_.find(n);
    if (it == routes_.end()) continue;
    Route& r = *it->second;
    if (n == failed || r.state == Route::State::kEnded) {
      r.state = Route::State::kRestarting;
    } else if (Live(r)) {
      r.fate = Route::Fate::kRestart;
    }
    Publish(HostEvent{.kind = HostEvent::Kind::kRestarting, .name = n, .status = r.status, .attempt = plan.attempt,
                      .delay = plan.delay, .start_failed = n == failed && start_failed,
                      .detail = n == failed ? plan.why : absl::StrCat("restarted with \"", failed, "\": ", plan.why)});
  }
  for (const std::string& n : plan.end) {
    auto it = routes_.find(n);
    if (it == routes_.end()) continue;
    Route& r = *it->second;
    if (Live(r) && n != failed) {
      r.fate = Route::Fate::kEnd;
    } else if (r.state != Route::State::kEnded) {
      EndRoute(r, bounce);
    }
    Publish(HostEvent{.kind = HostEvent::Kind::kGaveUp, .name = n, .status = r.status, .detail = plan.why});
  }
  for (const std::string& g : plan.gave_up_groups) {
    Publish(HostEvent{.kind = HostEvent::Kind::kGaveUp, .name = g, .groups = supervisor_.PathOfGroup(g),
                      .is_group = true, .detail = plan.why});
  }
  Job job{.epoch = restart_epoch_, .stop = {}, .start = plan.restart, .delay = plan.delay};
  for (const std::string& n : plan.stop) {
    auto it = routes_.find(n);
    if (it != routes_.end() && Live(*it->second)) job.stop.emplace_back(n, it->second->gen);
  }
  if (!job.stop.empty() || !job.start.empty()) Submit(std::move(job));
}

void Host::EndRoute(Route& r, Bounce* bounce) {
  r.state = Route::State::kEnded;
  r.fate = Route::Fate::kNone;
  ended_order_.push_back(r.name);
  if (!r.buffer.empty()) {
    bounce->emplace_back(absl::StrCat("proc \"", r.name, "\" has ended: ", r.status.ToString()), std::move(r.buffer));
    r.buffer.clear();
  }
  r.buffered_bytes = 0;
  r.buffer_front = 0;
}

void Host::EndSoon(Route& r) {
  Bounce bounce;
  EndRoute(r, &bounce);
  loop_->Post([this, bounce = std::move(bounce)]() mutable { BounceAll(std::move(bounce)); });
}

void Host::SetSavedState(Route& r, std::optional<std::string> state) {
  saved_state_total_ -= r.saved_state ? r.saved_state->size() : 0;
  r.saved_state = std::move(state);
  saved_state_total_ += r.saved_state ? r.saved_state->size() : 0;
}

void Host::BounceAll(Bounce bounce) {
  for (auto& [note, held] : bounce) {
    for (auto& [m, hook] : held) Return(std::move(m), ReturnReason::kProcExited, note);
  }
}

// A message the old incarnation's link handed back while the proc restarts goes
// to the new one, ahead of what arrived since (it was sent first).
bool Host::Requeue(const std::string& name, Message& msg) {
  absl::MutexLock lock(&mu_);
  auto it = routes_.find(name);
  if (it == routes_.end() || it->second->state != Route::State::kRestarting) return false;
  it->second->HoldAhead(std::move(msg));
  return true;
}

// ---- Jobs (a jobs_ thread) ---------------------------------------------------------

void Host::Submit(Job job) {
  ++restarts_in_flight_;
  absl::Status s = jobs_->Submit([this, job = std::move(job)] { RunJob(job); });
  if (!s.ok()) {
    --restarts_in_flight_;
    base::Log().error("restart of {} procs not scheduled: {}", job.start.size(), s.ToString());
  }
}

bool Host::Cancelled(uint64_t epoch) const {
  return restarts_paused_ || destroying_ || !stopped_why_.empty() || restart_epoch_ != epoch;
}

void Host::RunJob(const Job& job) {
  for (const auto& [name, gen] : job.stop) {
    std::shared_ptr<manager::ProcHandle> h;
    {
      absl::MutexLock lock(&mu_);
      if (Cancelled(job.epoch)) break;
      auto it = routes_.find(name);
      if (it != routes_.end() && it->second->gen == gen && Live(*it->second)) h = it->second->handle;
    }
    if (h) (void)h->Terminate(opts_.supervisor_stop_grace, "its supervision group restarts or gave up");
  }
  {
    absl::MutexLock lock(&mu_);
    auto cancelled = [this, &job]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return Cancelled(job.epoch); };
    mu_.AwaitWithTimeout(absl::Condition(&cancelled), job.delay);
  }
  for (const std::string& name : job.start) StartIncarnation(name, job.epoch);
  absl::MutexLock lock(&mu_);
  --restarts_in_flight_;
}

void Host::StartIncarnation(const std::string& name, uint64_t epoch) {
  manager::SpawnSpec spec;
  uint64_t gen;
  {
    absl::MutexLock lock(&mu_);
    // A member its group just stopped may not have been seen to end yet; an
    // incarnation that ended as soon as it was ready may still be finishing its
    // start on another job's thread (`spawning`).
    auto settled = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      auto it = routes_.find(name);
      return it == routes_.end() || (!Live(*it->second) && !it->second->spawning) || Cancelled(epoch);
    };
    mu_.AwaitWithTimeout(absl::Condition(&settled), opts_.supervisor_stop_grace + absl::Seconds(5));
    auto it = routes_.find(name);
    if (it == routes_.end() || it->second->state != Route::State::kRestarting || it->second->spawning) return;
    Route& r = *it->second;
    if (Cancelled(epoch)) {
      if (restart_epoch_ == epoch) EndSoon(r);  // a later epoch (TerminateChildren) ends it itself
      return;
    }
    r.spawning = true;
    r.gen = gen = next_gen_++;
    ++r.incarnation;
    r.incarnation_started = absl::Now();
    r.handle.reset();
    spec = r.spec;
    spec.initial_state = r.handoff_state ? r.handoff_state : r.saved_state;
    spec.append_logs = true;  // the logs keep what every incarnation wrote
    ++spawns_in_flight_;
  }
  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> handle = SpawnChecked(name, spec);
  if (!handle.ok()) {
    loop_->RunSync([&] { OnStartFailed(name, gen, handle.status()); });
    absl::MutexLock lock(&mu_);
    --spawns_in_flight_;
    return;
  }
  std::shared_ptr<manager::ProcHandle> h = *handle;
  loop_->RunSync([&] { Activate(name, gen, h); });
  uint64_t watch_id = WatchRoute(name, gen, *h);
  bool keep = false;
  {
    absl::MutexLock lock(&mu_);
    --spawns_in_flight_;
    auto it = routes_.find(name);
    if (it != routes_.end() && it->second->gen == gen) {
      Route& r = *it->second;
      r.spawning = false;
      r.watch_id = watch_id;
      r.handoff_state.reset();
      keep = Live(r) && !Cancelled(epoch);
      if (keep) {
        supervisor_.OnReady(name, absl::Now());
        Publish(HostEvent{.kind = HostEvent::Kind::kRestarted, .name = name, .status = r.status});
      }
    }
  }
  // Stopped or cancelled while it started: leave nothing running.
  if (!keep) (void)h->Kill();
}

// Loop thread: a new incarnation never became ready.
void Host::OnStartFailed(const std::string& name, uint64_t gen, const absl::Status& why) {
  Bounce bounce;
  {
    absl::MutexLock lock(&mu_);
    auto it = routes_.find(name);
    if (it == routes_.end() || it->second->gen != gen) return;
    Route& r = *it->second;
    r.spawning = false;
    r.status = proc::ProcStatus::Failed(std::string(why.message()));
    Publish(HostEvent{.kind = HostEvent::Kind::kSpawnFailed, .name = name, .status = r.status, .start_failed = true,
                      .detail = std::string(why.message())});
    if (r.state != Route::State::kRestarting) return;  // ended meanwhile
    Supervisor::Plan plan;
    if (!r.stop_requested && !restarts_paused_ && stopped_why_.empty()) {
      plan = supervisor_.OnExit(name, r.status, absl::Now(), /*start_failed=*/true);
    }
    if (plan.empty()) {
      EndRoute(r, &bounce);
    } else {
      ApplyPlan(name, plan, /*start_failed=*/true, &bounce);
    }
    ForgetEnded(opts_.ended_procs_kept);
  }
  BounceAll(std::move(bounce));
}

// ---- Requested restarts and saved state ---------------------------------------------

absl::StatusOr<ProcInfo> Host::Restart(absl::string_view name_view, const RestartRequest& request) {
  const std::string name(name_view);
  std::shared_ptr<manager::ProcHandle> h;
  uint64_t gen;
  absl::Duration ready_timeout;
  {
    absl::MutexLock lock(&mu_);
    auto it = routes_.find(name);
    if (it == routes_.end()) {
      return absl::NotFoundError(absl::StrCat("no proc named \"", name, "\" on host ", frontend_text_));
    }
    Route& r = *it->second;
    if (!Live(r) || r.fate != Route::Fate::kNone || r.stop_requested) {
      return absl::FailedPreconditionError(absl::StrCat("proc \"", name, "\" is ", r.status.ToString(),
                                                        r.state == Route::State::kRestarting ? " (restarting)" : "",
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
    absl::MutexLock lock(&mu_);
    auto it = routes_.find(name);
    if (it != routes_.end() && it->second->gen == gen) {
      it->second->restart_requested = false;
      Publish(HostEvent{.kind = HostEvent::Kind::kRestartFailed, .name = name, .status = it->second->status,
                        .detail = std::string(why.message())});
    }
    return why;
  };

  std::optional<std::string> state;
  if (request.handoff) {
    absl::Notification answered;
    absl::StatusOr<Reply> reply;
    SendToProc(name, std::string(proc::kAgentPort), "handoff", request.handoff_timeout, request.handoff_timeout,
               [&](absl::StatusOr<Reply> r) {
                 reply = std::move(r);
                 answered.Notify();
               });
    answered.WaitForNotification();
    constexpr absl::string_view kState = "state\n";
    if (!reply.ok() || !reply->replied || !absl::StartsWith(reply->payload, kState)) {
      std::string why = !reply.ok() ? std::string(reply.status().message())
                        : !reply->replied ? "no reply"
                                          : reply->payload.substr(0, 300);
      return fail(absl::FailedPreconditionError(
          absl::StrCat("proc \"", name, "\" could not hand over its state (", why, "); it keeps running")));
    }
    state = reply->payload.substr(kState.size());
  }
  {
    absl::MutexLock lock(&mu_);
    auto it = routes_.find(name);
    if (it == routes_.end() || it->second->gen != gen || !Live(*it->second) || it->second->fate != Route::Fate::kNone) {
      if (it != routes_.end()) it->second->restart_requested = false;
      return absl::AbortedError(absl::StrCat("proc \"", name, "\" ended or restarted while its restart was prepared"));
    }
    Route& r = *it->second;
    if (state) {
      SetSavedState(r, state);
      r.handoff_state = std::move(state);
    }
    r.fate = Route::Fate::kRequestedRestart;
  }
  (void)h->Terminate(request.grace, "restart requested");

  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = routes_.find(name);
    return it == routes_.end() || it->second->state == Route::State::kEnded ||
           (it->second->gen != gen && Live(*it->second) && !it->second->spawning);
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), request.grace + ready_timeout + absl::Seconds(10));
  auto it = routes_.find(name);
  if (it == routes_.end()) return absl::NotFoundError(absl::StrCat("proc \"", name, "\" was removed during its restart"));
  Route& r = *it->second;
  r.restart_requested = false;
  if (r.state == Route::State::kEnded) {
    return absl::FailedPreconditionError(
        absl::StrCat("proc \"", name, "\" ended instead of restarting: ", r.status.ToString()));
  }
  if (!Live(r) || r.gen == gen) {
    return absl::DeadlineExceededError(absl::StrCat("proc \"", name, "\" is not ready again yet; watch its events"));
  }
  return InfoOf(r);
}

// Loop thread (the kStateMailbox): a proc saved its state.
void Host::OnSavedState(Message msg) {
  std::string prefix = absl::StrCat(frontend_text_, ",");
  ReturnReason reason = ReturnReason::kNone;
  std::string note;
  if (!absl::StartsWith(msg.src(), prefix)) {
    reason = ReturnReason::kUnroutable;
    note = absl::StrCat("state can be saved only by procs of host ", frontend_text_);
  } else {
    std::string name(msg.src().substr(prefix.size()));
    absl::MutexLock lock(&mu_);
    auto it = routes_.find(name);
    size_t size = msg.payload().size();
    if (it == routes_.end() || !Live(*it->second)) {
      reason = ReturnReason::kUnknownProc;
      note = absl::StrCat("no running proc named \"", name, "\" saves state here");
    } else if (size > proc::kMaxStateBytes) {
      reason = ReturnReason::kTooLarge;
      note = absl::StrCat("saved state of ", size, " bytes is over the limit of ", proc::kMaxStateBytes);
    } else {
      Route& r = *it->second;
      size_t old = r.saved_state ? r.saved_state->size() : 0;
      if (saved_state_total_ - old + size > opts_.saved_state_bytes) {
        reason = ReturnReason::kBufferFull;
        note = absl::StrCat("the host keeps at most ", opts_.saved_state_bytes, " bytes of saved state for all procs");
      } else {
        SetSavedState(r, std::string(msg.payload()));
      }
    }
  }
  if (reason != ReturnReason::kNone) Return(std::move(msg), reason, note);
}

// ---- Groups and the tree --------------------------------------------------------------

absl::Status Host::CreateGroup(const std::string& name, const GroupSpec& spec) {
  absl::MutexLock lock(&mu_);
  return supervisor_.AddGroup(name, spec);
}

absl::Status Host::RemoveGroup(const std::string& name) {
  absl::MutexLock lock(&mu_);
  return supervisor_.RemoveGroup(name);
}

std::vector<TreeNode> Host::Tree() const {
  std::vector<TreeNode> roots;
  {
    absl::MutexLock lock(&mu_);
    absl::flat_hash_map<std::string, GroupInfo> groups;
    for (GroupInfo& g : supervisor_.Groups()) groups.emplace(g.name, std::move(g));
    std::function<void(const std::vector<GroupInfo::Child>&, std::vector<TreeNode>*)> build =
        [&](const std::vector<GroupInfo::Child>& children, std::vector<TreeNode>* out)
            ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          for (const auto& c : children) {
            TreeNode node;
            node.is_group = c.is_group;
            node.name = c.name;
            if (c.is_group) {
              node.group = groups.at(c.name);
              build(node.group.children, &node.children);
            } else {
              auto it = routes_.find(c.name);
              if (it == routes_.end()) continue;
              node.proc = InfoOf(*it->second);
            }
            out->push_back(std::move(node));
          }
        };
    build(supervisor_.TopLevel(), &roots);
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

}  // namespace hostd::daemon
