#include "daemon/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/unique_fd.h"

namespace hostd::daemon {

absl::Status SdNotify(absl::string_view state) {
  const char* path = getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return absl::OkStatus();
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  size_t len = strlen(path);
  if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("NOTIFY_SOCKET \"", path, "\" is not a unix socket path"));
  }
  memcpy(sa.sun_path, path, len);
  if (path[0] == '@') sa.sun_path[0] = '\0';
  base::UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::InternalError(absl::StrCat("notify socket: ", strerror(errno)));
  socklen_t sa_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  if (sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), sa_len) < 0) {
    return absl::UnavailableError(absl::StrCat("sending to NOTIFY_SOCKET ", path, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace hostd::daemon
