#include "daemon/proto_convert.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/quote.h"
#include "base/status_macros.h"

namespace hostd::daemon {

grpc::Status ToGrpc(const absl::Status& s) {
  // absl::StatusCode and grpc::StatusCode share their numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

void ToProto(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return;
  int64_t ns = absl::ToUnixNanos(t);
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

void ToProto(absl::Duration d, google::protobuf::Duration* out) {
  int64_t ns = absl::ToInt64Nanoseconds(d);
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

absl::StatusOr<absl::Duration> FromProto(const google::protobuf::Duration& d, bool present, absl::Duration fallback,
                                         absl::string_view field) {
  if (!present) return fallback;
  if (d.seconds() < 0 || d.nanos() < 0 || d.nanos() >= 1000000000) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: a duration must not be negative (got %ds %dns)", field, d.seconds(), d.nanos()));
  }
  absl::Duration v = absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
  if (v > kMaxDuration) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": ", absl::FormatDuration(v), " is longer than the limit of ", absl::FormatDuration(kMaxDuration)));
  }
  return v;
}

v1::ProcState ToProto(proc::ProcState s) {
  switch (s) {
    case proc::ProcState::kStarting: return v1::PROC_STATE_STARTING;
    case proc::ProcState::kRunning: return v1::PROC_STATE_RUNNING;
    case proc::ProcState::kReady: return v1::PROC_STATE_READY;
    case proc::ProcState::kStopping: return v1::PROC_STATE_STOPPING;
    case proc::ProcState::kStopped: return v1::PROC_STATE_STOPPED;
    case proc::ProcState::kKilled: return v1::PROC_STATE_KILLED;
    case proc::ProcState::kFailed: return v1::PROC_STATE_FAILED;
  }
  return v1::PROC_STATE_UNSPECIFIED;
}

void ToProto(const proc::ProcStatus& s, v1::ProcStatus* out) {
  out->set_state(ToProto(s.state));
  out->set_pid(s.pid);
  ToProto(s.started_at, out->mutable_started_at());
  if (s.addr) out->set_addr(s.addr->ToString());
  ToProto(s.ready_at, out->mutable_ready_at());
  out->set_exit_code(s.exit_code);
  out->set_stderr_tail(s.stderr_tail);
  out->set_note(s.note);
  out->set_signal(s.signal);
  out->set_core_dumped(s.core_dumped);
  out->set_reason(s.reason);
  out->set_display(s.ToString());
}

void ToProto(const ProcInfo& p, v1::Proc* out) {
  out->set_name(p.name);
  out->set_proc_id(p.id.ToString());
  ToProto(p.status, out->mutable_status());
  for (const auto& [k, v] : p.labels) (*out->mutable_labels())[k] = v;
  out->set_program(p.program);
  for (const auto& a : p.args) out->add_args(a);
  if (!p.limits.empty()) {
    v1::ResourceLimits* limits = out->mutable_limits();
    limits->set_memory_max_bytes(p.limits.memory_max);
    limits->set_cpus(p.limits.cpus);
    limits->set_pids_max(p.limits.pids_max);
    limits->set_cpuset_cpus(p.limits.cpuset_cpus);
  }
  ToProto(p.created_at, out->mutable_created_at());
  out->set_incarnation(p.incarnation);
  ToProto(p.incarnation_started, out->mutable_incarnation_started_at());
  ToProto(p.supervision.restart, out->mutable_restart());
  for (const auto& g : p.groups) out->add_groups(g);
  out->set_restarting(p.restarting);
  out->set_saved_state_bytes(p.saved_state_bytes);
  if (p.lease) {
    v1::Lease* l = out->mutable_lease();
    l->set_owner(p.lease->owner);
    ToProto(p.lease->ttl, l->mutable_ttl());
    ToProto(p.lease->expires_at, l->mutable_expires_at());
    l->set_expired(p.lease->expired);
  }
  if (p.liveness.enabled()) ToProto(p.liveness, out->mutable_liveness());
}

