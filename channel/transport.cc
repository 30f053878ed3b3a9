#include "channel/transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/errno_status.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "base/unix_addr.h"
#include "boost/asio/basic_socket_acceptor.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"

namespace hostd::channel {
namespace {

namespace asio = boost::asio;
using generic_stream = asio::generic::stream_protocol;
using base::UniqueFd;
using Acceptor = asio::basic_socket_acceptor<generic_stream>;

struct SockAddr {
  sockaddr_storage storage{};
  socklen_t len = 0;
  int family = AF_UNSPEC;
  int protocol = 0;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// `addr` is unix, or inet with an IP literal (a name is resolved first).
SockAddr ToSockAddr(const ChannelAddr& addr) {
  SockAddr out;
  if (addr.is_inet()) {
    out.protocol = IPPROTO_TCP;
    if (addr.is_ipv6()) {
      auto* sa = reinterpret_cast<sockaddr_in6*>(&out.storage);
      sa->sin6_family = AF_INET6;
      sa->sin6_port = htons(static_cast<uint16_t>(addr.port()));
      inet_pton(AF_INET6, addr.host().c_str(), &sa->sin6_addr);  // validated by ChannelAddr
      out.len = sizeof(*sa);
    } else {
      auto* sa = reinterpret_cast<sockaddr_in*>(&out.storage);
      sa->sin_family = AF_INET;
      sa->sin_port = htons(static_cast<uint16_t>(addr.port()));
      inet_pton(AF_INET, addr.host().c_str(), &sa->sin_addr);
      out.len = sizeof(*sa);
    }
    out.family = out.get()->sa_family;
    return out;
  }
  // ChannelAddr has checked the name against the same limits.
  base::UnixAddr ua = addr.host().empty() ? base::UnixAddr::Autobind() : *base::UnixAddr::Create(addr.host());
  std::memcpy(&out.storage, ua.get(), ua.size());
  out.len = ua.size();
  out.family = AF_UNIX;
  return out;
}

absl::StatusOr<ChannelAddr> BoundAddr(int fd, const ChannelAddr& requested) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return base::ErrnoError(errno, absl::StrCat("getsockname for ", requested.ToString()));
  }
  if (requested.is_inet()) {
    uint16_t port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                             : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    return requested.transport() == Transport::kTls ? ChannelAddr::Tls(requested.host(), port)
                                                    : ChannelAddr::Tcp(requested.host(), port);
  }
  if (!requested.host().empty()) return requested;
  // Autobind names are five hex digits after the leading NUL.
  return ChannelAddr::Unix(base::UnixAddr::FromKernel(*reinterpret_cast<sockaddr_un*>(&ss), len).name());
}

void TuneSocket(int fd, int family) {
  if (family == AF_INET || family == AF_INET6) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
}

RawSocket Adopt(asio::io_context& ctx, UniqueFd fd, int family, int protocol) {
  TuneSocket(fd.get(), family);
  boost::system::error_code ec;
  RawSocket s(ctx);
  s.assign(generic_stream(family, protocol), fd.get(), ec);
  if (!ec) fd.release();
  return s;
}


// ---- kernel sockets (unix, tcp, tls) ----

// A unix listener of hostd serves only its own effective user and root: file
// sockets are 0600 too, but abstract names (procs' own addresses) have no file
// permissions, so the peer's credentials decide. False (and a log line): refuse.
bool PeerMayConnect(int fd, const std::string& listener) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    base::Log().warn("refused a connection to {}: its peer's credentials cannot be read: {}", listener,
                     std::strerror(errno));
    return false;
  }
  if (cred.uid == ::geteuid() || cred.uid == 0) return true;
  base::Log().warn("refused a connection to {} from uid {} (pid {}): only uid {} and root may connect", listener,
                   cred.uid, cred.pid, ::geteuid());
  return false;
}

class KernelAcceptor final : public StreamAcceptor {
 public:
  KernelAcceptor(asio::io_context& ctx, ChannelAddr addr, SockAddr sa, std::string unlink_path, struct stat st,
                 std::shared_ptr<TlsContext> tls)
      : ctx_(ctx),
        tls_(std::move(tls)),
        addr_(std::move(addr)),
        sa_(sa),
        unlink_path_(std::move(unlink_path)),
        bound_stat_(st),
        acceptor_(std::make_shared<Acceptor>(ctx)) {}
  ~KernelAcceptor() override { Close(); }

