// Where hostd keeps its files when nobody says otherwise; hostd and hostctl read
// the same environment, so hostctl finds a hostd started with the defaults.
//
//   runtime dir  $HOSTD_RUNTIME_DIR, else $XDG_RUNTIME_DIR/hostd, else /run/hostd
//                (root), else /tmp/hostd-<uid>
//   state dir    $HOSTD_STATE_DIR, else $XDG_STATE_HOME/hostd, else /var/lib/hostd
//                (root), else ~/.local/state/hostd, else /tmp/hostd-<uid>/state
//   gRPC         unix:<runtime dir>/hostd.sock
//
// Each call reads the environment afresh; nothing is created.
#ifndef HOSTD_BASE_DEFAULT_PATHS_H_
#define HOSTD_BASE_DEFAULT_PATHS_H_

#include <string>

namespace hostd::base {

std::string DefaultRuntimeDir();
std::string DefaultStateDir();
// The control API address hostd listens on by default, and hostctl dials.
std::string DefaultGrpcAddr();

}  // namespace hostd::base

#endif  // HOSTD_BASE_DEFAULT_PATHS_H_
