// TlsTerminator: TLS for the control API, ended inside hostd so that hostd, not
// gRPC, accepts every connection (see ControlSocket: a cap on connections, and
// accepting again after running out of descriptors). gRPC 1.51 can take over an
// accepted connection only in plaintext, so each TLS connection is relayed:
//
//   tcp (TLS) <-> this relay thread <-> socketpair <-> gRPC (AddInsecureChannelFromFd)
//
//   TlsTerminator t({.tls = tls_context});
//   t.Take(std::move(accepted), [&](base::UniqueFd plain, std::string identity) {
//     ... register the caller under "fd:<plain>", hand `plain` to gRPC ...
//   });
//
// Take() handshakes on the relay thread with the TlsContext's listening side as it
// is then (so reloaded certificates serve new connections, and a client
// certificate is verified against the CA, required when the context requires it).
// A handshake not done within `handshake_timeout` is closed, as is one that fails
// (logged at debug: a scan or a wrong certificate is the client's error, not
// hostd's). On success `ready` runs on the relay thread with the plaintext end for
// gRPC and the client certificate's identity (its common name, else its first
// subject alternative name; "" without one), then bytes are relayed both ways
// until either side closes or fails, and then both are closed.
//
// Bounds: each connection holds at most 16 KiB read but not yet written in each
// direction (plus OpenSSL's own record buffers); the caller caps how many
// connections there are, counting handshaking() ones. If the socketpair cannot be
// made (out of descriptors) the TLS connection is closed.
//
// Thread-safe. The destructor closes every connection and joins the relay thread.
#ifndef HOSTD_DAEMON_TLS_TERMINATOR_H_
#define HOSTD_DAEMON_TLS_TERMINATOR_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "boost/asio/io_context.hpp"
#include "channel/tls.h"

namespace hostd::daemon {

struct TlsTerminatorOptions {
  std::shared_ptr<channel::TlsContext> tls;
  absl::Duration handshake_timeout = absl::Seconds(10);
};

class TlsTerminator {
 public:
  using Ready = std::function<void(base::UniqueFd plain, std::string identity)>;

  explicit TlsTerminator(TlsTerminatorOptions options);
  ~TlsTerminator();
  TlsTerminator(const TlsTerminator&) = delete;
  TlsTerminator& operator=(const TlsTerminator&) = delete;

  // Handshakes on `conn` (an accepted, non-blocking TCP socket) and relays it.
  void Take(base::UniqueFd conn, Ready ready);
  // Connections taken whose handshake has not ended yet.
  size_t handshaking() const { return handshaking_.load(); }

 private:
  const TlsTerminatorOptions opts_;
  std::atomic<size_t> handshaking_{0};
  boost::asio::io_context io_;
  std::thread thread_;
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_TLS_TERMINATOR_H_
