// SdNotify: systemd's readiness protocol, spoken directly (one datagram to
// $NOTIFY_SOCKET), so hostd needs no libsystemd. Without $NOTIFY_SOCKET it does
// nothing: not running under systemd (or a supervisor speaking the protocol).
#ifndef HOSTD_DAEMON_SD_NOTIFY_H_
#define HOSTD_DAEMON_SD_NOTIFY_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace hostd::daemon {

// Sends `state` ("READY=1", "STOPPING=1", "STATUS=..."; lines joined by '\n').
absl::Status SdNotify(absl::string_view state);

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_SD_NOTIFY_H_
