#include "daemon/sd_notify.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/unique_fd.h"
#include "base/unix_addr.h"

namespace hostd::daemon {

absl::Status SdNotify(absl::string_view state) {
  const char* path = getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return absl::OkStatus();
  if (path[0] != '/' && path[0] != '@') {
    return absl::InvalidArgumentError(absl::StrCat("NOTIFY_SOCKET \"", path, "\" is not a unix socket path"));
  }
  absl::StatusOr<base::UnixAddr> addr = base::UnixAddr::Create(path);
  if (!addr.ok()) return absl::InvalidArgumentError(absl::StrCat("NOTIFY_SOCKET: ", addr.status().message()));
  base::UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return base::ErrnoError(errno, "notify socket");
  if (sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL, addr->get(), addr->size()) < 0) {
    // Unavailable whatever errno says (ENOENT, ECONNREFUSED): nobody listens there.
    return base::ErrnoError(absl::StatusCode::kUnavailable, errno, absl::StrCat("sending to NOTIFY_SOCKET ", path));
  }
  return absl::OkStatus();
}

absl::Duration WatchdogPeriod() {
  const char* usec = getenv("WATCHDOG_USEC");
  const char* pid = getenv("WATCHDOG_PID");
  int64_t us = 0;
  int64_t for_pid = 0;
  if (usec == nullptr || !absl::SimpleAtoi(usec, &us) || us <= 0) return absl::ZeroDuration();
  if (pid != nullptr && pid[0] != '\0' && (!absl::SimpleAtoi(pid, &for_pid) || for_pid != getpid())) {
    return absl::ZeroDuration();
  }
  return absl::Microseconds(us);
}

SdWatchdog::SdWatchdog(absl::Duration period, std::function<bool()> healthy) {
  if (period <= absl::ZeroDuration()) return;
  thread_ = std::thread([this, interval = period / 2, healthy = std::move(healthy)] {
    while (true) {
      if (!healthy || healthy()) (void)SdNotify("WATCHDOG=1");
      absl::MutexLock lock(&mu_);
      auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopped), interval)) return;
    }
  });
}

SdWatchdog::~SdWatchdog() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace hostd::daemon
