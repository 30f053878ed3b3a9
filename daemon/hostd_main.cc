// hostd: the per-host proc daemon. `hostd --help` lists the options; with none it
// runs on the embedded defaults of daemon/config.h.
#include <cstdio>

#include "base/log.h"
#include "CLI/CLI.hpp"
#include "daemon/config.h"
#include "daemon/daemon_runner.h"

int main(int argc, char** argv) {
  hostd::daemon::DaemonConfig cfg;
  CLI::App app{"hostd: spawns, supervises and routes messages to procs on this host"};
  app.set_version_flag("--version", hostd::daemon::kVersion);
  hostd::daemon::AddDaemonFlags(app, cfg);
  CLI11_PARSE(app, argc, argv);
  absl::Status s = hostd::base::InitLogging(cfg.log_level);
  if (s.ok()) s = hostd::base::SetLogFormat(cfg.log_format);
  if (s.ok()) s = hostd::daemon::FinishConfig(cfg);
  if (s.ok()) s = hostd::daemon::RunDaemon(cfg);
  if (!s.ok()) {
    fprintf(stderr, "hostd: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
