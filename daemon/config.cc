#include "daemon/config.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/default_paths.h"
#include "base/status_macros.h"
#include "channel/channel_addr.h"
#include "channel/grpc_target.h"
#include "CLI/CLI.hpp"
#include "daemon/ops_http.h"

namespace hostd::daemon {
namespace {

// Checks --advertise against the frontend and writes it in full (scheme included).
absl::Status CheckAdvertise(const channel::ChannelAddr& frontend, std::string& advertise);

}  // namespace

void AddDaemonFlags(CLI::App& app, DaemonConfig& cfg) {
  app.set_config("--config", "", "read options from this file (INI/TOML; keys are the long option names)");
  app.add_option("--grpc", cfg.grpc, "control API address: unix:/path (mode 0600) or tcp:host:port")
      ->default_str("unix:<runtime dir>/hostd.sock");
  app.add_option("--frontend", cfg.frontend, "where clients and other hosts send to procs")
      ->default_str("unix:<runtime dir>/frontend.sock");
  app.add_option("--backend", cfg.backend, "where procs send everything else")
      ->default_str("unix:<runtime dir>/backend.sock");
  app.add_option("--advertise", cfg.advertise,
                 "HOST:PORT other hosts dial for the frontend (and ProcIds carry), when it is not the bound address");
  app.add_option("--tls-cert", cfg.tls_cert, "PEM certificate (chain) of this host, for tls: addresses");
  app.add_option("--tls-key", cfg.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-ca", cfg.tls_ca, "PEM CA certificate(s) peers and clients are verified against");
  app.add_flag("--tls-require-client-cert", cfg.tls_require_client_cert,
               "refuse tls: and gRPC clients without a certificate signed by --tls-ca (mutual TLS)");
  app.add_option("--tls-refresh", cfg.tls_refresh_s,
                 "seconds between looks at the TLS files; changed ones serve new connections (frontend, links and "
                 "gRPC; SIGHUP reloads the frontend's and links' at once)")
      ->check(CLI::Range(1u, 86400u))
      ->capture_default_str();
  app.add_option("--dead-peer-timeout", cfg.dead_peer_timeout_s,
                 "seconds within which a tcp:/tls: peer that stopped answering is noticed (TCP keepalive and "
                 "TCP_USER_TIMEOUT); 0: the kernel's defaults")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  app.add_flag("--insecure", cfg.insecure, "allow plaintext gRPC or frontend on a non-loopback address");
  app.add_option("--allow-exec", cfg.allow_exec,
                 "programs procs may run: a glob on the absolute path, or IDENTITY=GLOB for one client "
                 "certificate identity; repeatable; none given: any program");
  app.add_option("--allow-user", cfg.allow_user, "users (NAME or NAME:GROUP) procs may run as; repeatable");
  app.add_option("--state-dir", cfg.state_dir, "proc logs go under <dir>/logs")->default_str(base::DefaultStateDir());
  app.add_option("--manager", cfg.manager, "process: procs are processes; local: in-process procs")
      ->check(CLI::IsMember({"process", "local"}))
      ->capture_default_str();
  app.add_option("--cgroups", cfg.cgroups, "put each proc in its own cgroup v2 where the host allows")
      ->capture_default_str();
  app.add_option("--shutdown-grace", cfg.shutdown_grace_s, "seconds each proc gets on SIGTERM/SIGINT")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--shutdown-max-in-flight", cfg.shutdown_max_in_flight, "procs terminated at once on shutdown")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--log-level", cfg.log_level, "trace, debug, info, warn, error, off")->capture_default_str();
  app.add_option("--log-format", cfg.log_format, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--max-partial-frame-bytes", cfg.max_partial_frame_bytes,
                 "memory for large frames still arriving on all frontend/backend connections together; a connection "
                 "past it is closed")
      ->check(CLI::Range(size_t{1} << 20, size_t{1} << 40))
      ->capture_default_str();
  app.add_option("--max-grpc-connections", cfg.max_grpc_connections,
                 "control API connections at once on a unix --grpc socket; more are closed at once")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--max-watch-streams", cfg.max_watch_streams, "WatchProcs streams open at once")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--max-watch-bytes", cfg.max_watch_bytes,
                 "bytes of events queued for all WatchProcs streams together (a stream past its share is ended)")
      ->check(CLI::Range(size_t{4096}, size_t{1} << 40))
      ->capture_default_str();
  app.add_option("--http", cfg.http,
                 "serve /metrics (Prometheus), /healthz and /readyz on HOST:PORT (loopback only; off by default)");
  app.add_flag("--http-allow-remote", cfg.http_allow_remote,
               "let --http bind a non-loopback address (the endpoint has no authentication)");
  // A misspelt key in --config would otherwise be ignored without a word.
  app.allow_config_extras(CLI::config_extras_mode::error);

