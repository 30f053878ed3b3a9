// SdNotify: systemd's readiness protocol, spoken directly (one datagram to
// $NOTIFY_SOCKET), so hostd needs no libsystemd. Without $NOTIFY_SOCKET it does
// nothing: not running under systemd (or a supervisor speaking the protocol).
// The watchdog (WATCHDOG=1 at half of $WATCHDOG_USEC) is SdWatchdog.
#ifndef HOSTD_DAEMON_SD_NOTIFY_H_
#define HOSTD_DAEMON_SD_NOTIFY_H_

#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace hostd::daemon {

// Sends `state` ("READY=1", "STOPPING=1", "STATUS=..."; lines joined by '\n').
absl::Status SdNotify(absl::string_view state);

// The systemd watchdog's period: $WATCHDOG_USEC, when it is set, positive and
// meant for this process ($WATCHDOG_PID unset or equal to getpid()); otherwise
// none (a zero duration).
absl::Duration WatchdogPeriod();

// Sends WATCHDOG=1 every half period while `healthy()` holds, from a thread of its
// own, until destroyed. A hostd whose host loop hangs stops answering `healthy()`,
// so systemd sees the pings stop and restarts it (WatchdogSec= in the unit).
// With a zero period it does nothing.
class SdWatchdog {
 public:
  SdWatchdog(absl::Duration period, std::function<bool()> healthy);
  ~SdWatchdog();
  SdWatchdog(const SdWatchdog&) = delete;
  SdWatchdog& operator=(const SdWatchdog&) = delete;

 private:
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_SD_NOTIFY_H_
