// ControlSocket: the control API's listening socket (a unix socket, filesystem or
// abstract, tcp: or tls:), accepted by hostd itself and handed to the gRPC server
// connection by connection (grpc::AddInsecureChannelFromFd). So hostd knows who is
// at the other end of each: on a unix socket the peer's uid and pid from
// SO_PEERCRED, read at accept (gRPC's own unix listener does not expose them); on
// tcp: and tls: the peer's address, and on tls: the client certificate's
// identity. gRPC takes over accepted connections only in plaintext, so on tls:
// hostd ends TLS itself (TlsTerminator, with the TlsContext hostd's frontend uses)
// and relays each connection to gRPC over a socketpair.
//
//   auto sock = ControlSocket::Listen(*ChannelAddr::Parse("unix:/run/hostd/hostd.sock"));
//   ... build and start the grpc::Server with no listening port ...
//   (*sock)->Serve(*server);
//   Caller who = (*sock)->CallerOf(ctx->peer());                  // in a handler
//
// It also keeps the control API serving under a flood: gRPC's own listener has
// no cap on connections and stops accepting for good after one accept fails with
// EMFILE. Here
//   - on a unix socket only hostd's own user and root are served (SO_PEERCRED,
//     as every unix listener of hostd does; the file is 0600 too);
//   - at most `max_connections` connections are open or handshaking TLS at once:
//     one more is accepted and closed at once (counted in shed()), and served
//     again once one has gone. A connection gRPC closed is noticed by its
//     descriptor: each is remembered with its socket's inode and forgotten once
//     that descriptor no longer names that socket;
//   - a TLS handshake must finish within 10 s;
//   - a failed accept (out of descriptors) is retried after 100 ms, so the API
//     comes back as soon as descriptors are free.
//
// A stale socket file at the path is replaced, as gRPC's listener does. Each
// accepted connection is registered under gRPC's peer name for it ("fd:<n>") before
// gRPC reads a byte; a descriptor number reused later gets the new peer's entry.
//
// Thread-safe. Serve() starts one accept thread; StopAccepting() (before the
// server shuts down) or the destructor stops it. Destroy it after the server: its
// handlers call CallerOf.
#ifndef HOSTD_DAEMON_CONTROL_SOCKET_H_
#define HOSTD_DAEMON_CONTROL_SOCKET_H_

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/unique_fd.h"
#include "channel/channel_addr.h"
#include "daemon/host_service.h"
#include "daemon/tls_terminator.h"
#include "grpcpp/server.h"

namespace hostd::daemon {

class ControlSocket {
 public:
  // Binds `addr`: a unix: filesystem path, made mode 0600, an abstract unix: name,
  // or a tcp: or tls: address (a name is resolved now); tls: needs `tls`.
  // Unavailable, naming the address and the cause, if it cannot; InvalidArgument
  // for any other kind of address.
  static absl::StatusOr<std::unique_ptr<ControlSocket>> Listen(const channel::ChannelAddr& addr,
                                                               size_t max_connections = 1024,
                                                               std::shared_ptr<channel::TlsContext> tls = nullptr);
  ~ControlSocket();
  ControlSocket(const ControlSocket&) = delete;
  ControlSocket& operator=(const ControlSocket&) = delete;

  // Accepts connections for `server` until StopAccepting() or destruction. Once.
  void Serve(grpc::Server& server);
  // Stops accepting and removes the socket file; connections already handed over
  // stay the server's, and CallerOf still answers for them. Call it before the
  // server shuts down. Idempotent.
  void StopAccepting();

  // Who is at the other end of the connection gRPC names `grpc_peer`: uid and
  // pid (-1 on tcp, or when it is not one of this socket's) and its address.
  Caller CallerOf(const std::string& grpc_peer) const;

  // Connections closed at once for being past the cap.
  size_t shed() const { return shed_.load(); }

 private:
  ControlSocket(bool unix_socket, std::string path, base::UniqueFd listener, base::UniqueFd wake,
                size_t max_connections, std::unique_ptr<TlsTerminator> terminator);
  void AcceptLoop(grpc::Server& server);
  // Whether another connection may be taken now: handed over and handshaking
  // ones count.
  bool Room() ABSL_LOCKS_EXCLUDED(mu_);
  // Registers `conn` under gRPC's name for it ("fd:<n>") and gives it to gRPC,
  // unless StopAccepting() has run (then it is closed).
  void HandOver(grpc::Server& server, base::UniqueFd conn, Caller who) ABSL_LOCKS_EXCLUDED(mu_);

  const bool unix_;
  const std::string path_;  // the unix socket file's; "" on tcp, tls and abstract
  const size_t max_connections_;
  std::atomic<size_t> shed_{0};
  base::UniqueFd listener_;
  base::UniqueFd wake_;  // an eventfd: written to stop the accept thread
  std::thread thread_;
  mutable absl::Mutex mu_;
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  std::vector<std::pair<int, ino_t>> handed_ ABSL_GUARDED_BY(mu_);  // fd, socket inode
  absl::flat_hash_map<std::string, Caller> callers_ ABSL_GUARDED_BY(mu_);
  // tls: only; destroyed first (declared last), so no relay hands a connection
  // over to a ControlSocket being destroyed.
  std::unique_ptr<TlsTerminator> terminator_;
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_CONTROL_SOCKET_H_
