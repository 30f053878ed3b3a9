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
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ConfigError& e) {
    fprintf(stderr, "hostd: --config: an unknown key or a bad value (%s)\n  `hostd --help` lists the keys\n", e.what());
    return 2;
  } catch (const CLI::ParseError& e) {
    // A usage error (a bad flag, an unknown key in --config) exits 2, as hostctl's do.
    fprintf(stderr, "hostd: %s\n  `hostd --help` lists the options (also the keys of --config)\n", e.what());
    return 2;
  }
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
