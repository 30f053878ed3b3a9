#include "manager/liveness.h"

#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace hostd::manager {

namespace asio = boost::asio;

namespace {

std::string SignalText(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev == nullptr ? absl::StrCat("signal ", sig) : absl::StrCat("SIG", abbrev);
}

absl::Status Bad(absl::string_view prefix, absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(prefix, field, ": ", why));
}

std::chrono::nanoseconds Chrono(absl::Duration d) { return absl::ToChronoNanoseconds(d); }

}  // namespace

std::string LivenessSpec::ToString() const {
  std::string out;
  switch (kind) {
    case LivenessKind::kNone: return "none";
    case LivenessKind::kHeartbeat:
      out = absl::StrCat("heartbeat every ", absl::FormatDuration(period));
      break;
    case LivenessKind::kExec:
      out = absl::StrCat("exec \"", absl::StrJoin(command, " "), "\" every ", absl::FormatDuration(period),
                         ", timeout ", absl::FormatDuration(timeout == absl::ZeroDuration() ? period : timeout));
      break;
  }
  absl::StrAppend(&out, ", ", failure_threshold, failure_threshold == 1 ? " miss" : " misses");
  if (initial_delay > absl::ZeroDuration()) absl::StrAppend(&out, ", after ", absl::FormatDuration(initial_delay));
  if (dump_signal != 0) {
    absl::StrAppend(&out, ", ", SignalText(dump_signal), " then ", absl::FormatDuration(dump_grace), " before SIGKILL");
  }
  return out;
}

absl::Status ValidateLiveness(const LivenessSpec& spec, absl::string_view prefix) {
  if (!spec.enabled()) return absl::OkStatus();
  if (spec.kind != LivenessKind::kHeartbeat && spec.kind != LivenessKind::kExec) {
    return Bad(prefix, "kind", absl::StrCat(static_cast<int>(spec.kind), " is neither heartbeat nor exec"));
  }
  if (spec.period < kMinLivenessPeriod || spec.period > kMaxLivenessPeriod) {
    return Bad(prefix, "period",
               absl::StrCat(absl::FormatDuration(spec.period), "; must be ", absl::FormatDuration(kMinLivenessPeriod),
                            " to ", absl::FormatDuration(kMaxLivenessPeriod)));
  }
  if (spec.kind == LivenessKind::kHeartbeat) {
    if (spec.timeout != absl::ZeroDuration()) {
      return Bad(prefix, "timeout", "applies to exec probes only; a heartbeat check counts periods without a beat");
    }
    if (!spec.command.empty()) return Bad(prefix, "command", "applies to exec probes only");
  } else {
    if (spec.command.empty() || spec.command[0].empty()) return Bad(prefix, "command", "an exec probe needs a program");
    if (spec.command.size() > kMaxLivenessArgs) {
      return Bad(prefix, "command", absl::StrCat(spec.command.size(), " arguments; at most ", kMaxLivenessArgs));
    }
    size_t bytes = 0;
    for (const std::string& arg : spec.command) {
      if (arg.find('\0') != std::string::npos) return Bad(prefix, "command", "an argument holds a NUL byte");
      bytes += arg.size();
    }
    if (bytes > kMaxLivenessCommandBytes) {
      return Bad(prefix, "command", absl::StrCat(bytes, " bytes; at most ", kMaxLivenessCommandBytes));
    }
    if (spec.timeout < absl::ZeroDuration() || spec.timeout > spec.period) {
      return Bad(prefix, "timeout",
                 absl::StrCat(absl::FormatDuration(spec.timeout), "; must be 0 (the period) up to the period, ",
                              absl::FormatDuration(spec.period)));
    }
  }
  if (spec.failure_threshold < 1 || spec.failure_threshold > kMaxLivenessFailures) {
    return Bad(prefix, "failure_threshold",
               absl::StrCat(spec.failure_threshold, "; must be 1 to ", kMaxLivenessFailures));
  }
  if (spec.initial_delay < absl::ZeroDuration() || spec.initial_delay > kMaxLivenessInitialDelay) {
    return Bad(prefix, "initial_delay",
               absl::StrCat(absl::FormatDuration(spec.initial_delay), "; must be 0 to ",
                            absl::FormatDuration(kMaxLivenessInitialDelay)));
  }
  if (spec.dump_signal != 0 &&
      (spec.dump_signal < 1 || spec.dump_signal > SIGRTMAX || spec.dump_signal == SIGKILL ||
       spec.dump_signal == SIGSTOP)) {
    return Bad(prefix, "dump_signal",
               absl::StrCat(spec.dump_signal, "; must be 0 (none) or a signal number other than SIGKILL and SIGSTOP"));
  }
  if (spec.dump_grace < absl::ZeroDuration() || spec.dump_grace > kMaxLivenessDumpGrace) {
    return Bad(prefix, "dump_grace",
               absl::StrCat(absl::FormatDuration(spec.dump_grace), "; must be 0 to ",
                            absl::FormatDuration(kMaxLivenessDumpGrace)));
  }
  return absl::OkStatus();
}

