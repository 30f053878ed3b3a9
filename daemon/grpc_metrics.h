// GrpcMetrics: counts the control API's calls by method and status code, and the
// WatchProcs streams open now, with a gRPC server interceptor (every service the
// server hosts: HostService, health, reflection).
//
//   GrpcMetrics m(registry);
//   std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> f;
//   f.push_back(m.Factory());
//   builder.experimental().SetInterceptorCreators(std::move(f));
//
// Metrics (registered in the given registry):
//   hostd_grpc_calls_total{method, code}   calls finished, by full method name and code
//   hostd_grpc_watch_streams               WatchProcs streams open now
// Thread-safe; must outlive the gRPC server it is installed in.
#ifndef HOSTD_DAEMON_GRPC_METRICS_H_
#define HOSTD_DAEMON_GRPC_METRICS_H_

#include <memory>

#include "grpcpp/support/server_interceptor.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace hostd::daemon {

class GrpcMetrics {
 public:
  explicit GrpcMetrics(prometheus::Registry& registry);

  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> Factory();

 private:
  class Interceptor;
  class InterceptorFactory;

  prometheus::Family<prometheus::Counter>& calls_;
  prometheus::Gauge& watch_streams_;
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_GRPC_METRICS_H_
