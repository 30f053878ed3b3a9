#include "channel/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "absl/strings/str_cat.h"
#include "base/small_file.h"

namespace hostd::channel {
namespace {

namespace ssl = boost::asio::ssl;

absl::Status Unusable(absl::string_view what, const std::string& file, absl::string_view fallback) {
  return absl::InvalidArgumentError(
      absl::StrCat("TLS ", what, " \"", file, "\" cannot be used: ", TakeOpenSslError(fallback)));
}

// A listener's ALPN choice: HTTP/2 when the dialer offers it (gRPC clients refuse a
// server that selects none; hostd's control API is served over this context too),
// else none. Links offer no ALPN, so they never reach this.
int SelectH2(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
             void*) {
  static const unsigned char kH2[] = {2, 'h', '2'};
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, outlen, kH2, sizeof(kH2), in, inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

// One side's context from the files. The dialing side may have no certificate of its
// own (a client of a listener that does not ask for one).
absl::StatusOr<std::shared_ptr<ssl::context>> Build(const TlsOptions& o, bool server) {
  ERR_clear_error();
  auto ctx = std::make_shared<ssl::context>(server ? ssl::context::tls_server : ssl::context::tls_client);
  SSL_CTX* n = ctx->native_handle();
  SSL_CTX_set_min_proto_version(n, TLS1_2_VERSION);
  SSL_CTX_set_options(n, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (!o.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(n, o.cert_file.c_str()) != 1) {
      return Unusable("certificate", o.cert_file, "not a PEM certificate");
    }
    if (SSL_CTX_use_PrivateKey_file(n, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return Unusable("key", o.key_file, "not a PEM private key");
    }
    if (SSL_CTX_check_private_key(n) != 1) {
      return Unusable("key", o.key_file, absl::StrCat("it does not match the certificate ", o.cert_file));
    }
  }
  if (SSL_CTX_load_verify_locations(n, o.ca_file.c_str(), nullptr) != 1) {
    return Unusable("CA file", o.ca_file, "no PEM certificate in it");
  }
  if (server) {
    // Tells dialers which CA their certificate must come from.
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.ca_file.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(n, names);
    SSL_CTX_set_verify(n, SSL_VERIFY_PEER | (o.require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), nullptr);
    SSL_CTX_set_alpn_select_cb(n, SelectH2, nullptr);
  } else {
    SSL_CTX_set_verify(n, SSL_VERIFY_PEER, nullptr);
  }
  ERR_clear_error();
  return ctx;
}

}  // namespace

std::string TakeOpenSslError(absl::string_view fallback) {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? std::string(fallback) : out;
}

absl::StatusOr<std::shared_ptr<TlsContext>> TlsContext::Create(TlsOptions options) {
  if (options.ca_file.empty()) {
    return absl::InvalidArgumentError("TLS needs a CA file (--tls-ca) to verify peers against");
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate (--tls-cert) and its key (--tls-key), or neither");
  }
  std::shared_ptr<TlsContext> tls(new TlsContext(std::move(options)));
  absl::Status loaded = tls->Reload();
  if (!loaded.ok()) return loaded;
  return tls;
}

absl::StatusOr<std::string> TlsContext::ReadFiles() const {
  std::string all;
  for (const std::string* f : {&opts_.cert_file, &opts_.key_file, &opts_.ca_file}) {
    if (f->empty()) continue;
    absl::StatusOr<std::string> bytes = base::ReadSmallFile(*f);
    if (!bytes.ok()) return absl::InvalidArgumentError(absl::StrCat("TLS: ", bytes.status().message()));
    // Length-prefixed, so that bytes moving from one file to the next still differ.
    absl::StrAppend(&all, bytes->size(), ":", *bytes);
  }
  return all;
}

absl::StatusOr<bool> TlsContext::ReloadIfChanged() {
  absl::StatusOr<std::string> now = ReadFiles();
  if (!now.ok()) return now.status();
  {
    absl::MutexLock lock(&mu_);
    if (*now == seen_) return false;
    // Seen from here on, loaded or not: a broken file is reported once.
    seen_ = *now;
  }
  absl::Status loaded = Reload();
  if (!loaded.ok()) return loaded;
  return true;
}

absl::Status TlsContext::Reload() {
  // Read before OpenSSL loads them: a change in between is seen at the next
  // ReloadIfChanged and loaded again.
  absl::StatusOr<std::string> files = ReadFiles();
  std::shared_ptr<ssl::context> server;
  if (!opts_.cert_file.empty()) {
    absl::StatusOr<std::shared_ptr<ssl::context>> s = Build(opts_, /*server=*/true);
    if (!s.ok()) return s.status();
    server = *std::move(s);
  }
  absl::StatusOr<std::shared_ptr<ssl::context>> client = Build(opts_, /*server=*/false);
  if (!client.ok()) return client.status();
  absl::MutexLock lock(&mu_);
  server_ = std::move(server);
  client_ = *std::move(client);
  if (files.ok()) seen_ = *std::move(files);
  ++generation_;
  return absl::OkStatus();
}

uint64_t TlsContext::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

std::shared_ptr<ssl::context> TlsContext::server() const {
  absl::MutexLock lock(&mu_);
  return server_;
}

std::shared_ptr<ssl::context> TlsContext::client() const {
  absl::MutexLock lock(&mu_);
  return client_;
}

}  // namespace hostd::channel