// kind, period, timeout, threshold, initial delay, dump signal, dump grace (all
// durations in nanoseconds), then the command's arguments.
std::string EncodeLiveness(const LivenessSpec& spec) {
  if (!spec.enabled()) return "";
  std::vector<std::string> fields = {
      absl::StrCat(static_cast<int>(spec.kind)),         absl::StrCat(absl::ToInt64Nanoseconds(spec.period)),
      absl::StrCat(absl::ToInt64Nanoseconds(spec.timeout)), absl::StrCat(spec.failure_threshold),
      absl::StrCat(absl::ToInt64Nanoseconds(spec.initial_delay)), absl::StrCat(spec.dump_signal),
      absl::StrCat(absl::ToInt64Nanoseconds(spec.dump_grace))};
  fields.insert(fields.end(), spec.command.begin(), spec.command.end());
  return absl::StrJoin(fields, absl::string_view("\0", 1));
}

absl::StatusOr<LivenessSpec> DecodeLiveness(absl::string_view encoded) {
  LivenessSpec spec;
  if (encoded.empty()) return spec;
  std::vector<std::string> fields = absl::StrSplit(encoded, absl::string_view("\0", 1));
  int64_t n[7];
  if (fields.size() < 7) return absl::InvalidArgumentError("stored liveness check: too few fields");
  for (int i = 0; i < 7; ++i) {
    if (!absl::SimpleAtoi(fields[i], &n[i])) {
      return absl::InvalidArgumentError(absl::StrCat("stored liveness check: field ", i, " is not a number"));
    }
  }
  spec.kind = static_cast<LivenessKind>(n[0]);
  spec.period = absl::Nanoseconds(n[1]);
  spec.timeout = absl::Nanoseconds(n[2]);
  spec.failure_threshold = static_cast<int>(n[3]);
  spec.initial_delay = absl::Nanoseconds(n[4]);
  spec.dump_signal = static_cast<int>(n[5]);
  spec.dump_grace = absl::Nanoseconds(n[6]);
  spec.command.assign(fields.begin() + 7, fields.end());
  if (absl::Status valid = ValidateLiveness(spec, "stored liveness check: "); !valid.ok()) return valid;
  return spec;
}

std::shared_ptr<LivenessCheck> LivenessCheck::Start(channel::EventLoop& loop, LivenessSpec spec, LaunchRequest probe,
                                                    Failed failed) {
  loop.AssertInLoop("LivenessCheck::Start");
  std::shared_ptr<LivenessCheck> check(new LivenessCheck(loop, std::move(spec), std::move(probe), std::move(failed)));
  check->Schedule(check->spec_.initial_delay +
                  (check->spec_.kind == LivenessKind::kHeartbeat ? check->spec_.period : absl::ZeroDuration()));
  return check;
}

LivenessCheck::LivenessCheck(channel::EventLoop& loop, LivenessSpec spec, LaunchRequest probe, Failed failed)
    : loop_(loop),
      spec_(std::move(spec)),
      probe_(std::move(probe)),
      failed_(std::move(failed)),
      timer_(loop.context()),
      probe_timer_(loop.context()) {}

LivenessCheck::~LivenessCheck() = default;

void LivenessCheck::Stop() {
  loop_.AssertInLoop("LivenessCheck::Stop");
  stopped_ = true;
  timer_.cancel();
  probe_timer_.cancel();
  if (probe_exit_ != nullptr) {
    KillProbe();
    siginfo_t info{};
    ::waitid(P_PIDFD, static_cast<id_t>(probe_exit_->native_handle()), &info, WEXITED);
    probe_exit_.reset();
  }
}

void LivenessCheck::Schedule(absl::Duration after) {
  timer_.expires_after(Chrono(std::max(after, absl::ZeroDuration())));
  timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    std::shared_ptr<LivenessCheck> self = weak.lock();
    if (ec || self == nullptr || self->stopped_) return;
    self->Tick();
  });
}

