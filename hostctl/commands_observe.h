// hostctl's subcommands that follow or describe hostd: `watch` (lifecycle
// events), `logs` (a proc's output) and `info` (hostd itself).
#ifndef HOSTD_HOSTCTL_COMMANDS_OBSERVE_H_
#define HOSTD_HOSTCTL_COMMANDS_OBSERVE_H_

#include "CLI/CLI.hpp"
#include "hostctl/subcommand.h"

namespace hostd::hostctl {

Subcommand AddWatch(CLI::App& app);
Subcommand AddLogs(CLI::App& app);
Subcommand AddInfo(CLI::App& app);
Subcommand AddUpgrade(CLI::App& app);

}  // namespace hostd::hostctl

#endif  // HOSTD_HOSTCTL_COMMANDS_OBSERVE_H_
