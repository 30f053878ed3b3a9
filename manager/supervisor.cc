#include "manager/supervisor.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/status_macros.h"
#include "proc/proc_id.h"

namespace hostd::manager {
namespace {

// A group's intensity as a tracker: every failure of a child wants a restart.
RestartPolicy GroupPolicy(const GroupSpec& spec) {
  return {
      .mode = RestartMode::kAlways, .max_restarts = spec.max_restarts, .within = spec.within, .backoff = spec.backoff};
}

}  // namespace

absl::string_view StrategyName(Strategy s) {
  switch (s) {
    case Strategy::kOneForOne: return "one-for-one";
    case Strategy::kOneForAll: return "one-for-all";
    case Strategy::kRestForOne: return "rest-for-one";
  }
  return "?";
}

absl::Status Supervisor::AddGroup(const std::string& name, const GroupSpec& spec) {
  if (absl::Status s = proc::ProcId::ValidateName(name); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrReplaceAll(s.message(), {{"proc name", "group name"}}));
  }
  absl::Status policy = ValidateRestartPolicy(GroupPolicy(spec));
  if (!policy.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("group \"", name, "\": ", absl::StrReplaceAll(policy.message(), {{"restart.", ""}})));
  }
  if (groups_.contains(name)) return absl::AlreadyExistsError(absl::StrCat("group \"", name, "\" already exists"));
  if (!spec.parent.empty()) {
    auto p = groups_.find(spec.parent);
    if (p == groups_.end()) {
      return absl::NotFoundError(absl::StrCat("group \"", name, "\": no parent group named \"", spec.parent, "\""));
    }
    if (p->second.gave_up) {
      return absl::FailedPreconditionError(
          absl::StrCat("group \"", name, "\": parent group \"", spec.parent, "\" gave up (", p->second.why, ")"));
    }
  }
  Group g;
  g.spec = spec;
  g.tracker = std::make_unique<RestartTracker>(GroupPolicy(spec));
  groups_.emplace(name, std::move(g));
  ChildrenOf(spec.parent).push_back({.is_group = true, .name = name});
  return absl::OkStatus();
}

absl::Status Supervisor::RemoveGroup(const std::string& name) {
  auto it = groups_.find(name);
  if (it == groups_.end()) return absl::NotFoundError(absl::StrCat("no group named \"", name, "\""));
  if (!it->second.children.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("group \"", name, "\" still has ", it->second.children.size(),
                                                      " members; stop them (their names free up) first"));
  }
  std::erase_if(ChildrenOf(it->second.spec.parent), [&](const auto& c) { return c.is_group && c.name == name; });
  groups_.erase(it);
  return absl::OkStatus();
}

absl::Status Supervisor::CheckJoin(const std::string& group) const {
  if (group.empty()) return absl::OkStatus();
  auto it = groups_.find(group);
  if (it == groups_.end()) return absl::NotFoundError(absl::StrCat("no group named \"", group, "\"; create it first"));
  if (it->second.gave_up) {
    return absl::FailedPreconditionError(
        absl::StrCat("group \"", group, "\" gave up (", it->second.why, "); remove it and create it again"));
  }
  return absl::OkStatus();
}

std::vector<GroupInfo::Child>& Supervisor::ChildrenOf(const std::string& group) {
  return group.empty() ? top_ : groups_.at(group).children;
}

void Supervisor::AddProc(const std::string& name, const Supervision& sup) {
  RemoveProc(name);
  Proc p;
  p.sup = sup;
  p.tracker = std::make_unique<RestartTracker>(sup.restart);
  procs_.emplace(name, std::move(p));
  ChildrenOf(sup.group).push_back({.is_group = false, .name = name});
}

void Supervisor::RemoveProc(const std::string& name) {
  auto it = procs_.find(name);
  if (it == procs_.end()) return;
  const std::string& group = it->second.sup.group;
  if (group.empty() || groups_.contains(group)) {
    std::erase_if(ChildrenOf(group), [&](const auto& c) { return !c.is_group && c.name == name; });
  }
  procs_.erase(it);
}

bool Supervisor::Supervises(const std::string& name) const {
  auto it = procs_.find(name);
  return it != procs_.end() && (it->second.sup.restart.mode != RestartMode::kNever || !it->second.sup.group.empty());
}

std::vector<std::string> Supervisor::GroupPath(const std::string& proc) const {
  auto it = procs_.find(proc);
  return it == procs_.end() ? std::vector<std::string>{} : PathOfGroup(it->second.sup.group);
}

std::vector<std::string> Supervisor::PathOfGroup(const std::string& group) const {
  std::vector<std::string> path;
  for (std::string g = group; !g.empty() && groups_.contains(g); g = groups_.at(g).spec.parent) path.push_back(g);
  std::reverse(path.begin(), path.end());
  return path;
}

const Supervision* Supervisor::SupervisionOf(const std::string& proc) const {
  auto it = procs_.find(proc);
  return it == procs_.end() ? nullptr : &it->second.sup;
}

void Supervisor::FlattenChild(const GroupInfo::Child& c, std::vector<std::string>* out) const {
  if (c.is_group) {
    Flatten(c.name, out);
  } else {
    out->push_back(c.name);
  }
}

