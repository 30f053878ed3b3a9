// The values a Host hands out: what it knows of a proc (ProcInfo), what happened
// (HostEvent), the supervision tree (TreeNode), and the options of its calls.
// Plain data; see daemon/host.h for the calls that produce them.
#ifndef HOSTD_DAEMON_HOST_TYPES_H_
#define HOSTD_DAEMON_HOST_TYPES_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "manager/proc_manager.h"
#include "manager/supervisor.h"
#include "proc/proc_id.h"
#include "proc/proc_status.h"

namespace hostd::daemon {

// The supervision vocabulary is the manager's (manager/supervisor.h); the daemon
// speaks it under its own names too.
using manager::GroupInfo;
using manager::GroupSpec;
using manager::Strategy;
using manager::StrategyName;
using manager::Supervision;
using manager::Supervisor;

using Labels = std::map<std::string, std::string>;

// ProcStatus::reason of a proc hostd ended because its lease ran out.
inline constexpr absl::string_view kReasonLeaseExpired = "lease expired";
// A spawn's lease TTL bounds: under a second a renewal could not keep up with a
// noisy host; past a day the lease stops meaning "the client is still there".
inline constexpr absl::Duration kMinLeaseTtl = absl::Seconds(1);
inline constexpr absl::Duration kMaxLeaseTtl = absl::Hours(24);

// A client's claim on a proc (Host::Spawn): unless `owner` renews it
// (Host::RenewLease, or holds it with Host::HoldLease), the proc is terminated
// at `expires_at` with reason kReasonLeaseExpired and not restarted.
struct Lease {
  std::string owner;  // [A-Za-z0-9][A-Za-z0-9_.-]{0,63}
  absl::Duration ttl = absl::ZeroDuration();
  absl::Time expires_at = absl::InfiniteFuture();  // set by the host (now + ttl at spawn and each renewal)
  bool expired = false;                            // it ran out: the proc is being (or was) terminated
};

// `s`, saying kReasonLeaseExpired when `lease` ran out and `s` is an end: the
// reason of a Stopped or Killed status that does not already say who ended it, or
// before a Failed one's (an adopted proc's exit status may be unknown).
inline proc::ProcStatus WithLeaseReason(const std::optional<Lease>& lease, proc::ProcStatus s) {
  if (!lease || !lease->expired || !s.terminal() || absl::StartsWith(s.reason, kReasonLeaseExpired)) return s;
  if (s.state == proc::ProcState::kFailed) {
    s.reason = absl::StrCat(kReasonLeaseExpired, "; ", s.reason);
  } else if (s.reason.empty()) {
    s.reason = std::string(kReasonLeaseExpired);
  }
  return s;
}
struct ProcRecord;  // daemon/proc_table.h
// What the durable proc table is fed (ProcTable::SetRecorder says when and how):
// a proc's record and supervision (null once its name is forgotten) with the
// status its event carries; a group's spec when created, null when removed.
using ProcRecorder = std::function<void(const std::string& name, const ProcRecord* record,
                                        const Supervision* supervision, const proc::ProcStatus& status)>;
using GroupRecorder = std::function<void(const std::string& name, const GroupSpec* spec)>;

// One proc as the host knows it.
struct ProcInfo {
  std::string name{};
  proc::ProcId id;
  proc::ProcStatus status{};
  Labels labels{};
  std::string program{};
  std::vector<std::string> args{};
  manager::CgroupLimits limits{};  // as its spawn asked (hostd's defaults fill what it left unset)
  absl::Time created_at{};
  std::shared_ptr<manager::ProcHandle> handle{};  // null while starting or restarting
  int incarnation = 1;                            // 1, then +1 for each start after the first
  absl::Time incarnation_started{};               // when the current incarnation began to start
  Supervision supervision{};
  std::vector<std::string> groups{};  // from the top-level group down to its own
  // Ended, and its next incarnation is on the way, or its supervision has yet
  // to decide whether one is.
  bool restarting = false;
  // The host has applied its end and will not start it again. `status` may be
  // terminal a moment before, for an end that is final anyway (a stop was asked
  // for, or nothing restarts it); an end supervision has yet to decide shows
  // `restarting` instead.
  bool ended = false;
  size_t saved_state_bytes = 0;  // what its next incarnation would start with
  std::optional<Lease> lease{};  // when spawned with one
  manager::LivenessSpec liveness{};
};

// What happened. A proc's life: kSpawned, one kTransition for every status it
// went through (Running, Ready, Stopping, and its end, in order, none skipped even
// when it ends the moment it is ready), then either kTerminated (it was asked to
// stop), or kRestarting (its supervisor starts it again: attempt, delay, why;
// `start_failed` when the end was a start that never became ready), a kSpawnFailed
// for a start that failed, kRestarted once the new incarnation is ready (after
// that incarnation's Running and Ready transitions), or kGaveUp (it stays ended).
// kGaveUp with `is_group` names a group that went past its restart intensity.
// kRestartFailed: a requested restart could not get the proc's state; the proc
// keeps running. kRemoved: the name was forgotten.
struct HostEvent {
  enum class Kind {
    kSnapshot,
    kSpawned,
    kTransition,
    kSpawnFailed,
    kRemoved,
    kRestarting,
    kRestarted,
    kGaveUp,
    kRestartFailed,
    kTerminated,
  };
  uint64_t seq = 0;
  Kind kind = Kind::kTransition;
  std::string name{};  // the proc, or the group for a group's kGaveUp
  proc::ProcStatus status{};
  absl::Time at{};
  int incarnation = 0;
  std::vector<std::string> groups{};  // the proc's (or group's) groups, top-level first
  bool is_group = false;
  int attempt = 0;            // kRestarting
  absl::Duration delay{};     // kRestarting
  bool start_failed = false;  // kRestarting, kSpawnFailed (of a restart)
  std::string detail{};       // why, for kRestarting, kGaveUp, kRestartFailed, kSpawnFailed
};

// The supervision tree now (Host::Tree): groups and procs in start order.
struct TreeNode {
  bool is_group = false;
  std::string name;
  GroupInfo group;               // is_group
  std::optional<ProcInfo> proc;  // !is_group
  manager::ProcUsage usage;      // !is_group: its processes' (ProcHandle::Usage)
  std::vector<TreeNode> children;
};

struct RestartRequest {
  bool handoff = true;  // ask the proc for its state and start the next incarnation with it
  absl::Duration handoff_timeout = absl::Seconds(10);
  absl::Duration grace = absl::Seconds(5);  // for stopping the running incarnation
};

struct BroadcastResult {
  int targeted = 0;   // procs the signal was sent to (live or starting)
  int delivered = 0;  // acknowledged by the proc's runtime
  int queued = 0;     // waiting in the buffer of a starting or restarting proc
  int failed = 0;     // came back (the proc ended, ...)
};

struct HostCounters {
  uint64_t forwarded = 0;  // messages handed to a proc link or a remote host link
  uint64_t returned = 0;   // messages sent back to their src
  uint64_t dropped = 0;    // returned messages that could not be delivered either
  uint64_t spawned = 0;    // successful spawns
  uint64_t lease_expirations = 0;  // procs terminated because their lease ran out
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_HOST_TYPES_H_
