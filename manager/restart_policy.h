// Restart policies (used by manager/supervisor.h): when an ended proc is
// started again, after what delay, and when its supervisor gives up.
//
//   RestartTracker t({.mode = RestartMode::kOnFailure, .max_restarts = 3, .within = absl::Seconds(5)});
//   RestartDecision d = t.OnEnd(handle->status(), absl::Now());
//   if (d.restart) schedule a new incarnation after d.delay; else report d.why
//
// Modes are OTP's: kNever (temporary), kOnFailure (transient: restarted unless it
// stopped with exit code 0), kAlways (permanent). Intensity: more than
// `max_restarts` restarts within any `within` window means giving up. Delays grow
// exponentially from `backoff.initial` by `backoff.multiplier` up to
// `backoff.max`, each cut by a random fraction up to `backoff.jitter` (so many
// procs failing together do not restart in step); the growth starts again once a
// restarted proc has stayed ready for `within`. An exit code listed in
// `permanent_exit_codes` (a configuration error, say) is an end no mode restarts.
// A value type; RestartTracker is thread-compatible.
#ifndef HOSTD_MANAGER_RESTART_POLICY_H_
#define HOSTD_MANAGER_RESTART_POLICY_H_

#include <deque>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proc/proc_status.h"

namespace hostd::manager {

enum class RestartMode { kNever, kOnFailure, kAlways };

absl::string_view RestartModeName(RestartMode m);

struct Backoff {
  absl::Duration initial = absl::Milliseconds(100);
  absl::Duration max = absl::Seconds(30);
  double multiplier = 2.0;
  double jitter = 0.2;  // 0..1
};

struct RestartPolicy {
  RestartMode mode = RestartMode::kNever;
  int max_restarts = 3;
  absl::Duration within = absl::Seconds(5);
  Backoff backoff = {};
  // A stop with one of these exit codes is never restarted (0..255, at most 32).
  std::vector<int> permanent_exit_codes{};
};

// InvalidArgument naming the field and the rule it breaks.
absl::Status ValidateRestartPolicy(const RestartPolicy& p);

// Whether a proc that ended with `end` is restarted under `mode`. A failure is any
// end but Stopped(exit 0).
bool WantsRestart(RestartMode mode, const proc::ProcStatus& end);

struct RestartDecision {
  bool restart = false;
  absl::Duration delay = absl::ZeroDuration();
  int attempt = 0;  // 1 for the first restart since the growth last started
  std::string why;  // why not (or, when restarting, what ended)
};

class RestartTracker {
 public:
  explicit RestartTracker(RestartPolicy policy) : policy_(policy) {}

  // The proc ended with `end` at `now`: restart after `delay`, or not, and why.
  RestartDecision OnEnd(const proc::ProcStatus& end, absl::Time now);
  // The restarted proc is ready at `now`: if it stays up for `within`, the next
  // failure starts the backoff from `initial` again.
  void OnReady(absl::Time now) { ready_since_ = now; }

  // The delay before restart number `attempt` without jitter (for tests and
  // display): min(max, initial * multiplier^(attempt-1)).
  absl::Duration BaseDelay(int attempt) const;
  const RestartPolicy& policy() const { return policy_; }

 private:
  const RestartPolicy policy_;
  std::deque<absl::Time> restarts_;  // within the window
  int attempt_ = 0;
  absl::Time ready_since_ = absl::InfiniteFuture();
  absl::BitGen rng_;
};

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_RESTART_POLICY_H_