void Supervisor::Flatten(const std::string& group, std::vector<std::string>* out) const {
  for (const auto& c : groups_.at(group).children) FlattenChild(c, out);
}

// A group restarted by its parent starts afresh, as does every group inside it.
void Supervisor::Reset(const std::string& group) {
  Group& g = groups_.at(group);
  g.gave_up = false;
  g.why.clear();
  g.tracker = std::make_unique<RestartTracker>(GroupPolicy(g.spec));
  for (const auto& c : g.children) {
    if (c.is_group) Reset(c.name);
  }
}

Supervisor::Plan Supervisor::OnExit(const std::string& proc, const proc::ProcStatus& end, absl::Time now,
                                    bool start_failed) {
  Plan plan;
  auto pit = procs_.find(proc);
  if (pit == procs_.end()) return plan;
  Proc& p = pit->second;
  const std::string what = absl::StrCat("proc \"", proc, "\" ", start_failed ? "failed to start: " : "ended ",
                                        end.ToString(), start_failed || end.was_ready() ? "" : " before it was ready");
  if (!WantsRestart(p.sup.restart.mode, end)) {
    plan.why = absl::StrCat(what, "; its restart policy is ", RestartModeName(p.sup.restart.mode));
    return plan;
  }
  RestartDecision d = p.tracker->OnEnd(end, now);
  plan.why = what;
  plan.delay = d.delay;
  plan.attempt = d.attempt;
  plan.proc_gave_up = !d.restart;

  GroupInfo::Child failed{.is_group = false, .name = proc};
  bool failing = !d.restart;  // the failed child itself cannot be restarted
  std::string why = d.restart ? what : absl::StrCat("proc \"", proc, "\" ", d.why);
  std::string group = p.sup.group;
  auto end_for_good = [&] {
    std::vector<std::string> flat;
    FlattenChild(failed, &flat);
    plan.end = flat;
    for (auto it = flat.rbegin(); it != flat.rend(); ++it) {
      if (*it != proc) plan.stop.push_back(*it);
    }
    plan.why = why;
  };
  while (true) {
    if (group.empty()) {
      if (failing || failed.is_group) {
        end_for_good();
        return plan;
      }
      plan.restart = {proc};
      return plan;
    }
    Group& g = groups_.at(group);
    if (!failing) {
      RestartDecision gd = g.tracker->OnEnd(proc::ProcStatus::Failed(why), now);
      if (gd.restart) {
        ++g.restarts;
        auto pos = std::find_if(g.children.begin(), g.children.end(),
                                [&](const auto& c) { return c.is_group == failed.is_group && c.name == failed.name; });
        auto first = g.spec.strategy == Strategy::kOneForAll ? g.children.begin() : pos;
        auto last = g.spec.strategy == Strategy::kOneForOne ? pos + 1 : g.children.end();
        if (g.spec.strategy != Strategy::kOneForOne || failed.is_group) {
          plan.delay = gd.delay;
          plan.attempt = gd.attempt;
        }
        std::vector<std::string> flat;
        for (auto it = first; it != last; ++it) {
          if (it->is_group) Reset(it->name);
          FlattenChild(*it, &flat);
        }
        for (const std::string& n : flat) {
          Proc& member = procs_.at(n);
          if (n != proc && member.sup.restart.mode == RestartMode::kNever) {
            plan.end.push_back(n);
          } else {
            plan.restart.push_back(n);
          }
        }
        for (auto it = flat.rbegin(); it != flat.rend(); ++it) {
          if (*it != proc) plan.stop.push_back(*it);
        }
        plan.why = why;
        return plan;
      }
      why = absl::StrCat("group \"", group, "\" ", gd.why, " (", why, ")");
    } else {
      why = absl::StrCat("group \"", group, "\" gave up: ", why);
    }
    g.gave_up = true;
    g.why = why;
    plan.gave_up_groups.push_back(group);
    failed = {.is_group = true, .name = group};
    failing = false;
    group = g.spec.parent;
  }
}

void Supervisor::OnReady(const std::string& proc, absl::Time now) {
  auto it = procs_.find(proc);
  if (it == procs_.end()) return;
  it->second.tracker->OnReady(now);
  for (std::string g = it->second.sup.group; !g.empty(); g = groups_.at(g).spec.parent) {
    groups_.at(g).tracker->OnReady(now);
  }
}

std::vector<GroupInfo> Supervisor::Groups() const {
  std::vector<GroupInfo> out;
  std::deque<std::string> next;
  for (const auto& c : top_) {
    if (c.is_group) next.push_back(c.name);
  }
  while (!next.empty()) {
    const std::string name = next.front();
    next.pop_front();
    const Group& g = groups_.at(name);
    out.push_back(GroupInfo{.name = name,
                            .spec = g.spec,
                            .restarts = g.restarts,
                            .gave_up = g.gave_up,
                            .why = g.why,
                            .children = g.children});
    for (const auto& c : g.children) {
      if (c.is_group) next.push_back(c.name);
    }
  }
  return out;
}

std::vector<GroupInfo::Child> Supervisor::TopLevel() const { return top_; }

}  // namespace hostd::manager