  auto* limits = "Limits (each refusal names its flag)";
  app.add_option("--max-procs", cfg.max_procs, "live procs on this host; past it spawns are RESOURCE_EXHAUSTED")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str()
      ->group(limits);
  app.add_option("--max-spawn-batch", cfg.max_spawn_batch, "entries in one SpawnProcs request")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str()
      ->group(limits);
  app.add_option("--watch-backlog", cfg.watch_backlog,
                 "events a WatchProcs client may fall behind before it is cut off")
      ->check(CLI::Range(16, 10000000))
      ->capture_default_str()
      ->group(limits);
  app.add_option("--grpc-max-message-mib", cfg.grpc_max_message_mib, "MiB of one control API request or reply")
      ->check(CLI::Range(4, 1024))
      ->capture_default_str()
      ->group(limits);
  auto* logs = "Proc logs";
  app.add_option("--log-max-bytes", cfg.log_max_bytes, "a proc's stdout or stderr log is rotated past this size")
      ->check(CLI::Range(size_t{4096}, size_t{1} << 40))
      ->capture_default_str()
      ->group(logs);
  app.add_option("--log-rotations", cfg.log_rotations, "rotated files kept per log (<name>.stdout.1 is the newest)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str()
      ->group(logs);
  app.add_option("--log-keep-ended", cfg.log_keep_ended, "ended procs whose logs are kept (the newest)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str()
      ->group(logs);
  app.add_option("--log-keep-age", cfg.log_keep_age_h, "hours an ended proc's logs are kept")
      ->check(CLI::Range(0.0, 100000.0))
      ->capture_default_str()
      ->group(logs);
  app.add_option("--death-history", cfg.death_history, "ends of each proc name that GetProc and hostctl get show")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str()
      ->group(logs);
  app.add_flag("--keep-procs", cfg.keep_procs,
               "procs outlive hostd (a stop, crash or upgrade); the next hostd on the same state directory "
               "re-adopts them")
      ->capture_default_str();
  app.add_option("--reattach-timeout", cfg.reattach_timeout_s,
                 "with --keep-procs: seconds the procs wait for a new hostd before they are killed")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  const std::string limits_group = "Resource limits (per proc, where its spec leaves them unset)";
  app.add_option("--default-memory-max", cfg.default_limits.memory_max, "memory.max: bytes, or with a unit (512M, 2G)")
      ->transform(CLI::AsSizeValue(false))
      ->group(limits_group);
  app.add_option("--default-cpus", cfg.default_limits.cpus, "cpu.max as CPUs (1.5)")->group(limits_group);
  app.add_option("--default-pids-max", cfg.default_limits.pids_max, "pids.max: processes and threads at once")->group(limits_group);
  app.add_option("--default-cpuset", cfg.default_limits.cpuset_cpus, "cpuset.cpus (0-3,6)")->group(limits_group);
}

absl::Status FinishConfig(DaemonConfig& cfg) {
  std::string run = base::DefaultRuntimeDir();
  if (cfg.grpc.empty()) cfg.grpc = base::DefaultGrpcAddr();
  if (cfg.frontend.empty()) cfg.frontend = absl::StrCat("unix:", run, "/frontend.sock");
  if (cfg.backend.empty()) cfg.backend = absl::StrCat("unix:", run, "/backend.sock");
  if (cfg.state_dir.empty()) cfg.state_dir = base::DefaultStateDir();
  HOSTD_RETURN_IF_ERROR(manager::ValidateLimits(cfg.default_limits, "--default-* limits: "));
  for (auto [flag, value] : {std::pair{"--frontend", &cfg.frontend}, std::pair{"--backend", &cfg.backend}}) {
    absl::StatusOr<channel::ChannelAddr> a = channel::ChannelAddr::Parse(*value);
    if (!a.ok()) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", a.status().message()));
  }
  if (!cfg.http.empty()) {
    std::string host;
    int port = 0;
    if (absl::Status s = CheckHttpAddr(cfg.http, cfg.http_allow_remote, &host, &port); !s.ok()) return s;
  }
  absl::StatusOr<std::string> target = channel::GrpcTarget(cfg.grpc);
  if (!target.ok()) return target.status();
  channel::ChannelAddr frontend = *channel::ChannelAddr::Parse(cfg.frontend);
  channel::ChannelAddr grpc = *channel::ChannelAddr::Parse(cfg.grpc);
  HOSTD_RETURN_IF_ERROR(CheckAdvertise(frontend, cfg.advertise));
  for (auto [flag, addr] : {std::pair{"--frontend", &frontend}, std::pair{"--grpc", &grpc}}) {
    if (addr->transport() == channel::Transport::kTcp && !addr->is_loopback() && !cfg.insecure) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, " ", addr->ToString(), " is plaintext on a non-loopback address: anyone who reaches it could ",
          flag == std::string("--grpc") ? "run programs" : "send to every proc",
          "; use tls: with --tls-cert, --tls-key and --tls-ca, or pass --insecure to allow it"));
    }
    if (addr->transport() == channel::Transport::kTls &&
        (cfg.tls_cert.empty() || cfg.tls_key.empty() || cfg.tls_ca.empty())) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, " ", addr->ToString(), " needs --tls-cert, --tls-key and --tls-ca"));
    }
  }
  if (cfg.tls_require_client_cert && cfg.tls_ca.empty()) {
    return absl::InvalidArgumentError("--tls-require-client-cert needs --tls-ca to verify client certificates");
  }
  return absl::OkStatus();
}

