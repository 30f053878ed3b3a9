// DaemonConfig: everything hostd can be told, with an embedded default so that
// `hostd` runs with no arguments at all. Flags and a config file (INI/TOML, the
// same names as the long flags) are parsed by CLI11 (AddDaemonFlags); CLI11 stays
// out of this header: a caller that builds the CLI::App includes CLI/CLI.hpp.
//
// Defaults (the directories and the gRPC address come from base/default_paths.h):
//   runtime dir  created mode 0700
//   gRPC         unix:<runtime dir>/hostd.sock, mode 0600
//   frontend     unix:<runtime dir>/frontend.sock; backend unix:<runtime dir>/backend.sock
//   state dir    proc logs under <state dir>/logs, the durable proc table
//                <state dir>/procs.db, with --keep-procs the lock <state dir>/hostd.lock
#ifndef HOSTD_DAEMON_CONFIG_H_
#define HOSTD_DAEMON_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace CLI {
class App;
}  // namespace CLI

namespace hostd::daemon {

struct DaemonConfig {
  std::string grpc;      // unix:/path or tcp:host:port
  std::string frontend;  // a ChannelAddr
  std::string backend;   // a ChannelAddr
  std::string state_dir;
  std::string manager = "process";  // or "local" (in-process procs, for trying things out)
  bool cgroups = true;
  double shutdown_grace_s = 10;  // per proc, on SIGTERM/SIGINT
  int shutdown_max_in_flight = 256;
  std::string log_level = "info";
  std::string log_format = "text";
  size_t max_watch_streams = 1024;       // WatchProcs streams open at once
  size_t max_watch_bytes = 64ull << 20;  // events queued for all WatchProcs streams
  // Procs outlive hostd (README, "Restarts and upgrades"); the janitor waits this
  // long for a new hostd before it kills them.
  bool keep_procs = false;
  double reattach_timeout_s = 60;
};

// Registers the flags (and --config) on `app`, writing into `cfg`.
void AddDaemonFlags(CLI::App& app, DaemonConfig& cfg);
// Fills the unset addresses with the defaults and checks the values; errors name
// the option.
absl::Status FinishConfig(DaemonConfig& cfg);

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_CONFIG_H_
