// hostctl's operations subcommands: `drain` (refuse new spawns while the procs
// already running keep running; `--off` ends it).
#ifndef HOSTD_HOSTCTL_COMMANDS_OPS_H_
#define HOSTD_HOSTCTL_COMMANDS_OPS_H_

#include "CLI/CLI.hpp"
#include "hostctl/subcommand.h"

namespace hostd::hostctl {

Subcommand AddDrain(CLI::App& app);

}  // namespace hostd::hostctl

#endif  // HOSTD_HOSTCTL_COMMANDS_OPS_H_
