#include "daemon/config.h"

#include "absl/strings/str_cat.h"
#include "base/default_paths.h"
#include "channel/channel_addr.h"
#include "channel/grpc_target.h"
#include "CLI/CLI.hpp"

namespace hostd::daemon {

void AddDaemonFlags(CLI::App& app, DaemonConfig& cfg) {
  app.set_config("--config", "", "read options from this file (INI/TOML; keys are the long option names)");
  app.add_option("--grpc", cfg.grpc, "control API address: unix:/path (mode 0600) or tcp:host:port")
      ->default_str("unix:<runtime dir>/hostd.sock");
  app.add_option("--frontend", cfg.frontend, "where clients and other hosts send to procs")
      ->default_str("unix:<runtime dir>/frontend.sock");
  app.add_option("--backend", cfg.backend, "where procs send everything else")
      ->default_str("unix:<runtime dir>/backend.sock");
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
  app.add_option("--max-watch-streams", cfg.max_watch_streams, "WatchProcs streams open at once")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--max-watch-bytes", cfg.max_watch_bytes,
                 "bytes of events queued for all WatchProcs streams together (a stream past its share is ended)")
      ->check(CLI::Range(size_t{4096}, size_t{1} << 40))
      ->capture_default_str();
  app.add_flag("--keep-procs", cfg.keep_procs,
               "procs outlive hostd (a stop, crash or upgrade); the next hostd on the same state directory "
               "re-adopts them")
      ->capture_default_str();
  app.add_option("--reattach-timeout", cfg.reattach_timeout_s,
                 "with --keep-procs: seconds the procs wait for a new hostd before they are killed")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
}

absl::Status FinishConfig(DaemonConfig& cfg) {
  std::string run = base::DefaultRuntimeDir();
  if (cfg.grpc.empty()) cfg.grpc = base::DefaultGrpcAddr();
  if (cfg.frontend.empty()) cfg.frontend = absl::StrCat("unix:", run, "/frontend.sock");
  if (cfg.backend.empty()) cfg.backend = absl::StrCat("unix:", run, "/backend.sock");
  if (cfg.state_dir.empty()) cfg.state_dir = base::DefaultStateDir();
  for (auto [flag, value] : {std::pair{"--frontend", &cfg.frontend}, std::pair{"--backend", &cfg.backend}}) {
    absl::StatusOr<channel::ChannelAddr> a = channel::ChannelAddr::Parse(*value);
    if (!a.ok()) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", a.status().message()));
  }
  absl::StatusOr<std::string> target = channel::GrpcTarget(cfg.grpc);
  if (!target.ok()) return target.status();
  return absl::OkStatus();
}

}  // namespace hostd::daemon
