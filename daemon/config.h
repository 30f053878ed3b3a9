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

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "manager/cgroup.h"

namespace CLI {
class App;
}  // namespace CLI

namespace hostd::daemon {

struct DaemonConfig {
  std::string grpc;      // unix:/path, tcp:host:port or tls:host:port
  std::string frontend;  // a ChannelAddr
  std::string backend;   // a ChannelAddr
  // The frontend address other hosts dial and ProcIds carry, when it differs from
  // the bound one (NAT, pods, 0.0.0.0): HOST:PORT, or the whole address with the
  // frontend's scheme. FinishConfig turns it into the full address text.
  std::string advertise;
  // TLS (tls: addresses of --frontend and --grpc, and links to tls: peers).
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  bool tls_require_client_cert = false;
  // Seconds between looks at the TLS files: changed files are loaded for new
  // connections of the frontend, links and gRPC (SIGHUP reloads the frontend's
  // and links' at once).
  unsigned tls_refresh_s = 10;
  // tcp:/tls: links to and from other hosts: a peer that stops answering (host
  // down, link cut) is noticed within about this many seconds; 0: the kernel's
  // TCP defaults (hours).
  double dead_peer_timeout_s = 20;
  // Plaintext on a non-loopback address is refused unless this is set.
  bool insecure = false;
  // Who may run what: globs on the program's absolute path, each optionally
  // "IDENTITY=GLOB" for one client certificate identity; empty: any program.
  std::vector<std::string> allow_exec;
  // Users (name or name:group) procs may run as, besides hostd's own.
  std::vector<std::string> allow_user;
  std::string state_dir;
  std::string manager = "process";  // or "local" (in-process procs, for trying things out)
  bool cgroups = true;
  double shutdown_grace_s = 10;  // per proc, on SIGTERM/SIGINT
  int shutdown_max_in_flight = 256;
  std::string log_level = "info";
  std::string log_format = "text";
  size_t max_partial_frame_bytes = size_t{512} << 20;  // large frames still arriving, all links together
  size_t max_grpc_connections = 1024;                  // control API connections at once (unix socket)
  size_t max_watch_streams = 1024;                     // WatchProcs streams open at once
  size_t max_watch_bytes = 64ull << 20;                // events queued for all WatchProcs streams
  // HOST:PORT of /metrics, /healthz and /readyz (daemon/ops_http.h); empty: off.
  // Loopback only unless http_allow_remote.
  std::string http;
  bool http_allow_remote = false;
  // Limits (README, "Limits"): each refusal names its flag.
  size_t max_procs = 10000;       // live procs on the host
  size_t max_spawn_batch = 1000;  // entries in one SpawnProcs
  size_t watch_backlog = 65536;   // events a WatchProcs client may lag behind
  // A request's (and reply's) size on the control API; over gRPC's default 4 MiB so
  // that SendMessage takes what the data plane takes.
  int grpc_max_message_mib = 80;
  // Proc logs: each of <name>.stdout|.stderr is rotated past log_max_bytes into
  // .1 .. .<log_rotations>; ended procs' logs are removed past log_keep_ended
  // procs or log_keep_age_h hours after their end.
  size_t log_max_bytes = 16u << 20;
  int log_rotations = 2;
  size_t log_keep_ended = 256;
  double log_keep_age_h = 168;
  // Each proc name's most recent ends kept for GetProc (daemon/death_history.h).
  size_t death_history = 8;
  // Procs outlive hostd (README, "Restarts and upgrades"); the janitor waits this
  // long for a new hostd before it kills them.
  bool keep_procs = false;
  double reattach_timeout_s = 60;
  // Cgroup limits for every proc whose spec leaves them unset (README, "Resource
  // limits"); 0 or empty: none. hostd refuses to start with any set and cgroups off.
  manager::CgroupLimits default_limits = {};
};

// Registers the flags (and --config) on `app`, writing into `cfg`.
void AddDaemonFlags(CLI::App& app, DaemonConfig& cfg);
// Fills the unset addresses with the defaults and checks the values; errors name
// the option. Refused: plaintext (tcp:) gRPC or frontend on a non-loopback address
// without --insecure; a tls: address without --tls-cert/--tls-key/--tls-ca; a
// frontend bound to every interface (0.0.0.0, ::) without --advertise; a loopback
// --advertise on a non-loopback bind (no other host could dial it).
absl::Status FinishConfig(DaemonConfig& cfg);

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_CONFIG_H_
