// hostd: the per-host proc daemon. `hostd --help` lists the options; with none it
// runs on the embedded defaults of daemon/config.h.
#include <malloc.h>

#include <cstdio>

#include "base/lock_checks.h"
#include "base/log.h"
#include "CLI/CLI.hpp"
#include "daemon/config.h"
#include "daemon/daemon_runner.h"

namespace {

// glibc raises its trim threshold to twice the largest mmapped block freed so far
// (up to 64 MiB) and never trims the top of a thread's arena on malloc_trim, so a
// large gRPC request (a refused 100 000-entry SpawnProcs parses to about 50 MiB on
// a gRPC thread) stays resident for good. Fixed thresholds keep the top of every
// arena under 8 MiB after a free, while blocks under 32 MiB (1 MiB messages
// included) still come from the arenas, as they would once glibc had raised its
// own mmap threshold (which also stops at 32 MiB).
void BoundRetainedHeap() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 8 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  BoundRetainedHeap();
  hostd::base::SkipLockOrderChecks();
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