  absl::Status Adopt(UniqueFd fd) {
    boost::system::error_code ec;
    acceptor_->assign(generic_stream(sa_.family, sa_.protocol), fd.get(), ec);
    if (ec) return absl::InternalError(absl::StrCat("adopting listener for ", addr_.ToString(), ": ", ec.message()));
    fd.release();
    return absl::OkStatus();
  }

  const ChannelAddr& addr() const override { return addr_; }

  void Start(AcceptFn on_accept) override {
    if (tls_ != nullptr) {
      // Each connection starts with the context of the moment: a reload reaches
      // the next connection, not the ones up.
      on_accept = [tls = tls_, inner = std::move(on_accept)](Socket plain) {
        inner(Socket(std::move(plain).TakeRaw(), tls->server(), /*server=*/true));
      };
    }
    Arm(acceptor_, std::move(on_accept), ctx_, sa_, addr_.ToString());
  }

  void Close() override {
    if (!acceptor_->is_open()) return;
    boost::system::error_code ec;
    acceptor_->close(ec);
    // Remove the path only if it is still the socket this listener created.
    struct stat now {};
    if (!unlink_path_.empty() && stat(unlink_path_.c_str(), &now) == 0 && now.st_ino == bound_stat_.st_ino &&
        now.st_dev == bound_stat_.st_dev) {
      ::unlink(unlink_path_.c_str());
    }
  }

 private:
  // Handlers hold the acceptor by shared_ptr (never `this`): one may still be queued
  // after Close and destruction, and then sees a closed acceptor.
  static void Arm(std::shared_ptr<Acceptor> acc, AcceptFn on_accept, asio::io_context& ctx, SockAddr sa,
                  std::string name) {
    auto* raw = acc.get();
    raw->async_wait(asio::socket_base::wait_read, [acc = std::move(acc), on_accept = std::move(on_accept), &ctx, sa,
                                                   name = std::move(name)](boost::system::error_code ec) mutable {
      if (ec || !acc->is_open()) return;
      Drain(std::move(acc), std::move(on_accept), ctx, sa, std::move(name));
    });
  }

  // Accepts until the backlog is empty. Asio registers descriptors edge-triggered, so
  // stopping early would strand connections until the next one arrives.
  static void Drain(std::shared_ptr<Acceptor> acc, AcceptFn on_accept, asio::io_context& ctx, SockAddr sa,
                    std::string name) {
    while (acc->is_open()) {
      int fd = ::accept4(acc->native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd >= 0) {
        UniqueFd conn(fd);
        if (sa.family == AF_UNIX && !PeerMayConnect(conn.get(), name)) continue;  // closed
        on_accept(Socket(channel::Adopt(ctx, std::move(conn), sa.family, sa.protocol)));
        continue;
      }
      int err = errno;
      if (err == EINTR || err == ECONNABORTED) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      // Out of descriptors or memory: keep serving the connections we have and try
      // again shortly rather than spin on a backlog we cannot take.
      base::Log().warn("accept on {} failed: {}; retrying in 100ms", name, std::strerror(err));
      auto timer = std::make_shared<asio::steady_timer>(ctx, std::chrono::milliseconds(100));
      timer->async_wait([timer, acc, on_accept, &ctx, sa, name](boost::system::error_code ec) mutable {
        if (!ec) Drain(std::move(acc), std::move(on_accept), ctx, sa, std::move(name));
      });
      return;
    }
    if (acc->is_open()) Arm(std::move(acc), std::move(on_accept), ctx, sa, std::move(name));
  }

  asio::io_context& ctx_;
  std::shared_ptr<TlsContext> tls_;
  ChannelAddr addr_;
  SockAddr sa_;
  std::string unlink_path_;
  struct stat bound_stat_;
  std::shared_ptr<Acceptor> acceptor_;
};

// True when something accepts connections at this unix path. Non-blocking, so a live
// listener with a full backlog (EAGAIN) counts as live instead of stalling the loop.
bool UnixPathLive(const SockAddr& sa) {
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe.valid()) return true;  // cannot tell: do not remove it
  return ::connect(probe.get(), sa.get(), sa.len) == 0 || errno == EAGAIN;
}

