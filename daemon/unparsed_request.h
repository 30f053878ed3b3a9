// UnparsedRequestFactory: a gRPC server interceptor that answers a request whose
// body does not parse as the method's request message with INVALID_ARGUMENT
// naming the method, the message type and the cause, where gRPC's generated
// callback handlers answer an empty UNIMPLEMENTED.
//
//   std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> f;
//   f.push_back(std::make_unique<UnparsedRequestFactory>());  // first: later ones see the new status
//   builder.experimental().SetInterceptorCreators(std::move(f));
//
// A call counts as unparsed when gRPC received its request body but had no message
// for it (deserialization failed) and the handler then finished with UNIMPLEMENTED;
// every other status is left alone. Applies to every service the server hosts.
#ifndef HOSTD_DAEMON_UNPARSED_REQUEST_H_
#define HOSTD_DAEMON_UNPARSED_REQUEST_H_

#include "absl/strings/string_view.h"
#include "grpcpp/support/server_interceptor.h"
#include "grpcpp/support/status.h"

namespace hostd::daemon {

// INVALID_ARGUMENT naming `method` ("/hostd.v1.HostService/SpawnProc") and its
// request type: what a request whose body does not parse is answered. For a
// method served raw (its bytes parsed by its handler), which the interceptor
// cannot tell from one that parsed.
grpc::Status UnparsedRequestStatus(absl::string_view method);

class UnparsedRequestFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override;
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_UNPARSED_REQUEST_H_
