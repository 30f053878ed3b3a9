#include "daemon/control_socket.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/log.h"
#include "base/unix_addr.h"
#include "grpcpp/server_posix.h"

namespace hostd::daemon {

absl::StatusOr<std::unique_ptr<ControlSocket>> ControlSocket::Listen(const std::string& path, size_t max_connections) {
  absl::StatusOr<base::UnixAddr> addr = base::UnixAddr::Create(path);
  if (!addr.ok()) return addr.status();
  base::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return base::ErrnoError(errno, "control socket");
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path.c_str());  // a stale socket
  if (bind(fd.get(), addr->get(), addr->size()) != 0) {
    return base::ErrnoError(absl::StatusCode::kUnavailable, errno,
                            absl::StrCat("cannot serve the control API on unix:", path, "; pick another with --grpc"));
  }
  if (chmod(path.c_str(), 0600) != 0 || listen(fd.get(), SOMAXCONN) != 0) {
    return base::ErrnoError(absl::StatusCode::kUnavailable, errno, absl::StrCat("control socket ", path));
  }
  base::UniqueFd wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return base::ErrnoError(errno, "eventfd");
  return std::unique_ptr<ControlSocket>(
      new ControlSocket(path, std::move(fd), std::move(wake), std::max<size_t>(1, max_connections)));
}

ControlSocket::ControlSocket(std::string path, base::UniqueFd listener, base::UniqueFd wake, size_t max_connections)
    : path_(std::move(path)),
      max_connections_(max_connections),
      listener_(std::move(listener)),
      wake_(std::move(wake)) {}

bool ControlSocket::Room() {
  // Forget the connections gRPC has closed: their descriptor is gone, or names
  // another file now.
  std::erase_if(handed_, [](const std::pair<int, ino_t>& h) {
    struct stat st {};
    return fstat(h.first, &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_ino != h.second;
  });
  return handed_.size() < max_connections_;
}

ControlSocket::~ControlSocket() { StopAccepting(); }

void ControlSocket::StopAccepting() {
  uint64_t one = 1;
  (void)!write(wake_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  if (listener_.valid()) {
    listener_ = base::UniqueFd();
    unlink(path_.c_str());
  }
}

void ControlSocket::Serve(grpc::Server& server) {
  thread_ = std::thread([this, &server] { AcceptLoop(server); });
}

void ControlSocket::AcceptLoop(grpc::Server& server) {
  while (true) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      base::Log().error("control socket: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    int conn = accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (conn < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
      // Out of descriptors (or memory): say so, and try again once one may be free
      // rather than spin.
      base::Log().warn("control socket: accept: {}", std::strerror(errno));
      poll(fds + 1, 1, 100);
      continue;
    }
    ucred cred{};
    socklen_t len = sizeof(cred);
    Caller who{.peer = absl::StrCat("fd:", conn)};
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || (cred.uid != geteuid() && cred.uid != 0)) {
      base::Log().warn("control socket: refused a connection from uid {} (pid {}): only uid {} and root may connect",
                       static_cast<int>(cred.uid), cred.pid, geteuid());
      close(conn);
      continue;
    }
    who.uid = cred.uid;
    who.pid = cred.pid;
    struct stat st {};
    if (!Room() || fstat(conn, &st) != 0) {
      close(conn);
      if (shed_.fetch_add(1) % 1000 == 0) {
        base::Log().warn(
            "control socket: {} connections are open (--max-grpc-connections); closing new ones until "
            "one goes",
            handed_.size());
      }
      continue;
    }
    handed_.emplace_back(conn, st.st_ino);
    {
      absl::MutexLock lock(&mu_);
      callers_[who.peer] = who;
    }
    grpc::AddInsecureChannelFromFd(&server, conn);  // gRPC owns the descriptor now
  }
}

Caller ControlSocket::CallerOf(const std::string& grpc_peer) const {
  absl::MutexLock lock(&mu_);
  auto it = callers_.find(grpc_peer);
  return it == callers_.end() ? Caller{.peer = grpc_peer} : it->second;
}

}  // namespace hostd::daemon
