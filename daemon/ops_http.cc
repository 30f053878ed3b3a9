#include "daemon/ops_http.h"

#include <arpa/inet.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"

namespace hostd::daemon {
namespace {

bool IsLoopback(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

}  // namespace

absl::Status CheckHttpAddr(const std::string& addr, bool allow_remote, std::string* host, int* port) {
  size_t colon = addr.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http \"", addr, "\": expected HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464"));
  }
  std::string h = addr.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  int p = -1;
  if (!absl::SimpleAtoi(addr.substr(colon + 1), &p) || p < 0 || p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--http \"", addr, "\": the port is not a number from 0 to 65535"));
  }
  if (!allow_remote && !IsLoopback(h)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--http \"", addr,
        "\": not a loopback address; /metrics, /healthz and /readyz have no authentication, so hostd serves them "
        "on loopback only unless started with --http-allow-remote"));
  }
  *host = h;
  *port = p;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<OpsHttpServer>> OpsHttpServer::Start(const HostMetrics& metrics,
                                                                    OpsHttpOptions options) {
  std::string host;
  int port = 0;
  if (absl::Status s = CheckHttpAddr(options.addr, options.allow_remote, &host, &port); !s.ok()) return s;
  std::unique_ptr<OpsHttpServer> out(new OpsHttpServer());
  out->server_ = std::make_unique<httplib::Server>();
  httplib::Server& srv = *out->server_;
  srv.Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.Scrape(), "text/plain; version=0.0.4; charset=utf-8");
  });
  srv.Get("/healthz", [alive = options.alive](const httplib::Request&, httplib::Response& res) {
    bool ok = !alive || alive();
    res.status = ok ? 200 : 503;
    res.set_content(ok ? "ok\n" : "hostd's host loop does not answer\n", "text/plain");
  });
  srv.Get("/readyz", [not_ready = options.not_ready](const httplib::Request&, httplib::Response& res) {
    std::string why = not_ready ? not_ready() : "";
    res.status = why.empty() ? 200 : 503;
    res.set_content(why.empty() ? "ready\n" : absl::StrCat("not ready: ", why, "\n"), "text/plain");
  });
  bool bound = port == 0 ? (port = srv.bind_to_any_port(host)) > 0 : srv.bind_to_port(host, port);
  if (!bound) {
    return absl::UnavailableError(
        absl::StrCat("--http ", options.addr, ": cannot bind (in use, or not an address of this machine)"));
  }
  out->bound_ = absl::StrCat(host.find(':') != std::string::npos ? absl::StrCat("[", host, "]") : host, ":", port);
  out->thread_ = std::thread([&srv] { srv.listen_after_bind(); });
  return out;
}

OpsHttpServer::~OpsHttpServer() { Stop(); }

void OpsHttpServer::Stop() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace hostd::daemon