void ToProto(const manager::LivenessSpec& l, v1::LivenessCheck* out) {
  if (l.kind == manager::LivenessKind::kHeartbeat) out->mutable_heartbeat();
  if (l.kind == manager::LivenessKind::kExec) {
    for (const std::string& arg : l.command) out->mutable_exec()->add_command(arg);
  }
  ToProto(l.period, out->mutable_period());
  if (l.kind == manager::LivenessKind::kExec) {
    ToProto(l.timeout == absl::ZeroDuration() ? l.period : l.timeout, out->mutable_timeout());
  }
  out->set_failure_threshold(l.failure_threshold);
  ToProto(l.initial_delay, out->mutable_initial_delay());
  out->set_dump_signal(l.dump_signal);
  ToProto(l.dump_grace, out->mutable_dump_grace());
}

void ToProto(const ProcEnd& e, v1::ProcEnd* out) {
  ToProto(e.at, out->mutable_at());
  ToProto(e.status, out->mutable_status());
  out->set_incarnation(e.incarnation);
}

void ToProto(const HostEvent& e, v1::ProcEvent* out) {
  out->set_seq(e.seq);
  switch (e.kind) {
    case HostEvent::Kind::kSnapshot: out->set_kind(v1::ProcEvent::KIND_SNAPSHOT); break;
    case HostEvent::Kind::kSpawned: out->set_kind(v1::ProcEvent::KIND_SPAWNED); break;
    case HostEvent::Kind::kTransition: out->set_kind(v1::ProcEvent::KIND_TRANSITION); break;
    case HostEvent::Kind::kSpawnFailed: out->set_kind(v1::ProcEvent::KIND_SPAWN_FAILED); break;
    case HostEvent::Kind::kRemoved: out->set_kind(v1::ProcEvent::KIND_REMOVED); break;
    case HostEvent::Kind::kRestarting: out->set_kind(v1::ProcEvent::KIND_RESTARTING); break;
    case HostEvent::Kind::kRestarted: out->set_kind(v1::ProcEvent::KIND_RESTARTED); break;
    case HostEvent::Kind::kGaveUp: out->set_kind(v1::ProcEvent::KIND_GAVE_UP); break;
    case HostEvent::Kind::kRestartFailed: out->set_kind(v1::ProcEvent::KIND_RESTART_FAILED); break;
    case HostEvent::Kind::kTerminated: out->set_kind(v1::ProcEvent::KIND_TERMINATED); break;
  }
  out->set_name(e.name);
  if (!e.is_group) ToProto(e.status, out->mutable_status());
  ToProto(e.at, out->mutable_at());
  out->set_incarnation(e.incarnation);
  for (const auto& g : e.groups) out->add_groups(g);
  out->set_is_group(e.is_group);
  out->set_attempt(e.attempt);
  if (e.kind == HostEvent::Kind::kRestarting) ToProto(e.delay, out->mutable_delay());
  out->set_start_failed(e.start_failed);
  out->set_detail(e.detail);
}

