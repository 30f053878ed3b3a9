// GrpcAcceptor: hostd's own accept loop for the control API's unix socket.
//
// gRPC's listener has no cap on connections, and once an accept fails with EMFILE
// it stops accepting for good, even after descriptors are free again (gRPC core
// behaviour). So on a unix address hostd does not give gRPC a listening port: it
// binds the socket itself (channel::StreamAcceptor: mode 0600, a stale path
// replaced, a live one refused) and hands every accepted connection to the
// started gRPC server with grpc::AddInsecureChannelFromFd. On the way it
//   - serves only hostd's own user and root (SO_PEERCRED, as every unix listener
//     of hostd does);
//   - caps the connections it has handed over at `max_connections`: one more is
//     accepted and closed at once (counted in shed()), and served again once one
//     has gone;
//   - when an accept fails for want of descriptors, retries shortly instead of
//     giving up, so the control API comes back as soon as descriptors are free.
// A connection gRPC has closed is noticed by its descriptor: each one handed over
// is remembered with its socket's inode, and forgotten once that descriptor no
// longer names that socket.
//
//   auto acceptor = GrpcAcceptor::Listen(addr, {.max_connections = 1024});
//   server = builder.BuildAndStart();   // with no listening port of its own
//   (*acceptor)->Start(server.get());
//   ...
//   acceptor.reset();                   // before server->Shutdown()
//
// Thread-safe; its own loop thread accepts. Destroying it stops accepting and
// removes the socket path; connections already handed over stay gRPC's.
#ifndef HOSTD_DAEMON_GRPC_ACCEPTOR_H_
#define HOSTD_DAEMON_GRPC_ACCEPTOR_H_

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "channel/channel_addr.h"
#include "channel/event_loop.h"
#include "channel/transport.h"
#include "grpcpp/server.h"

namespace hostd::daemon {

struct GrpcAcceptorOptions {
  size_t max_connections = 1024;
};

class GrpcAcceptor {
 public:
  // Binds `addr` (a unix path) now, so that errors surface here.
  static absl::StatusOr<std::unique_ptr<GrpcAcceptor>> Listen(const channel::ChannelAddr& addr,
                                                              GrpcAcceptorOptions options);
  ~GrpcAcceptor();
  GrpcAcceptor(const GrpcAcceptor&) = delete;
  GrpcAcceptor& operator=(const GrpcAcceptor&) = delete;

  // Starts handing connections to `server` (started, and outliving this).
  void Start(grpc::Server* server);

  // Connections handed over and still open, as of the last accept.
  size_t connections() const { return connections_.load(); }
  // Connections closed at once for being past the cap.
  size_t shed() const { return shed_.load(); }

 private:
  GrpcAcceptor(GrpcAcceptorOptions options, std::unique_ptr<channel::EventLoop> loop);
  void OnAccept(channel::Socket socket);  // loop thread

  const GrpcAcceptorOptions options_;
  std::unique_ptr<channel::EventLoop> loop_;
  std::unique_ptr<channel::StreamAcceptor> acceptor_;  // loop thread
  grpc::Server* server_ = nullptr;                     // loop thread, once started
  std::vector<std::pair<int, ino_t>> handed_;          // loop thread: fd, socket inode
  std::atomic<size_t> connections_{0};
  std::atomic<size_t> shed_{0};
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_GRPC_ACCEPTOR_H_
