// ControlSocket: the control API's listening socket (a filesystem unix socket or
// tcp:), accepted by hostd itself and handed to the gRPC server connection by
// connection (grpc::AddInsecureChannelFromFd). On the unix socket hostd so knows
// who is at the other end of each: the peer's uid and pid from SO_PEERCRED, read at
// accept (gRPC's own unix listener does not expose them); on tcp, the peer's
// address.
//
//   auto sock = ControlSocket::Listen(*ChannelAddr::Parse("unix:/run/hostd/hostd.sock"));
//   ... build and start the grpc::Server with no listening port for it ...
//   (*sock)->Serve(*server);
//   Caller who = (*sock)->CallerOf(ctx->peer());                  // in a handler
//
// It also keeps the control API serving under a flood: gRPC's own listener has
// no cap on connections and stops accepting for good after one accept fails with
// EMFILE. Here
//   - on the unix socket only hostd's own user and root are served (SO_PEERCRED,
//     as every unix listener of hostd does; the file is 0600 too);
//   - at most `max_connections` handed-over connections are open at once: one
//     more is accepted and closed at once (counted in shed()), and served again
//     once one has gone. A connection gRPC closed is noticed by its descriptor:
//     each is remembered with its socket's inode and forgotten once that
//     descriptor no longer names that socket;
//   - a failed accept (out of descriptors) is retried after 100 ms, so the API
//     comes back as soon as descriptors are free.
// tls: is not served here: gRPC can take over only plaintext connections.
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
#include "grpcpp/server.h"

namespace hostd::daemon {

class ControlSocket {
 public:
  // Binds `addr`: a unix: filesystem path (not abstract), made mode 0600, or a
  // tcp: address (a name is resolved now). Unavailable, naming the address and
  // the cause, if it cannot; InvalidArgument for any other kind of address.
  static absl::StatusOr<std::unique_ptr<ControlSocket>> Listen(const channel::ChannelAddr& addr,
                                                               size_t max_connections = 1024);
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
  ControlSocket(std::string path, base::UniqueFd listener, base::UniqueFd wake, size_t max_connections);
  void AcceptLoop(grpc::Server& server);
  // Whether another connection may be handed over now (accept thread).
  bool Room();

  const std::string path_;  // the unix socket's; "" on tcp
  const size_t max_connections_;
  std::vector<std::pair<int, ino_t>> handed_;  // accept thread: fd, socket inode
  std::atomic<size_t> shed_{0};
  base::UniqueFd listener_;
  base::UniqueFd wake_;  // an eventfd: written to stop the accept thread
  std::thread thread_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Caller> callers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_CONTROL_SOCKET_H_