namespace {

absl::StatusOr<manager::Backoff> BackoffFromProto(const v1::Backoff& b, absl::string_view field) {
  manager::Backoff out;
  auto initial = FromProto(b.initial(), b.has_initial(), out.initial, absl::StrCat(field, ".initial"));
  if (!initial.ok()) return initial.status();
  auto max = FromProto(b.max(), b.has_max(), out.max, absl::StrCat(field, ".max"));
  if (!max.ok()) return max.status();
  out.initial = *initial;
  out.max = *max;
  if (b.multiplier() != 0) out.multiplier = b.multiplier();
  if (b.has_jitter()) out.jitter = b.jitter();
  return out;
}

// Durations are bounded by ValidateLiveness (each field's own range), not kMaxDuration alone.
absl::StatusOr<manager::LivenessSpec> LivenessFromProto(const v1::LivenessCheck& l) {
  manager::LivenessSpec out;
  switch (l.kind_case()) {
    case v1::LivenessCheck::kHeartbeat: out.kind = manager::LivenessKind::kHeartbeat; break;
    case v1::LivenessCheck::kExec:
      out.kind = manager::LivenessKind::kExec;
      out.command.assign(l.exec().command().begin(), l.exec().command().end());
      break;
    case v1::LivenessCheck::KIND_NOT_SET:
      return absl::InvalidArgumentError("spec.liveness: set heartbeat or exec");
  }
  HOSTD_ASSIGN_OR_RETURN(out.period, FromProto(l.period(), l.has_period(), out.period, "spec.liveness.period"));
  HOSTD_ASSIGN_OR_RETURN(out.timeout, FromProto(l.timeout(), l.has_timeout(), out.timeout, "spec.liveness.timeout"));
  if (l.failure_threshold() != 0) out.failure_threshold = l.failure_threshold();
  HOSTD_ASSIGN_OR_RETURN(out.initial_delay, FromProto(l.initial_delay(), l.has_initial_delay(), out.initial_delay,
                                                      "spec.liveness.initial_delay"));
  out.dump_signal = l.dump_signal();
  HOSTD_ASSIGN_OR_RETURN(out.dump_grace,
                         FromProto(l.dump_grace(), l.has_dump_grace(), out.dump_grace, "spec.liveness.dump_grace"));
  HOSTD_RETURN_IF_ERROR(manager::ValidateLiveness(out, "spec.liveness."));
  if (out.kind == manager::LivenessKind::kHeartbeat && l.has_timeout()) {
    // A zero timeout given explicitly is still a timeout the check would not use.
    return absl::InvalidArgumentError("spec.liveness.timeout: applies to exec probes only");
  }
  return out;
}

void BackoffToProto(const manager::Backoff& b, v1::Backoff* out) {
  ToProto(b.initial, out->mutable_initial());
  ToProto(b.max, out->mutable_max());
  out->set_multiplier(b.multiplier);
  out->set_jitter(b.jitter);
}

}  // namespace

void ToProto(const manager::RestartPolicy& p, v1::RestartPolicy* out) {
  switch (p.mode) {
    case manager::RestartMode::kNever: out->set_mode(v1::RESTART_MODE_NEVER); break;
    case manager::RestartMode::kOnFailure: out->set_mode(v1::RESTART_MODE_ON_FAILURE); break;
    case manager::RestartMode::kAlways: out->set_mode(v1::RESTART_MODE_ALWAYS); break;
  }
  out->set_max_restarts(p.max_restarts);
  ToProto(p.within, out->mutable_within());
  BackoffToProto(p.backoff, out->mutable_backoff());
  for (int code : p.permanent_exit_codes) out->add_permanent_exit_codes(code);
}

absl::StatusOr<manager::RestartPolicy> FromProto(const v1::RestartPolicy& p, bool present) {
  manager::RestartPolicy out;
  if (!present) return out;
  switch (p.mode()) {
    case v1::RESTART_MODE_UNSPECIFIED:
    case v1::RESTART_MODE_NEVER: out.mode = manager::RestartMode::kNever; break;
    case v1::RESTART_MODE_ON_FAILURE: out.mode = manager::RestartMode::kOnFailure; break;
    case v1::RESTART_MODE_ALWAYS: out.mode = manager::RestartMode::kAlways; break;
    default: return absl::InvalidArgumentError(absl::StrCat("restart.mode: unknown mode ", p.mode()));
  }
  if (p.has_max_restarts()) out.max_restarts = p.max_restarts();
  out.permanent_exit_codes.assign(p.permanent_exit_codes().begin(), p.permanent_exit_codes().end());
  auto within = FromProto(p.within(), p.has_within(), out.within, "restart.within");
  if (!within.ok()) return within.status();
  out.within = *within;
  auto backoff = BackoffFromProto(p.backoff(), "restart.backoff");
  if (!backoff.ok()) return backoff.status();
  out.backoff = *backoff;
  return out;  // its limits are checked once, by Host::Spawn
}

absl::StatusOr<GroupSpec> FromProto(const v1::CreateGroupRequest& req) {
  GroupSpec out;
  out.parent = req.parent();
  switch (req.strategy()) {
    case v1::STRATEGY_UNSPECIFIED:
    case v1::STRATEGY_ONE_FOR_ONE: out.strategy = Strategy::kOneForOne; break;
    case v1::STRATEGY_ONE_FOR_ALL: out.strategy = Strategy::kOneForAll; break;
    case v1::STRATEGY_REST_FOR_ONE: out.strategy = Strategy::kRestForOne; break;
    default: return absl::InvalidArgumentError(absl::StrCat("strategy: unknown strategy ", req.strategy()));
  }
  if (req.has_max_restarts()) out.max_restarts = req.max_restarts();
  auto within = FromProto(req.within(), req.has_within(), out.within, "within");
  if (!within.ok()) return within.status();
  out.within = *within;
  auto backoff = BackoffFromProto(req.backoff(), "backoff");
  if (!backoff.ok()) return backoff.status();
  out.backoff = *backoff;
  return out;
}

