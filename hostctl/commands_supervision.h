// hostctl's supervision subcommands: `group create|delete`, `restart`, `signal`,
// `tree`, and the restart policy options `spawn` takes.
#ifndef HOSTD_HOSTCTL_COMMANDS_SUPERVISION_H_
#define HOSTD_HOSTCTL_COMMANDS_SUPERVISION_H_

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "hostctl/subcommand.h"
#include "hostd/v1/host.pb.h"

namespace hostd::hostctl {

// spawn's --restart, --max-restarts, --within, --backoff-*, --jitter and --group.
struct RestartOptions {
  std::string mode = "never", group;
  int max_restarts = 3;
  double within = 5, backoff_initial = 0.1, backoff_max = 30, backoff_multiplier = 2, jitter = 0.2;
  std::vector<int> permanent_exit_codes;
};
void AddRestartOptions(CLI::App* spawn, RestartOptions& o);
// Sets the request's restart policy and group.
void FillRestart(const RestartOptions& o, v1::SpawnProcRequest& req);

// `group`, the parent of `group create` and `group delete`.
CLI::App* AddGroup(CLI::App& app);
Subcommand AddGroupCreate(CLI::App& group);
Subcommand AddGroupDelete(CLI::App& group);
Subcommand AddRestart(CLI::App& app);
Subcommand AddSignal(CLI::App& app);
Subcommand AddTree(CLI::App& app);

}  // namespace hostd::hostctl

#endif  // HOSTD_HOSTCTL_COMMANDS_SUPERVISION_H_