absl::StatusOr<std::unique_ptr<StreamAcceptor>> BindKernel(asio::io_context& ctx, const ChannelAddr& addr,
                                                           std::shared_ptr<TlsContext> tls) {
  if (addr.is_inet() && !addr.is_ip()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot listen on ", addr.ToString(),
                                                   ": a listener binds an IP literal, not a host name"));
  }
  if (addr.transport() == Transport::kTls && (tls == nullptr || tls->server() == nullptr)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot listen on ", addr.ToString(), ": TLS needs a certificate, its key and a CA (--tls-cert, --tls-key, --tls-ca)"));
  }
  SockAddr sa = ToSockAddr(addr);
  UniqueFd fd(::socket(sa.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, sa.protocol));
  if (!fd.valid()) return base::ErrnoError(errno, absl::StrCat("socket for ", addr.ToString()));
  if (sa.family != AF_UNIX) {
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  }
  bool filesystem_path = addr.transport() == Transport::kUnix && !addr.host().empty() && !addr.is_abstract();
  if (::bind(fd.get(), sa.get(), sa.len) != 0) {
    int err = errno;
    if (err == EADDRINUSE && filesystem_path && !UnixPathLive(sa)) {
      // A socket file left by a listener that died: take the address over.
      base::Log().info("replacing stale unix socket {}", addr.host());
      ::unlink(addr.host().c_str());
      if (::bind(fd.get(), sa.get(), sa.len) != 0)
        err = errno;
      else
        err = 0;
    }
    if (err == EADDRINUSE) {
      return absl::AlreadyExistsError(
          absl::StrCat("cannot listen on ", addr.ToString(), ": another listener is serving it"));
    }
    // errno's own code for EADDRNOTAVAIL is AlreadyExists; here it means the caller
    // named an address this host does not have.
    if (err == EADDRNOTAVAIL) {
      return base::ErrnoError(absl::StatusCode::kInvalidArgument, err,
                              absl::StrCat("cannot listen on ", addr.ToString()));
    }
    if (err != 0) return base::ErrnoError(err, absl::StrCat("cannot listen on ", addr.ToString()));
  }
  // A socket file's mode decides who may connect: hostd's user only, whatever the umask.
  if (filesystem_path && ::chmod(addr.host().c_str(), 0600) != 0) {
    return base::ErrnoError(errno, absl::StrCat("cannot set the mode of ", addr.host()));
  }
  if (::listen(fd.get(), SOMAXCONN) != 0) return base::ErrnoError(errno, absl::StrCat("listen on ", addr.ToString()));
  HOSTD_ASSIGN_OR_RETURN(ChannelAddr bound, BoundAddr(fd.get(), addr));
  struct stat st {};
  if (filesystem_path) stat(addr.host().c_str(), &st);
  auto acceptor = std::make_unique<KernelAcceptor>(ctx, std::move(bound), sa,
                                                   filesystem_path ? addr.host() : std::string(), st,
                                                   addr.transport() == Transport::kTls ? std::move(tls) : nullptr);
  HOSTD_RETURN_IF_ERROR(acceptor->Adopt(std::move(fd)));
  return acceptor;
}

// ---- the in-process `local` transport ----

// One registered local listener. Shared by the registry (weakly) and the acceptor.
struct LocalEndpoint {
  asio::io_context* ctx;
  absl::Mutex mu;
  bool closed ABSL_GUARDED_BY(mu) = false;
  StreamAcceptor::AcceptFn on_accept ABSL_GUARDED_BY(mu);
  std::vector<UniqueFd> backlog ABSL_GUARDED_BY(mu);  // dialed before Start
};

class LocalRegistry {
 public:
  static LocalRegistry& Get() {
    static LocalRegistry* const r = new LocalRegistry();  // leaked: used until exit
    return *r;
  }

  absl::StatusOr<uint64_t> Register(uint64_t id, std::shared_ptr<LocalEndpoint> ep) {
    absl::MutexLock lock(&mu_);
    if (id == 0) {
      while (endpoints_.contains(next_id_)) ++next_id_;
      id = next_id_++;
    } else if (auto it = endpoints_.find(id); it != endpoints_.end() && !it->second.expired()) {
      return absl::AlreadyExistsError(absl::StrCat("cannot listen on local:", id, ": another listener is serving it"));
    }
    endpoints_[id] = ep;
    return id;
  }
  void Unregister(uint64_t id, const LocalEndpoint* ep) {
    absl::MutexLock lock(&mu_);
    auto it = endpoints_.find(id);
    if (it != endpoints_.end() && it->second.lock().get() == ep) endpoints_.erase(it);
  }
  std::shared_ptr<LocalEndpoint> Find(uint64_t id) {
    absl::MutexLock lock(&mu_);
    auto it = endpoints_.find(id);
    return it == endpoints_.end() ? nullptr : it->second.lock();
  }

