// hostctl's subcommands on procs: `spawn`, `list`, `get`, `wait`, `terminate`,
// `kill`, `terminate-all`, `send` and `lease renew`.
#ifndef HOSTD_HOSTCTL_COMMANDS_PROCS_H_
#define HOSTD_HOSTCTL_COMMANDS_PROCS_H_

#include "CLI/CLI.hpp"
#include "hostctl/subcommand.h"

namespace hostd::hostctl {

Subcommand AddSpawn(CLI::App& app);
Subcommand AddList(CLI::App& app);
Subcommand AddGet(CLI::App& app);
Subcommand AddWait(CLI::App& app);
Subcommand AddTerminate(CLI::App& app);
Subcommand AddKill(CLI::App& app);
Subcommand AddTerminateAll(CLI::App& app);
Subcommand AddSend(CLI::App& app);
// `lease`, the parent of `lease renew`.
CLI::App* AddLease(CLI::App& app);
Subcommand AddLeaseRenew(CLI::App& lease);

}  // namespace hostd::hostctl

#endif  // HOSTD_HOSTCTL_COMMANDS_PROCS_H_
