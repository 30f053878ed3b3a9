// ControlSocket: hostd's unix control socket, accepted by hostd itself and handed
// to the gRPC server connection by connection (grpc::AddInsecureChannelFromFd), so
// that hostd knows who is at the other end of each: the peer's uid and pid from
// SO_PEERCRED, read at accept. gRPC's own unix listener does not expose them.
//
//   auto sock = ControlSocket::Listen("/run/hostd/hostd.sock");   // bound, mode 0600
//   ... build and start the grpc::Server with no listening port for it ...
//   (*sock)->Serve(*server);
//   Caller who = (*sock)->CallerOf(ctx->peer());                  // in a handler
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

#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/unique_fd.h"
#include "daemon/host_service.h"
#include "grpcpp/server.h"

namespace hostd::daemon {

class ControlSocket {
 public:
  // Binds `path` (a filesystem path, not abstract) and makes it mode 0600.
  // Unavailable, naming the path and errno, if it cannot.
  static absl::StatusOr<std::unique_ptr<ControlSocket>> Listen(const std::string& path);
  ~ControlSocket();
  ControlSocket(const ControlSocket&) = delete;
  ControlSocket& operator=(const ControlSocket&) = delete;

  // Accepts connections for `server` until StopAccepting() or destruction. Once.
  void Serve(grpc::Server& server);
  // Stops accepting and removes the socket file; connections already handed over
  // stay the server's, and CallerOf still answers for them. Call it before the
  // server shuts down. Idempotent.
  void StopAccepting();

  // The credentials of the connection gRPC names `grpc_peer`; uid and pid -1
  // when it is not one of this socket's.
  Caller CallerOf(const std::string& grpc_peer) const;

 private:
  ControlSocket(std::string path, base::UniqueFd listener, base::UniqueFd wake);
  void AcceptLoop(grpc::Server& server);

  const std::string path_;
  base::UniqueFd listener_;
  base::UniqueFd wake_;  // an eventfd: written to stop the accept thread
  std::thread thread_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Caller> callers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_CONTROL_SOCKET_H_
