// TlsContext: the certificates of the `tls:` transport, for both ends of a link.
//
//   HOSTD_ASSIGN_OR_RETURN(auto tls, TlsContext::Create({.cert_file = "host.crt",
//       .key_file = "host.key", .ca_file = "ca.crt", .require_client_cert = true}));
//   ListenerOptions lo{.tls = tls};  SenderOptions so{.tls = tls};
//   ... on SIGHUP: tls->Reload() ...
//   ... every few seconds: tls->ReloadIfChanged() ...
//
// One certificate and key serve as this end's identity whether it listens or
// dials, so a host's certificate must allow TLS server and client use (no extended
// key usage, or both serverAuth and clientAuth). Peers are verified against `ca_file`
// only (the system's trust store is never used):
//   - a dialer checks the listener's chain and that the certificate names the host
//     it dialled (subjectAltName DNS or IP, as written in the address);
//   - a listener with `require_client_cert` refuses a dialer without a certificate
//     signed by the CA (mutual TLS); without it, a certificate a dialer offers is
//     still verified, and a dialer may offer none.
// TLS 1.2 is the oldest version spoken. A listening context selects ALPN "h2" when
// the dialer offers it (gRPC clients of the control API require it), else none.
//
// Reload reads the files again and, if they make a valid context, new connections
// use it; connections already up keep the one they started with. On failure the
// old context stays and the error says which file is wrong. ReloadIfChanged does
// the same only when the files' bytes differ from those it saw last (at Create,
// Reload or its own previous call), so a caller may poll it: a replaced file is
// loaded once, and a broken one reported once, not at every poll.
//
// Thread-safe. Connections hold the context they use (shared_ptr), so a reload or
// the TlsContext's destruction never pulls one from under a connection.
#ifndef HOSTD_CHANNEL_TLS_H_
#define HOSTD_CHANNEL_TLS_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "boost/asio/ssl/context.hpp"

namespace hostd::channel {

struct TlsOptions {
  std::string cert_file;  // PEM: this end's certificate (chain), leaf first
  std::string key_file;   // PEM: its private key
  std::string ca_file;    // PEM: the CA(s) peers' certificates must chain to
  bool require_client_cert = false;
};

class TlsContext {
 public:
  // Loads the files once to check them: InvalidArgument naming the file and
  // OpenSSL's reason when one cannot be used.
  static absl::StatusOr<std::shared_ptr<TlsContext>> Create(TlsOptions options);

  absl::Status Reload() ABSL_LOCKS_EXCLUDED(mu_);
  // false: the files are unchanged (nothing done); true: they changed and now
  // serve new connections; an error: they changed but cannot be used (or cannot
  // be read), and the previous context stays.
  absl::StatusOr<bool> ReloadIfChanged() ABSL_LOCKS_EXCLUDED(mu_);
  // Times Reload succeeded.
  uint64_t generation() const ABSL_LOCKS_EXCLUDED(mu_);

  // The contexts a new connection uses: the listening and the dialing side.
  std::shared_ptr<boost::asio::ssl::context> server() const ABSL_LOCKS_EXCLUDED(mu_);
  std::shared_ptr<boost::asio::ssl::context> client() const ABSL_LOCKS_EXCLUDED(mu_);
  const TlsOptions& options() const { return opts_; }

 private:
  explicit TlsContext(TlsOptions options) : opts_(std::move(options)) {}
  // The three files' bytes as they are now.
  absl::StatusOr<std::string> ReadFiles() const;

  const TlsOptions opts_;
  mutable absl::Mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> server_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<boost::asio::ssl::context> client_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  // ReadFiles() as last seen by Reload or ReloadIfChanged.
  std::string seen_ ABSL_GUARDED_BY(mu_);
};

// OpenSSL's reason for the last failure on this thread (the error queue, emptied),
// or `fallback` when the queue is empty.
std::string TakeOpenSslError(absl::string_view fallback);

}  // namespace hostd::channel

#endif  // HOSTD_CHANNEL_TLS_H_
