#include "daemon/control_socket.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include "daemon/tls_terminator.h"
#include "grpcpp/server_posix.h"

namespace hostd::daemon {

namespace {

absl::Status CannotServe(int err, const channel::ChannelAddr& addr) {
  return base::ErrnoError(
      absl::StatusCode::kUnavailable, err,
      absl::StrCat("cannot serve the control API on ", addr.ToString(), "; pick another with --grpc"));
}

// A listening TCP socket on `addr` (an IP or a name resolved here, at start).
absl::StatusOr<base::UniqueFd> ListenTcp(const channel::ChannelAddr& addr) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string port = std::to_string(addr.port());
  if (int rc = getaddrinfo(addr.host().c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve the control API on ", addr.ToString(), ": ",
                                               gai_strerror(rc), "; pick another with --grpc"));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(found, &freeaddrinfo);
  base::UniqueFd fd(socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return base::ErrnoError(errno, "control socket");
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0 || listen(fd.get(), SOMAXCONN) != 0) {
    return CannotServe(errno, addr);
  }
  return fd;
}

// "ipv4:127.0.0.1:5000" or "ipv6:[::1]:5000", as gRPC names a TCP peer.
std::string TcpPeer(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  char host[INET6_ADDRSTRLEN] = {};
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  if (ss.ss_family == AF_INET6) {
    const auto* sa = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &sa->sin6_addr, host, sizeof(host));
    return absl::StrCat("ipv6:[", host, "]:", ntohs(sa->sin6_port));
  }
  const auto* sa = reinterpret_cast<const sockaddr_in*>(&ss);
  inet_ntop(AF_INET, &sa->sin_addr, host, sizeof(host));
  return absl::StrCat("ipv4:", host, ":", ntohs(sa->sin_port));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControlSocket>> ControlSocket::Listen(const channel::ChannelAddr& addr,
                                                                     size_t max_connections,
                                                                     std::shared_ptr<channel::TlsContext> tls) {
  base::UniqueFd fd;
  std::string path;
  bool unix_socket = addr.transport() == channel::Transport::kUnix;
  if (addr.transport() == channel::Transport::kTls && tls == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("control socket: ", addr.ToString(), " needs TLS certificates (--tls-cert, --tls-key, --tls-ca)"));
  }
  if (addr.transport() == channel::Transport::kTcp || addr.transport() == channel::Transport::kTls) {
    absl::StatusOr<base::UniqueFd> tcp = ListenTcp(addr);
    if (!tcp.ok()) return tcp.status();
    fd = *std::move(tcp);
  } else if (unix_socket) {
    std::string name = addr.is_abstract() ? absl::StrCat("@", addr.host()) : addr.host();
    absl::StatusOr<base::UnixAddr> ua = base::UnixAddr::Create(name);
    if (!ua.ok()) return ua.status();
    fd = base::UniqueFd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) return base::ErrnoError(errno, "control socket");
    if (!addr.is_abstract()) {
      path = name;
      struct stat st {};
      if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path.c_str());  // a stale socket
    }
    if (bind(fd.get(), ua->get(), ua->size()) != 0) return CannotServe(errno, addr);
    if ((!path.empty() && chmod(path.c_str(), 0600) != 0) || listen(fd.get(), SOMAXCONN) != 0) {
      return base::ErrnoError(absl::StatusCode::kUnavailable, errno, absl::StrCat("control socket ", name));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("control socket: ", addr.ToString(), " is not a unix:, tcp: or tls: address"));
  }
  base::UniqueFd wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return base::ErrnoError(errno, "eventfd");
  std::unique_ptr<TlsTerminator> terminator;
  if (addr.transport() == channel::Transport::kTls) terminator = std::make_unique<TlsTerminator>(TlsTerminatorOptions{.tls = std::move(tls)});
  return std::unique_ptr<ControlSocket>(new ControlSocket(unix_socket, path, std::move(fd), std::move(wake),
                                                         std::max<size_t>(1, max_connections), std::move(terminator)));
}

ControlSocket::ControlSocket(bool unix_socket, std::string path, base::UniqueFd listener, base::UniqueFd wake,
                             size_t max_connections, std::unique_ptr<TlsTerminator> terminator)
    : unix_(unix_socket),
      path_(std::move(path)),
      max_connections_(max_connections),
      listener_(std::move(listener)),
      wake_(std::move(wake)),
      terminator_(std::move(terminator)) {}

bool ControlSocket::Room() {
  absl::MutexLock lock(&mu_);
  // Forget the connections gRPC has closed: their descriptor is gone, or names
  // another file now.
  std::erase_if(handed_, [](const std::pair<int, ino_t>& h) {
    struct stat st {};
    return fstat(h.first, &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_ino != h.second;
  });
  size_t handshaking = terminator_ == nullptr ? 0 : terminator_->handshaking();
  return handed_.size() + handshaking < max_connections_;
}

void ControlSocket::HandOver(grpc::Server& server, base::UniqueFd conn, Caller who) {
  struct stat st {};
  if (fstat(conn.get(), &st) != 0) return;
  absl::MutexLock lock(&mu_);
  if (!accepting_) return;  // the server may be shutting down: not one more connection
  std::string grpc_peer = absl::StrCat("fd:", conn.get());
  handed_.emplace_back(conn.get(), st.st_ino);
  callers_[grpc_peer] = std::move(who);
  grpc::AddInsecureChannelFromFd(&server, conn.release());  // gRPC owns the descriptor now
}

ControlSocket::~ControlSocket() { StopAccepting(); }

void ControlSocket::StopAccepting() {
  {
    absl::MutexLock lock(&mu_);
    accepting_ = false;
  }
  uint64_t one = 1;
  (void)!write(wake_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  if (listener_.valid()) {
    listener_ = base::UniqueFd();
    if (!path_.empty()) unlink(path_.c_str());
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
    base::UniqueFd owned(conn);
    Caller who;
    if (!unix_) {
      int one = 1;
      setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // as gRPC's own listener does
      who.peer = TcpPeer(conn);
    } else {
      ucred cred{};
      socklen_t len = sizeof(cred);
      if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || (cred.uid != geteuid() && cred.uid != 0)) {
        base::Log().warn("control socket: refused a connection from uid {} (pid {}): only uid {} and root may connect",
                         static_cast<int>(cred.uid), cred.pid, geteuid());
        continue;
      }
      who.uid = cred.uid;
      who.pid = cred.pid;
      who.peer = absl::StrCat("fd:", conn);
    }
    if (!Room()) {
      if (shed_.fetch_add(1) % 1000 == 0) {
        base::Log().warn(
            "control socket: {} connections are open or handshaking (--max-grpc-connections); closing new ones "
            "until one goes",
            max_connections_);
      }
      continue;
    }
    if (terminator_ == nullptr) {
      HandOver(server, std::move(owned), std::move(who));
      continue;
    }
    // Handed over once its TLS handshake is done, with the client certificate's
    // identity; the plaintext end is what gRPC sees.
    terminator_->Take(std::move(owned), [this, &server, who](base::UniqueFd plain, std::string identity) mutable {
      who.identity = std::move(identity);
      HandOver(server, std::move(plain), std::move(who));
    });
  }
}

Caller ControlSocket::CallerOf(const std::string& grpc_peer) const {
  absl::MutexLock lock(&mu_);
  auto it = callers_.find(grpc_peer);
  return it == callers_.end() ? Caller{.peer = grpc_peer} : it->second;
}

}  // namespace hostd::daemon
