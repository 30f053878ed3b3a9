#include "daemon/grpc_metrics.h"

#include <string>

#include "absl/strings/string_view.h"

namespace hostd::daemon {
namespace {

constexpr absl::string_view kWatchMethod = "/hostd.v1.HostService/WatchProcs";

// The names of grpc::StatusCode, as grpc's own tools print them.
const char* CodeName(grpc::StatusCode c) {
  static constexpr const char* kNames[] = {
      "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  int i = static_cast<int>(c);
  return i >= 0 && i < static_cast<int>(std::size(kNames)) ? kNames[i] : "UNKNOWN";
}

}  // namespace

// One per call: counts the status the server sends; a WatchProcs stream is open
// from its creation to its destruction.
class GrpcMetrics::Interceptor final : public grpc::experimental::Interceptor {
 public:
  Interceptor(GrpcMetrics& m, const char* method) : m_(m), method_(method == nullptr ? "" : method) {
    watch_ = method_ == kWatchMethod;
    if (watch_) m_.watch_streams_.Increment();
  }
  ~Interceptor() override {
    if (watch_) m_.watch_streams_.Decrement();
  }
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      m_.calls_.Add({{"method", method_}, {"code", CodeName(methods->GetSendStatus().error_code())}}).Increment();
    }
    methods->Proceed();
  }

 private:
  GrpcMetrics& m_;
  const std::string method_;
  bool watch_ = false;
};

class GrpcMetrics::InterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit InterceptorFactory(GrpcMetrics& m) : m_(m) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    return new Interceptor(m_, info->method());
  }

 private:
  GrpcMetrics& m_;
};

GrpcMetrics::GrpcMetrics(prometheus::Registry& registry)
    : calls_(prometheus::BuildCounter()
                 .Name("hostd_grpc_calls_total")
                 .Help("Control API calls finished, by full method name and status code")
                 .Register(registry)),
      watch_streams_(prometheus::BuildGauge()
                         .Name("hostd_grpc_watch_streams")
                         .Help("WatchProcs streams open now")
                         .Register(registry)
                         .Add({})) {}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> GrpcMetrics::Factory() {
  return std::make_unique<InterceptorFactory>(*this);
}

}  // namespace hostd::daemon
