#include "daemon/tls_terminator.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

#include "base/log.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/local/stream_protocol.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/ssl.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/write.hpp"

namespace hostd::daemon {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

// The client certificate's common name, else its first DNS or IP subject
// alternative name; "" without a certificate.
std::string PeerIdentity(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return "";
  char cn[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)) > 0) return cn;
  std::string out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names) && out.empty(); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type == GEN_DNS || n->type == GEN_IPADD) {
      const ASN1_STRING* s = n->type == GEN_DNS ? n->d.dNSName : n->d.iPAddress;
      out.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), ASN1_STRING_length(s));
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

// One TLS connection and its plaintext end, relayed both ways on the relay thread.
class Relay : public std::enable_shared_from_this<Relay> {
 public:
  Relay(asio::io_context& io, std::shared_ptr<asio::ssl::context> ctx, asio::ip::tcp::socket tcp)
      : ctx_(std::move(ctx)), tls_(std::move(tcp), *ctx_), plain_(io), timer_(io) {}

  void Handshake(absl::Duration timeout, std::atomic<size_t>& handshaking, TlsTerminator::Ready ready) {
    timer_.expires_after(absl::ToChronoNanoseconds(timeout));
    timer_.async_wait([self = shared_from_this()](const error_code& ec) {
      if (!ec) self->Close();  // too slow: a stalled or hostile client
    });
    tls_.async_handshake(asio::ssl::stream_base::server, [self = shared_from_this(), &handshaking,
                                                          ready = std::move(ready)](const error_code& ec) {
      self->timer_.cancel();
      handshaking.fetch_sub(1);
      if (ec) {
        base::Log().debug("control API: TLS handshake failed: {}", ec.message());
        self->Close();
        return;
      }
      self->Start(ready);
    });
  }

 private:
  void Start(const TlsTerminator::Ready& ready) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) != 0) {
      base::Log().warn("control API: a TLS connection closed: socketpair: {}", std::strerror(errno));
      Close();
      return;
    }
    error_code ec;
    plain_.assign(asio::local::stream_protocol(), pair[1], ec);
    if (ec) {
      close(pair[0]);
      close(pair[1]);
      Close();
      return;
    }
    ready(base::UniqueFd(pair[0]), PeerIdentity(tls_.native_handle()));
    Pump(tls_, plain_, up_);
    Pump(plain_, tls_, down_);
  }

  // Relays from -> to through `buf` until either fails or closes.
  template <typename From, typename To>
  void Pump(From& from, To& to, std::array<char, 16 << 10>& buf) {
    from.async_read_some(asio::buffer(buf), [self = shared_from_this(), &from, &to, &buf](const error_code& ec,
                                                                                          size_t n) {
      if (ec) return self->Close();
      asio::async_write(to, asio::buffer(buf, n), [self, &from, &to, &buf](const error_code& wec, size_t) {
        if (wec) return self->Close();
        self->Pump(from, to, buf);
      });
    });
  }

  // Either side closing or failing ends both: pending operations complete with
  // an error and drop their hold on this relay.
  void Close() {
    error_code ignored;
    tls_.lowest_layer().close(ignored);
    plain_.close(ignored);
    timer_.cancel();
  }

  std::shared_ptr<asio::ssl::context> ctx_;  // outlives the stream made from it
  asio::ssl::stream<asio::ip::tcp::socket> tls_;
  asio::local::stream_protocol::socket plain_;
  asio::steady_timer timer_;
  std::array<char, 16 << 10> up_;    // TLS -> gRPC
  std::array<char, 16 << 10> down_;  // gRPC -> TLS
};

}  // namespace

TlsTerminator::TlsTerminator(TlsTerminatorOptions options) : opts_(std::move(options)) {
  thread_ = std::thread([this] {
    auto work = asio::make_work_guard(io_);
    io_.run();
  });
}

TlsTerminator::~TlsTerminator() {
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

void TlsTerminator::Take(base::UniqueFd conn, Ready ready) {
  handshaking_.fetch_add(1);
  // Owned by the handler until it runs, so a terminator destroyed first closes it.
  asio::post(io_, [this, conn = std::move(conn), ready = std::move(ready)]() mutable {
    int fd = conn.release();
    error_code ec;
    asio::ip::tcp::socket tcp(io_);
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    tcp.assign(ss.ss_family == AF_INET6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), fd, ec);
    if (ec) {
      close(fd);
      handshaking_.fetch_sub(1);
      return;
    }
    auto relay = std::make_shared<Relay>(io_, opts_.tls->server(), std::move(tcp));
    relay->Handshake(opts_.handshake_timeout, handshaking_, std::move(ready));
  });
}

}  // namespace hostd::daemon
