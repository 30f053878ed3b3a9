// Socket: one connected byte stream of a link, whatever the transport: a kernel
// socket (unix, tcp, the local socketpair) or TLS over TCP. transport.h makes
// them (accepting, dialling); the Listener and the Sender read and write them.
#ifndef HOSTD_CHANNEL_SOCKET_H_
#define HOSTD_CHANNEL_SOCKET_H_

#include <algorithm>
#include <array>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "boost/asio/buffer.hpp"
#include "boost/asio/generic/stream_protocol.hpp"
#include "boost/asio/ssl/context.hpp"
#include "boost/asio/ssl/error.hpp"
#include "boost/asio/ssl/stream.hpp"

namespace hostd::channel {

using RawSocket = boost::asio::generic::stream_protocol::socket;

// A connected byte stream: a kernel socket, or TLS over one. An Asio
// AsyncReadStream/AsyncWriteStream (async_read_some, async_write_some, so
// asio::async_write works on it), with at most one read and one write in flight.
//
// TLS: a write takes at most one record's worth (16 KiB) of the buffers given,
// gathered into one record, so a batch of small frames costs records and syscalls
// by its bytes, not by its buffer count. Memory per TLS connection is fixed:
// Asio's 17 KiB input and output buffers, this 16 KiB staging buffer and
// OpenSSL's record buffers (each at most one record); no peer can grow them. A
// TLS end of stream without close_notify reads as a plain end of stream: the
// framing above tells a clean end from a truncated one.
class Socket {
 public:
  using executor_type = RawSocket::executor_type;
  static constexpr size_t kMaxTlsWrite = 16 * 1024;

  explicit Socket(boost::asio::io_context& ctx) : raw_(ctx) {}
  explicit Socket(const executor_type& ex) : raw_(ex) {}
  explicit Socket(RawSocket raw) : raw_(std::move(raw)) {}
  // TLS over `raw`; the handshake is AsyncHandshake's.
  Socket(RawSocket raw, std::shared_ptr<boost::asio::ssl::context> ctx, bool server);
  Socket(Socket&&) = default;
  Socket& operator=(Socket&&) = default;
  ~Socket();

  // A plain socket's kernel socket, to wrap it in TLS.
  RawSocket TakeRaw() && { return std::move(raw_); }

  executor_type get_executor() { return lowest().get_executor(); }
  bool is_tls() const { return tls_ != nullptr; }
  bool is_open() const { return tls_ ? tls_->next_layer().is_open() : raw_.is_open(); }

  // TLS: the handshake as client or server (as constructed), verifying the peer;
  // `verify_host` (dialing side) is the name or IP the peer's certificate must
  // carry. Plain: done at once. `done` runs on the socket's executor with
  // Unauthenticated naming the cause (e.g. "certificate verify failed: unable to
  // get local issuer certificate") when the peer is refused or refuses us.
  void AsyncHandshake(const std::string& verify_host, std::function<void(absl::Status)> done);

  template <typename Buffers, typename Handler>
  void async_read_some(const Buffers& buffers, Handler&& handler) {
    if (!tls_) return raw_.async_read_some(buffers, std::forward<Handler>(handler));
    tls_->async_read_some(buffers, [h = std::forward<Handler>(handler)](boost::system::error_code ec,
                                                                        size_t n) mutable {
      if (ec == boost::asio::ssl::error::stream_truncated) ec = boost::asio::error::eof;
      h(ec, n);
    });
  }

  template <typename Buffers, typename Handler>
  void async_write_some(const Buffers& buffers, Handler&& handler) {
    if (!tls_) return raw_.async_write_some(buffers, std::forward<Handler>(handler));
    size_t n = boost::asio::buffer_copy(boost::asio::buffer(*staging_), buffers);
    tls_->async_write_some(boost::asio::buffer(staging_->data(), n), std::forward<Handler>(handler));
  }

  // A TCP connection (tcp: or tls:) whose peer stops answering is aborted within
  // about `timeout`: keepalive probes start after timeout/2 of silence and 3 go
  // unanswered timeout/6 apart, and written data unacknowledged for `timeout`
  // (TCP_USER_TIMEOUT) aborts it too. Whole seconds, at least 1 s per step.
  // Unix sockets need nothing (the kernel knows its peer is gone). Zero: off.
  void SetDeadPeerTimeout(absl::Duration timeout);

  void close(boost::system::error_code& ec) { lowest().close(ec); }
  // Half-closes the kernel socket (TLS: without a close_notify).
  void shutdown(boost::asio::socket_base::shutdown_type what, boost::system::error_code& ec) {
    lowest().shutdown(what, ec);
  }

 private:
  RawSocket& lowest() { return tls_ ? tls_->next_layer() : raw_; }
  const RawSocket& lowest() const { return tls_ ? tls_->next_layer() : raw_; }

  RawSocket raw_;  // plain, or moved into tls_
  std::shared_ptr<boost::asio::ssl::context> ctx_;  // outlives tls_ (declared first)
  std::unique_ptr<boost::asio::ssl::stream<RawSocket>> tls_;
  bool server_ = false;
  std::unique_ptr<std::array<char, kMaxTlsWrite>> staging_;
};

}  // namespace hostd::channel

#endif  // HOSTD_CHANNEL_SOCKET_H_
