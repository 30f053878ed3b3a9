// LifecycleLog: one log line at info for every lifecycle event of a Host's procs,
// with the facts as fields (base::LogEvent): in the json format each line is an
// object with proc, pid, incarnation, exit_code, signal, reason, duration_ms...
//
//   event (msg)         fields
//   "proc ready"        proc, pid, incarnation, duration_ms (spawn or restart to ready)
//   "proc exited"       proc, pid, incarnation, exit_code, duration_ms (ready to end)
//   "proc killed"       proc, pid, incarnation, signal, core_dumped, duration_ms
//   "proc failed"       proc, incarnation, reason
//   "proc spawn failed" proc, incarnation, reason
//   "proc restarting"   proc, incarnation, attempt, delay_ms, reason
//   "proc restarted"    proc, incarnation, pid
//   "proc gave up"      proc (or group, with group=true), reason
//   "proc terminated"   proc, incarnation, status (it was asked to stop)
//   "proc restart failed" proc, reason (warn)
// Spawn, terminate and kill requests are logged where they arrive, with who asked
// (daemon/host_service.cc); the shutdown summary by daemon/daemon_runner.cc.
//
// Thread-safe. Subscribes in the constructor and unsubscribes in the destructor;
// the Host must outlive it.
#ifndef HOSTD_DAEMON_LIFECYCLE_LOG_H_
#define HOSTD_DAEMON_LIFECYCLE_LOG_H_

#include <cstdint>

#include "daemon/host.h"

namespace hostd::daemon {

class LifecycleLog {
 public:
  explicit LifecycleLog(Host& host);
  ~LifecycleLog();
  LifecycleLog(const LifecycleLog&) = delete;
  LifecycleLog& operator=(const LifecycleLog&) = delete;

  // What the line for `e` says; nothing for events that are not logged.
  static void Write(const HostEvent& e);

 private:
  Host& host_;
  uint64_t subscription_;
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_LIFECYCLE_LOG_H_
