// Supervisor: the supervision tree of one host, as pure decisions. It decides;
// its owner (daemon/supervision_controller.h) acts (stops, waits, starts) and
// calls back. No threads, no clock of its own, no processes: it is tested alone.
//
// A supervised proc has a restart policy (manager/restart_policy.h) and may belong
// to a group. Groups form a forest: each has a strategy, a restart intensity (at
// most `max_restarts` restarts of its members within `within`) and an ordered list
// of children (procs and groups, in the order they joined: the start order).
//
// When a supervised proc ends on its own (not by request), OnExit returns a Plan:
//   - its policy does not restart it (never; on-failure and exit 0): nothing;
//   - no group: restart it after its backoff, or give it up past its intensity;
//   - in group G: the restart counts against G's intensity. Within it, G's
//     strategy picks what restarts: one-for-one the proc alone (after the proc's
//     own backoff), one-for-all every child of G, rest-for-one the proc and the
//     children that joined after it (after G's backoff). What restarts is stopped
//     first in reverse start order and started again in start order; members whose
//     policy is `never` are stopped and not started again (OTP's temporary).
//   - A proc past its own intensity, or G past its intensity, makes G give up: G's
//     procs are stopped and G's failure goes to its parent group as the failure of
//     one child (the same rules, one level up; a group that restarts starts afresh).
//     A top-level group that gives up ends its procs for good; the host keeps
//     running and reports it (GroupInfo::gave_up, and the Plan's gave_up_groups).
// A proc that ended is restarted only through a Plan. Thread-compatible: its owner
// guards it with its lock.
#ifndef HOSTD_MANAGER_SUPERVISOR_H_
#define HOSTD_MANAGER_SUPERVISOR_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "manager/restart_policy.h"
#include "proc/proc_status.h"

namespace hostd::manager {

enum class Strategy { kOneForOne, kOneForAll, kRestForOne };
absl::string_view StrategyName(Strategy s);

struct GroupSpec {
  std::string parent;  // empty: a top-level group
  Strategy strategy = Strategy::kOneForOne;
  int max_restarts = 3;
  absl::Duration within = absl::Seconds(5);
  Backoff backoff = {};  // between restarts of several members
};

// How a proc is supervised (HostSpawn options).
struct Supervision {
  RestartPolicy restart = {};  // mode kNever by default: not restarted
  std::string group;           // empty: in no group
};

struct GroupInfo {
  std::string name;
  GroupSpec spec;
  int restarts = 0;  // by this group, over its life
  bool gave_up = false;
  std::string why;  // why it gave up
  struct Child {
    bool is_group = false;
    std::string name;
  };
  std::vector<Child> children;  // start order
};

class Supervisor {
 public:
  // InvalidArgument for a bad name or spec; AlreadyExists; NotFound parent.
  absl::Status AddGroup(const std::string& name, const GroupSpec& spec);
  // FailedPrecondition while it has children.
  absl::Status RemoveGroup(const std::string& name);
  // OK when a proc may join `group` (empty: none): NotFound, or FailedPrecondition
  // for a group that gave up.
  absl::Status CheckJoin(const std::string& group) const;
  // Adds (or, for a name spawned again, replaces) a proc at the end of its group.
  void AddProc(const std::string& name, const Supervision& sup);
  void RemoveProc(const std::string& name);

  // Whether an end of `name` needs OnExit: it has a restart policy or a group.
  bool Supervises(const std::string& name) const;
  // The groups from the top down to the proc's own (empty when in none).
  std::vector<std::string> GroupPath(const std::string& proc) const;
  // The groups from the top down to `group` itself.
  std::vector<std::string> PathOfGroup(const std::string& group) const;
  // The proc's supervision; null when it has none. Valid until the supervisor changes.
  const Supervision* SupervisionOf(const std::string& proc) const;

  struct Plan {
    std::vector<std::string> stop;            // members to stop first, in this order (reverse start order)
    std::vector<std::string> restart;         // then to start again, in this order, after `delay`
    std::vector<std::string> end;             // to end for good (stopped first if live)
    std::vector<std::string> gave_up_groups;  // innermost first
    bool proc_gave_up = false;                // the proc went past its own intensity
    absl::Duration delay = absl::ZeroDuration();
    int attempt = 0;
    std::string why;
    bool empty() const { return restart.empty() && end.empty(); }
  };
  // `proc` ended with `end` at `now` on its own; `start_failed` when the end is
  // a restart that never became ready.
  Plan OnExit(const std::string& proc, const proc::ProcStatus& end, absl::Time now, bool start_failed);
  // The proc's new incarnation is ready: its backoff, and its groups', may reset
  // after a quiet window.
  void OnReady(const std::string& proc, absl::Time now);

  // Every group, parents before children, each level in creation order.
  std::vector<GroupInfo> Groups() const;
  // Top-level procs and groups, in the order they joined.
  std::vector<GroupInfo::Child> TopLevel() const;

 private:
  struct Proc {
    Supervision sup;
    std::unique_ptr<RestartTracker> tracker;
  };
  struct Group {
    GroupSpec spec;
    std::unique_ptr<RestartTracker> tracker;
    std::vector<GroupInfo::Child> children;
    int restarts = 0;
    bool gave_up = false;
    std::string why;
  };
  void Flatten(const std::string& group, std::vector<std::string>* out) const;
  void FlattenChild(const GroupInfo::Child& c, std::vector<std::string>* out) const;
  void Reset(const std::string& group);
  std::vector<GroupInfo::Child>& ChildrenOf(const std::string& group);

  absl::flat_hash_map<std::string, Proc> procs_;
  absl::flat_hash_map<std::string, Group> groups_;
  std::vector<GroupInfo::Child> top_;
};

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_SUPERVISOR_H_