namespace {

absl::Status CheckAdvertise(const channel::ChannelAddr& frontend, std::string& advertise) {
  if (advertise.empty()) {
    if (frontend.is_unspecified()) {
      return absl::InvalidArgumentError(absl::StrCat("--frontend ", frontend.ToString(),
                                                     " binds every interface: say with --advertise HOST:PORT which "
                                                     "address other hosts dial"));
    }
    return absl::OkStatus();
  }
  if (!frontend.is_inet()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--advertise applies to a tcp: or tls: frontend, not ", frontend.ToString()));
  }
  std::string scheme = absl::StrCat(channel::TransportName(frontend.transport()), ":");
  std::string text = absl::StartsWith(advertise, "tcp:") || absl::StartsWith(advertise, "tls:")
                         ? advertise
                         : absl::StrCat(scheme, advertise);
  absl::StatusOr<channel::ChannelAddr> a = channel::ChannelAddr::Parse(text);
  if (!a.ok()) return absl::InvalidArgumentError(absl::StrCat("--advertise: ", a.status().message()));
  if (a->transport() != frontend.transport()) {
    return absl::InvalidArgumentError(absl::StrCat("--advertise ", advertise, " must use the frontend's scheme (",
                                                   scheme, "), as peers dial it the same way"));
  }
  if (a->is_any() || a->is_unspecified()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--advertise ", advertise, " is not an address another host can dial (port 0 or 0.0.0.0/::)"));
  }
  if (a->is_loopback() && !frontend.is_loopback()) {
    return absl::InvalidArgumentError(absl::StrCat("--advertise ", advertise, " is a loopback address, but --frontend ",
                                                   frontend.ToString(),
                                                   " serves other hosts: they could not reach it; advertise an "
                                                   "address or name they can dial"));
  }
  advertise = a->ToString();
  return absl::OkStatus();
}

}  // namespace

}  // namespace hostd::daemon
