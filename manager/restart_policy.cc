#include "manager/restart_policy.h"

#include <algorithm>
#include <cmath>

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hostd::manager {

absl::string_view RestartModeName(RestartMode m) {
  switch (m) {
    case RestartMode::kNever: return "never";
    case RestartMode::kOnFailure: return "on-failure";
    case RestartMode::kAlways: return "always";
  }
  return "?";
}

absl::Status ValidateRestartPolicy(const RestartPolicy& p) {
  if (p.max_restarts < 0) {
    return absl::InvalidArgumentError(absl::StrCat("restart.max_restarts: ", p.max_restarts, " is negative"));
  }
  if (p.within <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("restart.within: ", absl::FormatDuration(p.within), " must be positive"));
  }
  const Backoff& b = p.backoff;
  if (b.initial < absl::ZeroDuration() || b.max < b.initial) {
    return absl::InvalidArgumentError(absl::StrCat("restart.backoff: initial ", absl::FormatDuration(b.initial),
                                                   " must be >= 0 and <= max ", absl::FormatDuration(b.max)));
  }
  if (!(b.multiplier >= 1.0) || b.multiplier > 100.0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("restart.backoff.multiplier: %g is not in [1, 100]", b.multiplier));
  }
  if (!(b.jitter >= 0.0 && b.jitter <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrFormat("restart.backoff.jitter: %g is not in [0, 1]", b.jitter));
  }
  if (p.permanent_exit_codes.size() > 32) {
    return absl::InvalidArgumentError(
        absl::StrFormat("restart.permanent_exit_codes: %d codes; at most 32", p.permanent_exit_codes.size()));
  }
  for (int code : p.permanent_exit_codes) {
    if (code < 0 || code > 255) {
      return absl::InvalidArgumentError(
          absl::StrFormat("restart.permanent_exit_codes: %d is not an exit code (0..255)", code));
    }
  }
  return absl::OkStatus();
}

bool WantsRestart(RestartMode mode, const proc::ProcStatus& end) {
  switch (mode) {
    case RestartMode::kNever: return false;
    case RestartMode::kAlways: return true;
    case RestartMode::kOnFailure: return !(end.state == proc::ProcState::kStopped && end.exit_code == 0);
  }
  return false;
}

absl::Duration RestartTracker::BaseDelay(int attempt) const {
  const Backoff& b = policy_.backoff;
  double scaled = absl::ToDoubleSeconds(b.initial) * std::pow(b.multiplier, std::max(0, attempt - 1));
  double capped = std::min(scaled, absl::ToDoubleSeconds(b.max));
  return absl::Seconds(capped);
}

RestartDecision RestartTracker::OnEnd(const proc::ProcStatus& end, absl::Time now) {
  RestartDecision d;
  if (end.state == proc::ProcState::kStopped &&
      absl::c_linear_search(policy_.permanent_exit_codes, end.exit_code)) {
    d.why = absl::StrCat("exit code ", end.exit_code, " is listed as permanent (restart.permanent_exit_codes); ",
                         "not restarted");
    return d;
  }
  if (!WantsRestart(policy_.mode, end)) {
    d.why = absl::StrCat("restart policy ", RestartModeName(policy_.mode), " does not restart a proc that ended ",
                         end.ToString());
    return d;
  }
  // A proc that stayed ready for a whole window earned a fresh backoff.
  if (ready_since_ != absl::InfiniteFuture() && now - ready_since_ >= policy_.within) attempt_ = 0;
  ready_since_ = absl::InfiniteFuture();
  while (!restarts_.empty() && now - restarts_.front() >= policy_.within) restarts_.pop_front();
  if (static_cast<int>(restarts_.size()) >= policy_.max_restarts) {
    d.why = absl::StrFormat("gave up: %d restarts within %s (the limit); last end %s", restarts_.size(),
                            absl::FormatDuration(policy_.within), end.ToString());
    return d;
  }
  restarts_.push_back(now);
  d.restart = true;
  d.attempt = ++attempt_;
  double cut = policy_.backoff.jitter > 0 ? absl::Uniform(rng_, 0.0, policy_.backoff.jitter) : 0.0;
  d.delay = BaseDelay(d.attempt) * (1.0 - cut);
  d.why = end.ToString();
  return d;
}

}  // namespace hostd::manager