 private:
  absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, std::weak_ptr<LocalEndpoint>> endpoints_ ABSL_GUARDED_BY(mu_);
};

void DeliverLocal(const std::shared_ptr<LocalEndpoint>& ep, UniqueFd fd) {
  absl::MutexLock lock(&ep->mu);
  if (ep->closed) return;  // fd closes: the dialer sees EOF
  if (!ep->on_accept) {
    ep->backlog.push_back(std::move(fd));
    return;
  }
  auto shared_fd = std::make_shared<UniqueFd>(std::move(fd));
  asio::post(*ep->ctx, [ep, shared_fd] {
    StreamAcceptor::AcceptFn fn;
    {
      absl::MutexLock lock(&ep->mu);
      if (ep->closed) return;
      fn = ep->on_accept;
    }
    fn(Socket(Adopt(*ep->ctx, std::move(*shared_fd), AF_UNIX, 0)));
  });
}

class LocalAcceptor final : public StreamAcceptor {
 public:
  LocalAcceptor(ChannelAddr addr, std::shared_ptr<LocalEndpoint> ep) : addr_(std::move(addr)), ep_(std::move(ep)) {}
  ~LocalAcceptor() override { Close(); }

  const ChannelAddr& addr() const override { return addr_; }

  void Start(AcceptFn on_accept) override {
    std::vector<UniqueFd> backlog;
    {
      absl::MutexLock lock(&ep_->mu);
      ep_->on_accept = std::move(on_accept);
      backlog.swap(ep_->backlog);
    }
    for (UniqueFd& fd : backlog) DeliverLocal(ep_, std::move(fd));
  }

  void Close() override {
    {
      absl::MutexLock lock(&ep_->mu);
      if (ep_->closed) return;
      ep_->closed = true;
      ep_->backlog.clear();
    }
    LocalRegistry::Get().Unregister(addr_.port(), ep_.get());
  }