void ToProto(const GroupInfo& g, v1::Group* out) {
  out->set_name(g.name);
  out->set_parent(g.spec.parent);
  switch (g.spec.strategy) {
    case Strategy::kOneForOne: out->set_strategy(v1::STRATEGY_ONE_FOR_ONE); break;
    case Strategy::kOneForAll: out->set_strategy(v1::STRATEGY_ONE_FOR_ALL); break;
    case Strategy::kRestForOne: out->set_strategy(v1::STRATEGY_REST_FOR_ONE); break;
  }
  out->set_max_restarts(g.spec.max_restarts);
  ToProto(g.spec.within, out->mutable_within());
  out->set_restarts(g.restarts);
  out->set_gave_up(g.gave_up);
  out->set_why(g.why);
}

void ToProto(const TreeNode& n, absl::Time now, v1::TreeNode* out) {
  if (n.is_group) {
    ToProto(n.group, out->mutable_group());
  } else if (n.proc) {
    ToProto(*n.proc, out->mutable_proc());
    if (n.usage.known) {
      out->set_cpu_seconds(n.usage.cpu_seconds);
      out->set_rss_bytes(n.usage.rss_bytes);
      out->set_processes(n.usage.processes);
    }
    if (!n.proc->status.terminal() && !n.proc->restarting) {
      out->set_uptime_seconds(absl::ToDoubleSeconds(now - n.proc->incarnation_started));
    }
  }
}

absl::Status ValidateName(absl::string_view name) {
  absl::Status s = proc::ProcId::ValidateName(name);
  if (s.ok()) return s;
  return absl::InvalidArgumentError(absl::StrCat("name: ", s.message()));
}

absl::StatusOr<manager::SpawnSpec> FromProto(const v1::ProcSpec& spec) {
  manager::SpawnSpec out;
  if (spec.program().empty()) return absl::InvalidArgumentError("spec.program: required (a path or a name in PATH)");
  if (spec.args_size() > static_cast<int>(kMaxArgs)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("spec.args: %d arguments; at most %d", spec.args_size(), kMaxArgs));
  }
  // A C string ends at its first NUL: passed on, the rest would be cut silently.
  auto no_nul = [](absl::string_view field, absl::string_view value) {
    if (value.find('\0') == absl::string_view::npos) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", base::Quote(value), " contains a NUL byte; it would be cut there"));
  };
  HOSTD_RETURN_IF_ERROR(no_nul("spec.program", spec.program()));
  HOSTD_RETURN_IF_ERROR(no_nul("spec.cwd", spec.cwd()));
  size_t bytes = spec.program().size() + spec.cwd().size();
  out.program = spec.program();
  for (int i = 0; i < spec.args_size(); ++i) {
    HOSTD_RETURN_IF_ERROR(no_nul(absl::StrCat("spec.args[", i, "]"), spec.args(i)));
    bytes += spec.args(i).size();
    out.args.push_back(spec.args(i));
  }
  for (const auto& e : spec.env()) {
    if (e.name().empty() || e.name().find('=') != std::string::npos || e.name().find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("spec.env: ", base::Quote(e.name()), " is not a variable name"));
    }
    HOSTD_RETURN_IF_ERROR(no_nul(absl::StrCat("spec.env[", e.name(), "]"), e.value()));
    bytes += e.name().size() + e.value().size();
    out.env.emplace_back(e.name(), e.value());
  }
  for (const auto& name : spec.inherit_env()) HOSTD_RETURN_IF_ERROR(no_nul("spec.inherit_env", name));
  if (spec.inherit_env_size() > 0) out.inherit_env.assign(spec.inherit_env().begin(), spec.inherit_env().end());
  if (bytes > kMaxSpecBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("spec: %d bytes of program, args and env; at most %d", bytes, kMaxSpecBytes));
  }
  out.cwd = spec.cwd();
  if (spec.user().size() > 256 || spec.user().find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("spec.user: at most 256 bytes, no NUL");
  }
  out.user = spec.user();
  switch (spec.readiness()) {
    case v1::READINESS_MODE_UNSPECIFIED:
    case v1::READINESS_MODE_HANDSHAKE: out.readiness = manager::ReadinessMode::kHandshake; break;
    case v1::READINESS_MODE_EXEC: out.readiness = manager::ReadinessMode::kExec; break;
    case v1::READINESS_MODE_NOTIFY: out.readiness = manager::ReadinessMode::kNotify; break;
    default: return absl::InvalidArgumentError(absl::StrCat("spec.readiness: unknown mode ", spec.readiness()));
  }
  auto timeout = FromProto(spec.ready_timeout(), spec.has_ready_timeout(), absl::Seconds(30), "spec.ready_timeout");
  if (!timeout.ok()) return timeout.status();
  out.ready_timeout = *timeout;
  const v1::ResourceLimits& limits = spec.limits();
  out.limits = {.memory_max = limits.memory_max_bytes(),
                .cpus = limits.cpus(),
                .pids_max = limits.pids_max(),
                .cpuset_cpus = limits.cpuset_cpus()};
  HOSTD_RETURN_IF_ERROR(manager::ValidateLimits(out.limits, "spec.limits."));
  if (spec.has_liveness()) {
    HOSTD_ASSIGN_OR_RETURN(out.liveness, LivenessFromProto(spec.liveness()));
  }
  return out;
}

