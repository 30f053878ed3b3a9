// OpsHttpServer: hostd's HTTP endpoint for operators and orchestrators, off unless
// `--http ADDR` is given.
//
//   GET /metrics  Prometheus text format (HostMetrics::Scrape)
//   GET /healthz  200 "ok" while hostd is alive: its host loop answers within a
//                 second (503 otherwise): a liveness probe
//   GET /readyz   200 "ready" while hostd serves, is not shutting down and is not
//                 draining; 503 with the reason otherwise: a readiness probe
//
// The endpoint has no authentication, so only a loopback address is accepted
// unless `allow_remote` is set (`--http-allow-remote`).
//
// Served by cpp-httplib rather than prometheus-cpp's Exposer: the Exposer serves
// registries only, and the probes need their own paths and status codes on the
// same port; httplib also lets hostd bind first (and report a taken port as an
// error at start) and serve on a thread of its own.
//
// Thread-safe. Start() binds and starts serving on a thread; Stop() (or the
// destructor) stops it. The metrics and the readiness function must outlive it.
#ifndef HOSTD_DAEMON_OPS_HTTP_H_
#define HOSTD_DAEMON_OPS_HTTP_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "daemon/host_metrics.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace hostd::daemon {

struct OpsHttpOptions {
  std::string addr;  // HOST:PORT (port 0: any free port); IPv6 as [::1]:PORT
  bool allow_remote = false;
  // Why hostd is not ready, or "" when it is (called for each /readyz).
  std::function<std::string()> not_ready;
  // True while hostd is alive (called for each /healthz).
  std::function<bool()> alive;
};

class OpsHttpServer {
 public:
  // InvalidArgument for a malformed or (without allow_remote) non-loopback
  // address, saying how to allow it; Unavailable if it cannot bind.
  static absl::StatusOr<std::unique_ptr<OpsHttpServer>> Start(const HostMetrics& metrics, OpsHttpOptions options);
  ~OpsHttpServer();
  OpsHttpServer(const OpsHttpServer&) = delete;
  OpsHttpServer& operator=(const OpsHttpServer&) = delete;

  // The address bound, HOST:PORT with the real port.
  const std::string& addr() const { return bound_; }
  void Stop();

 private:
  OpsHttpServer() = default;

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string bound_;
};

// Splits HOST:PORT and checks the host is loopback unless `allow_remote`.
absl::Status CheckHttpAddr(const std::string& addr, bool allow_remote, std::string* host, int* port);

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_OPS_HTTP_H_
