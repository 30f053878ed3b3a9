// ProcStatus: where a proc is in its life, and ProcStatusCell: the one state
// machine every proc manager uses, so tests against the in-process manager exercise
// the real semantics.
//
//   Starting -> Running{pid, started_at} -> Ready{addr} -> Stopping ->
//     one terminal state: Stopped{exit_code, stderr_tail} | Killed{signal, core_dumped, reason}
//                         | Failed{reason}
//
// Any non-terminal state may end in a terminal one; Stopping may be entered from
// Starting, Running or Ready; Ready cannot follow Stopping; terminal states absorb
// (every later transition is refused). Fields learnt earlier (pid, started_at, addr,
// ready_at) carry forward into later states.
#ifndef HOSTD_PROC_PROC_STATUS_H_
#define HOSTD_PROC_PROC_STATUS_H_

#include <sys/types.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "channel/channel_addr.h"

namespace hostd::proc {

// Killed::reason of a proc the kernel's OOM killer ended (its cgroup's memory.max).
inline constexpr absl::string_view kReasonOom = "oom";
// Killed::reason of a proc its liveness check failed: this, then ": " and why.
inline constexpr absl::string_view kReasonLiveness = "liveness failed";

enum class ProcState { kStarting, kRunning, kReady, kStopping, kStopped, kKilled, kFailed };

absl::string_view ProcStateName(ProcState s);
bool IsTerminal(ProcState s);
bool IsLegalTransition(ProcState from, ProcState to);

// Where a watcher starts: at the status now, or at the first one (Starting), so
// that it sees every status the proc went through. A proc has at most five.
enum class WatchFrom { kNow, kFirst };

struct ProcStatus {
  ProcState state = ProcState::kStarting;
  pid_t pid = 0;  // from Running (0 for in-process procs)
  absl::Time started_at = absl::InfinitePast();
  std::optional<channel::ChannelAddr> addr;    // from Ready (none when readiness has no address)
  absl::Time ready_at = absl::InfinitePast();  // when it became Ready; InfinitePast if it never did
  int exit_code = 0;                           // Stopped
  std::string stderr_tail;                     // Stopped, Killed: the end of the proc's stderr
  int signal = 0;                              // Killed
  bool core_dumped = false;                    // Killed
  std::string reason;                          // Failed; Stopped, Killed: who ended it, when known (kReasonOom, kReasonLiveness)
  std::string note;                            // terminal: worth knowing, not the cause (e.g. output lost)

  static ProcStatus Starting() { return {}; }
  static ProcStatus Running(pid_t pid, absl::Time started_at);
  static ProcStatus Ready(channel::ChannelAddr addr);
  static ProcStatus Stopping();
  static ProcStatus Stopped(int exit_code, std::string stderr_tail = "");
  static ProcStatus Killed(int signal, bool core_dumped, std::string stderr_tail = "");
  static ProcStatus Failed(std::string reason);

  bool terminal() const { return IsTerminal(state); }
  bool was_ready() const { return ready_at != absl::InfinitePast(); }
  // "Stopped(exit 7)", "Stopped(exit 0, lease expired)", "Killed(SIGKILL, oom)", "Ready(unix:@x)", ...; stderr
  // not included.
  std::string ToString() const;

  friend bool operator==(const ProcStatus&, const ProcStatus&) = default;
};

std::ostream& operator<<(std::ostream& os, const ProcStatus& s);

// A thread-safe ProcStatus with watchers and waiting.
//
// Notifications are serialized: each applied status is queued and delivered to the
// watchers in order by whichever thread is delivering, with no lock held, so a
// watcher may call Transition, Watch or Unwatch (or Kill a handle): what it causes is
// delivered next, in order. Await wakes only once every applied status has been
// delivered, so a waiter never runs ahead of the watchers; except a waiter on the
// delivering thread (a watcher that waits, e.g. calls Kill or Wait on its handle),
// which waits for the status alone: the statuses it would wait for are delivered
// after its callback returns.
class ProcStatusCell {
 public:
  using Watcher = std::function<void(const ProcStatus&)>;

  ProcStatus Get() const;
  // How many statuses have been applied: it changes exactly when Get() does.
  uint64_t Applied() const;

  // Moves to `next` (carrying forward pid, started_at, addr and ready_at) if the
  // transition is legal; FailedPrecondition naming both states otherwise, status
  // unchanged.
  absl::Status Transition(ProcStatus next);

  // `fn` is called with the current status now (kFirst: with every status so far,
  // oldest first), then with every later one, in order. After Unwatch returns it
  // is not called again, unless from a delivery already under way on another
  // thread.
  uint64_t Watch(Watcher fn, WatchFrom from = WatchFrom::kNow);
  void Unwatch(uint64_t id);

  // Waits until `pred` holds or `deadline`; returns the status at that point and
  // sets `*met`.
  ProcStatus Await(const std::function<bool(const ProcStatus&)>& pred, absl::Time deadline, bool* met) const;

 private:
  struct Registered {
    uint64_t id;
    uint64_t after;  // sees only statuses with a sequence number above this
    std::shared_ptr<Watcher> fn;
  };
  // Delivers queued statuses until none is left (the caller became the deliverer).
  void Deliver();

  mutable absl::Mutex mu_;
  ProcStatus status_ ABSL_GUARDED_BY(mu_);
  std::vector<ProcStatus> history_ ABSL_GUARDED_BY(mu_) = {ProcStatus{}};  // every status applied, at most 5
  uint64_t applied_ ABSL_GUARDED_BY(mu_) = 0;                              // sequence number of status_
  uint64_t delivered_ ABSL_GUARDED_BY(mu_) = 0;  // highest sequence number every watcher has seen
  std::deque<std::pair<uint64_t, ProcStatus>> pending_ ABSL_GUARDED_BY(mu_);
  bool delivering_ ABSL_GUARDED_BY(mu_) = false;
  std::thread::id deliverer_ ABSL_GUARDED_BY(mu_);
  uint64_t next_watcher_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<Registered> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hostd::proc

#endif  // HOSTD_PROC_PROC_STATUS_H_
