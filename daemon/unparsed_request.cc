#include "daemon/unparsed_request.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "google/protobuf/descriptor.h"

namespace hostd::daemon {
namespace {

using grpc::experimental::InterceptionHookPoints;

// "hostd.v1.SpawnProcRequest" for "/hostd.v1.HostService/SpawnProc"; "" when the
// method is not in the generated descriptor pool.
std::string RequestTypeOf(absl::string_view method) {
  if (!absl::ConsumePrefix(&method, "/")) return "";
  size_t slash = method.find('/');
  if (slash == absl::string_view::npos) return "";
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(std::string(method.substr(0, slash)));
  if (service == nullptr) return "";
  const google::protobuf::MethodDescriptor* m = service->FindMethodByName(std::string(method.substr(slash + 1)));
  return m == nullptr ? "" : m->input_type()->full_name();
}

class Interceptor final : public grpc::experimental::Interceptor {
 public:
  explicit Interceptor(const char* method) : method_(method == nullptr ? "" : method) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      unparsed_ = true;
    }
    if (unparsed_ && methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) &&
        methods->GetSendStatus().error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      methods->ModifySendStatus(UnparsedRequestStatus(method_));
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
  bool unparsed_ = false;
};

}  // namespace

grpc::Status UnparsedRequestStatus(absl::string_view method) {
  std::string type = RequestTypeOf(method);
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat(method, ": the request does not parse",
                                   type.empty() ? "" : absl::StrCat(" as a ", type),
                                   " (not protobuf wire format, or truncated); check the client's .proto matches the "
                                   "server's"));
}

grpc::experimental::Interceptor* UnparsedRequestFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new Interceptor(info->method());
}

}  // namespace hostd::daemon