void LivenessCheck::Tick() {
  if (spec_.kind == LivenessKind::kExec) return RunProbe();
  uint64_t beats = beats_.load(std::memory_order_relaxed);
  bool beat = beats != seen_beats_;
  seen_beats_ = beats;
  // Scheduled first: Result may stop the check.
  Schedule(spec_.period);
  Result(beat ? "" : absl::StrCat("no heartbeat for ", spec_.failure_threshold, " period(s) of ",
                                  absl::FormatDuration(spec_.period)));
}

void LivenessCheck::RunProbe() {
  probe_started_ = absl::Now();
  absl::StatusOr<Launched> launched = Launch(probe_);
  if (!launched.ok()) {
    Schedule(spec_.period);
    return Result(absl::StrCat("probe \"", probe_.path, "\" could not be started: ", launched.status().message()));
  }
  probe_pid_ = launched->pid;
  const uint64_t serial = ++probe_serial_;
  probe_exit_ = std::make_unique<asio::posix::stream_descriptor>(loop_.context(), launched->pidfd.release());
  const absl::Duration timeout = spec_.timeout == absl::ZeroDuration() ? spec_.period : spec_.timeout;
  probe_timer_.expires_after(Chrono(timeout));
  // Each completion checks it is still about this probe: a timer that expired as
  // the probe ended may run after the next probe started.
  auto current = [weak = weak_from_this(), serial](boost::system::error_code ec) -> std::shared_ptr<LivenessCheck> {
    std::shared_ptr<LivenessCheck> self = weak.lock();
    if (ec || self == nullptr || self->stopped_ || self->probe_exit_ == nullptr || self->probe_serial_ != serial) {
      return nullptr;
    }
    return self;
  };
  probe_timer_.async_wait([current](boost::system::error_code ec) {
    if (std::shared_ptr<LivenessCheck> self = current(ec)) self->ProbeEnded(/*timed_out=*/true);
  });
  probe_exit_->async_wait(asio::posix::descriptor_base::wait_read, [current](boost::system::error_code ec) {
    if (std::shared_ptr<LivenessCheck> self = current(ec)) self->ProbeEnded(/*timed_out=*/false);
  });
}

// The probe's own group: its id is held by the probe's zombie until it is reaped
// here, so it names nothing else.
void LivenessCheck::KillProbe() {
  ::syscall(SYS_pidfd_send_signal, probe_exit_->native_handle(), SIGKILL, nullptr, 0);
  ::kill(-probe_pid_, SIGKILL);
}

void LivenessCheck::ProbeEnded(bool timed_out) {
  probe_timer_.cancel();
  const int pidfd = probe_exit_->native_handle();
  if (timed_out) KillProbe();
  siginfo_t info{};
  // Blocks at most until the SIGKILL above takes effect; otherwise the pidfd was readable.
  const bool reaped = ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED) == 0;
  // What the probe left in its group (reparented to this subreaper) goes too.
  ::kill(-probe_pid_, SIGKILL);
  siginfo_t member{};
  while (::waitid(P_PGID, static_cast<id_t>(probe_pid_), &member, WEXITED | WNOHANG) == 0 && member.si_pid != 0) {
    member = {};
  }
  probe_exit_.reset();
  std::string miss;
  if (timed_out) {
    const absl::Duration timeout = spec_.timeout == absl::ZeroDuration() ? spec_.period : spec_.timeout;
    miss = absl::StrCat("probe \"", absl::StrJoin(spec_.command, " "), "\" ran past its timeout of ",
                        absl::FormatDuration(timeout));
  } else if (!reaped) {
    miss = absl::StrCat("probe \"", absl::StrJoin(spec_.command, " "), "\": its exit could not be read: ",
                        ::strerror(errno));
  } else if (info.si_code == CLD_EXITED && info.si_status != 0) {
    miss = absl::StrCat("probe \"", absl::StrJoin(spec_.command, " "), "\" exited ", info.si_status);
  } else if (info.si_code != CLD_EXITED) {
    miss = absl::StrCat("probe \"", absl::StrJoin(spec_.command, " "), "\" was killed by ", SignalText(info.si_status));
  }
  Schedule(spec_.period - (absl::Now() - probe_started_));
  Result(std::move(miss));
}

void LivenessCheck::Result(std::string why) {
  if (why.empty()) {
    misses_ = 0;
    return;
  }
  if (++misses_ < spec_.failure_threshold) return;
  if (spec_.kind == LivenessKind::kExec) {
    absl::StrAppend(&why, spec_.failure_threshold > 1 ? absl::StrCat(" (", misses_, " misses in a row)") : "");
  }
  Stop();
  Failed failed = std::move(failed_);
  if (failed) failed(std::move(why));
}

}  // namespace hostd::manager
