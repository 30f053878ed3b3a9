#include "channel/socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "openssl/err.h"
#include "openssl/ssl.h"
#include "openssl/x509v3.h"

namespace hostd::channel {
namespace {

namespace asio = boost::asio;

// A handshake failure as a Status: the peer refused us or we refused it
// (Unauthenticated, with OpenSSL's verification result when there is one), or the
// connection went away (Unavailable).
absl::Status HandshakeError(const boost::system::error_code& ec, SSL* ssl, bool server) {
  std::string why = ec.message();
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) absl::StrAppend(&why, ": ", X509_verify_cert_error_string(verify));
  if (ec.category() == asio::error::get_ssl_category()) {
    absl::StrAppend(&why, server ? "" : "; is the peer's certificate signed by the CA given as --tls-ca?");
    return absl::UnauthenticatedError(absl::StrCat("TLS handshake failed: ", why));
  }
  return absl::UnavailableError(absl::StrCat("TLS handshake failed: ", why));
}

}  // namespace

Socket::Socket(RawSocket raw, std::shared_ptr<asio::ssl::context> ctx, bool server)
    : raw_(raw.get_executor()),
      ctx_(std::move(ctx)),
      tls_(std::make_unique<asio::ssl::stream<RawSocket>>(std::move(raw), *ctx_)),
      server_(server),
      staging_(std::make_unique<std::array<char, kMaxTlsWrite>>()) {}

Socket::~Socket() = default;

void Socket::SetDeadPeerTimeout(absl::Duration timeout) {
  int fd = lowest().native_handle();
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (timeout <= absl::ZeroDuration() || ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0 ||
      (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
    return;
  }
  int secs = static_cast<int>(std::max<int64_t>(3, absl::ToInt64Seconds(timeout)));
  int one = 1, idle = std::max(1, secs / 2), interval = std::max(1, secs / 6), count = 3;
  unsigned user_timeout_ms = static_cast<unsigned>(secs) * 1000;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms));
}

void Socket::AsyncHandshake(const std::string& verify_host, std::function<void(absl::Status)> done) {
  if (!tls_) {
    asio::post(get_executor(), [done = std::move(done)] { done(absl::OkStatus()); });
    return;
  }
  SSL* ssl = tls_->native_handle();
  if (!server_ && !verify_host.empty()) {
    // OpenSSL checks the name during verification, so a mismatch is reported as
    // its verify result ("hostname mismatch", "IP address mismatch").
    unsigned char ip[sizeof(in6_addr)];
    bool is_ip = inet_pton(AF_INET, verify_host.c_str(), ip) == 1 || inet_pton(AF_INET6, verify_host.c_str(), ip) == 1;
    if (is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), verify_host.c_str());
    } else {
      SSL_set1_host(ssl, verify_host.c_str());
      SSL_set_tlsext_host_name(ssl, verify_host.c_str());
    }
  }
  bool server = server_;
  tls_->async_handshake(server ? asio::ssl::stream_base::server : asio::ssl::stream_base::client,
                        [ssl, server, done = std::move(done)](boost::system::error_code ec) {
                          done(ec ? HandshakeError(ec, ssl, server) : absl::OkStatus());
                        });
}

}  // namespace hostd::channel
