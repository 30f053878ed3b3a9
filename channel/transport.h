// Transports: stream sockets for every ChannelAddr kind, all close-on-exec.
//
// unix and tcp are kernel sockets; `local` is in-process: a listener registers its
// id in a process-wide table and a dial hands it one end of a fresh socketpair;
// `tls` is TLS (OpenSSL, through Asio's ssl::stream) over TCP. All four share one
// Socket type and every semantic above the byte stream (framing, handshake,
// sessions, backpressure) is identical on each.
//
// Asio creates descriptors without SOCK_CLOEXEC and accepts with accept(2), which
// would leak them into spawned procs; these functions create and accept every socket
// themselves (socket/accept4/socketpair with SOCK_CLOEXEC) and hand it to Asio.
#ifndef HOSTD_CHANNEL_TRANSPORT_H_
#define HOSTD_CHANNEL_TRANSPORT_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "channel/channel_addr.h"
#include "channel/socket.h"
#include "channel/tls.h"

namespace hostd::channel {

// Accepts connections on one address. Create binds at once (so errors surface at
// Create) and reports the concrete address when `addr.is_any()`. Start delivers each
// accepted socket on the io_context's thread until Close. A unix path left behind by
// a dead listener is replaced; a live one is AlreadyExists. Close removes the unix
// path it created. Loop-thread only after Create.
class StreamAcceptor {
 public:
  using AcceptFn = std::function<void(Socket)>;

  // `tls` is required for a tls: address (its server side; the handshake is the
  // Socket's AsyncHandshake, run by the listener under its handshake timeout).
  static absl::StatusOr<std::unique_ptr<StreamAcceptor>> Create(boost::asio::io_context& ctx, const ChannelAddr& addr,
                                                                std::shared_ptr<TlsContext> tls = nullptr);
  virtual ~StreamAcceptor() = default;

  virtual const ChannelAddr& addr() const = 0;
  virtual void Start(AcceptFn on_accept) = 0;
  virtual void Close() = 0;
};

// Connects to `addr`; `done` runs on ctx's thread with the socket or the error
// (Unavailable when nothing listens there). Never blocks. A DNS name is resolved
// (off the loop) and its addresses tried in order. tls: needs `tls` (its client
// side) and completes the TLS handshake, verifying the listener against the CA
// and `addr`'s host, before `done`: FailedPrecondition without `tls`,
// Unauthenticated when either side refuses the other.
void AsyncConnect(boost::asio::io_context& ctx, const ChannelAddr& addr,
                  std::function<void(absl::Status, Socket)> done);
void AsyncConnect(boost::asio::io_context& ctx, const ChannelAddr& addr, std::shared_ptr<TlsContext> tls,
                  std::function<void(absl::Status, Socket)> done);

}  // namespace hostd::channel

#endif  // HOSTD_CHANNEL_TRANSPORT_H_
