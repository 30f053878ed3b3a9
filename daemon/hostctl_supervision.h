// hostctl's supervision commands: the restart options of `spawn`, and `group`,
// `restart`, `signal` and `tree`. Internal to the hostctl binary.
#ifndef HOSTD_DAEMON_HOSTCTL_SUPERVISION_H_
#define HOSTD_DAEMON_HOSTCTL_SUPERVISION_H_

#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "daemon/hostctl_client.h"

namespace hostd::daemon {

class SupervisionCommands {
 public:
  // Adds the restart options to `spawn`, --group to `watch`, and the subcommands.
  void Add(CLI::App& app, CLI::App* spawn, CLI::App* watch);
  void FillSpawn(v1::SpawnProcRequest& req) const;
  void FillWatch(v1::WatchProcsRequest& req) const { req.set_group(watch_group_); }
  // The exit code of the supervision subcommand given, if one was.
  std::optional<int> Run(Client& c, const Globals& g);

 private:
  // spawn
  std::string restart_ = "never", group_;
  int max_restarts_ = 3;
  double within_ = 5, backoff_initial_ = 0.1, backoff_max_ = 30, backoff_multiplier_ = 2, jitter_ = 0.2;
  // watch
  std::string watch_group_;
  // group create / delete
  CLI::App* group_cmd_ = nullptr;
  CLI::App* group_create_ = nullptr;
  CLI::App* group_delete_ = nullptr;
  std::string name_, parent_, strategy_ = "one-for-one";
  int group_max_restarts_ = 3;
  double group_within_ = 5, group_backoff_initial_ = 0.1, group_backoff_max_ = 30;
  // restart
  CLI::App* restart_cmd_ = nullptr;
  bool handoff_ = false;
  double grace_ = 5, handoff_timeout_ = 10;
  // signal
  CLI::App* signal_cmd_ = nullptr;
  std::string signal_, data_, signal_group_;
  // tree
  CLI::App* tree_cmd_ = nullptr;
};

// One line per event for people: seq, kind, name, status and what the kind adds.
void PrintEvent(const v1::ProcEvent& e);

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_HOSTCTL_SUPERVISION_H_
