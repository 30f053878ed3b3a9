// hostctl: the command-line client of hostd's gRPC API, one subcommand per RPC.
// `hostctl --help` and `hostctl <command> --help` describe them; exit codes are
// listed in kExitCodes (hostctl/client.h) and in the README.
#include <cstdio>
#include <vector>

#include "CLI/CLI.hpp"
#include "hostctl/client.h"
#include "hostctl/commands_observe.h"
#include "hostctl/commands_ops.h"
#include "hostctl/commands_procs.h"
#include "hostctl/commands_supervision.h"
#include "hostctl/subcommand.h"
#include "hostctl/usage.h"

int main(int argc, char** argv) {
  using namespace hostd::hostctl;  // NOLINT: a main file
  GlobalOptions g;
  CLI::App app{"hostctl: control hostd (spawn, inspect, stop procs; send them messages)"};
  app.footer(kExitCodes);
  app.require_subcommand(1);
  app.fallthrough();  // --json, --grpc, --timeout also after the subcommand
  app.set_version_flag("--version", HOSTD_VERSION);
  AddGlobalOptions(app, g);

  std::vector<Subcommand> commands;
  commands.push_back(AddSpawn(app));
  commands.push_back(AddList(app));
  commands.push_back(AddGet(app));
  commands.push_back(AddWait(app));
  commands.push_back(AddTerminate(app));
  commands.push_back(AddKill(app));
  commands.push_back(AddTerminateAll(app));
  commands.push_back(AddWatch(app));
  commands.push_back(AddLogs(app));
  commands.push_back(AddSend(app));
  CLI::App* lease = AddLease(app);
  commands.push_back(AddLeaseRenew(*lease));
  commands.push_back(AddInfo(app));
  commands.push_back(AddDrain(app));
  commands.push_back(AddUpgrade(app));
  CLI::App* group = AddGroup(app);
  commands.push_back(AddGroupCreate(*group));
  commands.push_back(AddGroupDelete(*group));
  commands.push_back(AddRestart(app));
  commands.push_back(AddSignal(app));
  commands.push_back(AddTree(app));

  // Hidden: prints the bash completion script the build installs.
  CLI::App* completion = app.add_subcommand("completion", "")->group("");

  if (int code = ParseCommandLine(app, argc, argv); code >= 0) return code;
  if (completion->parsed()) {
    fputs(BashCompletion(app).c_str(), stdout);
    return 0;
  }
  Client client(g);
  for (Subcommand& command : commands) {
    if (command.cli->parsed()) return command.run(client);
  }
  return kExitUsage;
}