 private:
  ChannelAddr addr_;
  std::shared_ptr<LocalEndpoint> ep_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<StreamAcceptor>> StreamAcceptor::Create(asio::io_context& ctx, const ChannelAddr& addr,
                                                                       std::shared_ptr<TlsContext> tls) {
  if (addr.transport() != Transport::kLocal) return BindKernel(ctx, addr, std::move(tls));
  auto ep = std::make_shared<LocalEndpoint>();
  ep->ctx = &ctx;
  HOSTD_ASSIGN_OR_RETURN(uint64_t id, LocalRegistry::Get().Register(addr.port(), ep));
  return std::make_unique<LocalAcceptor>(ChannelAddr::Local(id), std::move(ep));
}

namespace {

using ConnectDone = std::function<void(absl::Status, Socket)>;

// Connects to each of `targets` in turn from `next` until one answers.
void ConnectKernel(asio::io_context& ctx, std::string name, std::shared_ptr<std::vector<SockAddr>> targets, size_t next,
                   absl::Status last, ConnectDone done) {
  auto finish = [&ctx, &done](absl::Status s) {
    asio::post(ctx, [&ctx, s, done = std::move(done)] { done(s, Socket(ctx)); });
  };
  if (next >= targets->size()) return finish(last);
  const SockAddr& sa = (*targets)[next];
  UniqueFd fd(::socket(sa.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, sa.protocol));
  if (!fd.valid()) return finish(base::ErrnoError(errno, absl::StrCat("socket for ", name)));
  auto sock = std::make_shared<RawSocket>(Adopt(ctx, std::move(fd), sa.family, sa.protocol));
  generic_stream::endpoint ep(sa.get(), sa.len, sa.protocol);
  sock->async_connect(ep, [&ctx, sock, targets, next, done = std::move(done),
                           name = std::move(name)](boost::system::error_code ec) mutable {
    if (ec) {
      // Nobody listening there (or the path gone) is Unavailable: the caller dials
      // again later; errno alone would say NotFound or DeadlineExceeded for some.
      int err = ec.value();
      bool nobody_there = err == ECONNREFUSED || err == ENOENT || err == ECONNRESET || err == ETIMEDOUT ||
                          err == EHOSTUNREACH || err == ENETUNREACH;
      std::string what = absl::StrCat("cannot connect to ", name);
      absl::Status why =
          nobody_there ? base::ErrnoError(absl::StatusCode::kUnavailable, err, what) : base::ErrnoError(err, what);
      return ConnectKernel(ctx, std::move(name), targets, next + 1, why, std::move(done));
    }
    done(absl::OkStatus(), Socket(std::move(*sock)));
  });
}

// tls: the handshake on a connected socket, verifying the listener against `addr`'s host.
void StartTls(asio::io_context& ctx, const ChannelAddr& addr, std::shared_ptr<asio::ssl::context> client,
              Socket plain, ConnectDone done) {
  auto sock = std::make_shared<Socket>(std::move(plain).TakeRaw(), std::move(client), /*server=*/false);
  sock->AsyncHandshake(addr.host(), [&ctx, sock, done = std::move(done), name = addr.ToString()](absl::Status s) {
    if (!s.ok()) return done(absl::Status(s.code(), absl::StrCat(name, ": ", s.message())), Socket(ctx));
    done(absl::OkStatus(), std::move(*sock));
  });
}

}  // namespace

void AsyncConnect(asio::io_context& ctx, const ChannelAddr& addr, ConnectDone done) {
  AsyncConnect(ctx, addr, nullptr, std::move(done));
}

void AsyncConnect(asio::io_context& ctx, const ChannelAddr& addr, std::shared_ptr<TlsContext> tls, ConnectDone done) {
  auto fail = [&ctx, done](absl::Status s) { asio::post(ctx, [&ctx, done, s] { done(s, Socket(ctx)); }); };
  if (addr.is_any()) {
    return fail(
        absl::InvalidArgumentError(absl::StrCat("cannot dial ", addr.ToString(), ": it is a bind-any address")));
  }
  if (addr.transport() == Transport::kLocal) {
    std::shared_ptr<LocalEndpoint> ep = LocalRegistry::Get().Find(addr.port());
    if (ep == nullptr) return fail(absl::UnavailableError(absl::StrCat("nothing listens at ", addr.ToString())));
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) != 0) {
      return fail(base::ErrnoError(errno, absl::StrCat("socketpair for ", addr.ToString())));
    }
    DeliverLocal(ep, UniqueFd(fds[1]));
    auto sock = std::make_shared<Socket>(Adopt(ctx, UniqueFd(fds[0]), AF_UNIX, 0));
    asio::post(ctx, [done, sock] { done(absl::OkStatus(), std::move(*sock)); });
    return;
  }
  std::shared_ptr<asio::ssl::context> client;
  if (addr.transport() == Transport::kTls) {
    client = tls == nullptr ? nullptr : tls->client();
    if (client == nullptr) {
      return fail(absl::FailedPreconditionError(
          absl::StrCat("cannot dial ", addr.ToString(), ": TLS is not configured (--tls-ca)")));
    }
  }
  ConnectDone connected = done;
  if (client != nullptr) {
    connected = [&ctx, addr, client, done](absl::Status s, Socket sock) {
      if (!s.ok()) return done(s, std::move(sock));
      StartTls(ctx, addr, client, std::move(sock), done);
    };
  }
  if (!addr.is_inet() || addr.is_ip()) {
    auto targets = std::make_shared<std::vector<SockAddr>>(1, ToSockAddr(addr));
    return ConnectKernel(ctx, addr.ToString(), targets, 0, absl::OkStatus(), std::move(connected));
  }
  // A host name: getaddrinfo runs on Asio's resolver thread, never on the loop.
  auto resolver = std::make_shared<asio::ip::tcp::resolver>(ctx);
  resolver->async_resolve(
      addr.host(), std::to_string(addr.port()), asio::ip::tcp::resolver::numeric_service,
      [&ctx, resolver, name = addr.ToString(), connected = std::move(connected)](
          boost::system::error_code ec, asio::ip::tcp::resolver::results_type results) mutable {
        if (ec) {
          return connected(absl::UnavailableError(absl::StrCat("cannot resolve ", name, ": ", ec.message())),
                           Socket(ctx));
        }
        auto targets = std::make_shared<std::vector<SockAddr>>();
        for (const auto& r : results) {
          SockAddr sa;
          std::memcpy(&sa.storage, r.endpoint().data(), r.endpoint().size());
          sa.len = static_cast<socklen_t>(r.endpoint().size());
          sa.family = sa.get()->sa_family;
          sa.protocol = IPPROTO_TCP;
          targets->push_back(sa);
        }
        absl::Status none = absl::UnavailableError(absl::StrCat("cannot resolve ", name, ": no address"));
        ConnectKernel(ctx, std::move(name), targets, 0, none, std::move(connected));
      });
}

}  // namespace hostd::channel