absl::StatusOr<RankVars> FromProto(const v1::RankEnv& r, int entries) {
  RankVars v{.first_rank = r.first_rank(),
             .world_size = r.world_size() == 0 ? entries : r.world_size(),
             .first_local_rank = r.first_local_rank(),
             .local_world_size = r.local_world_size() == 0 ? entries : r.local_world_size(),
             .rank = r.rank_var().empty() ? "RANK" : r.rank_var(),
             .world = r.world_size_var().empty() ? "WORLD_SIZE" : r.world_size_var(),
             .local_rank = r.local_rank_var().empty() ? "LOCAL_RANK" : r.local_rank_var(),
             .local_world = r.local_world_size_var().empty() ? "LOCAL_WORLD_SIZE" : r.local_world_size_var()};
  auto fits = [entries](absl::string_view first_field, int64_t first, absl::string_view size_field,
                        int64_t size) -> absl::Status {
    if (first < 0) return absl::InvalidArgumentError(absl::StrCat("ranks.", first_field, ": must not be negative"));
    if (size < first + entries) {
      return absl::InvalidArgumentError(absl::StrFormat("ranks.%s: %d is less than %s %d plus the %d entries",
                                                        size_field, size, first_field, first, entries));
    }
    return absl::OkStatus();
  };
  HOSTD_RETURN_IF_ERROR(fits("first_rank", v.first_rank, "world_size", v.world_size));
  HOSTD_RETURN_IF_ERROR(fits("first_local_rank", v.first_local_rank, "local_world_size", v.local_world_size));
  for (const std::string* name : {&v.rank, &v.world, &v.local_rank, &v.local_world}) {
    if (name->size() > 256 || name->find('=') != std::string::npos || name->find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("ranks: ", base::Quote(*name), " is not a variable name"));
    }
  }
  return v;
}

absl::Status AddRankVars(const RankVars& v, int index, manager::SpawnSpec& spec) {
  const std::pair<const std::string*, int> vars[] = {{&v.rank, v.first_rank + index},
                                                     {&v.world, v.world_size},
                                                     {&v.local_rank, v.first_local_rank + index},
                                                     {&v.local_world, v.local_world_size}};
  for (const auto& [name, value] : vars) {
    for (const auto& [set, unused] : spec.env) {
      if (set == *name) {
        return absl::InvalidArgumentError(
            absl::StrCat("procs[", index, "].spec.env sets ", *name, ", which the request's ranks assign"));
      }
    }
  }
  for (const auto& [name, value] : vars) spec.env.emplace_back(*name, absl::StrCat(value));
  return absl::OkStatus();
}

}  // namespace hostd::daemon
