// GrpcTarget: hostd's control API address, written in ChannelAddr's text form
// (unix:/path, unix:@name, tcp:host:port, tls:host:port: the same target, served
// and dialled with TLS credentials), as the target string gRPC expects
// (unix:/path, unix-abstract:name, host:port or [v6]:port). hostd serves on it and
// hostctl dials it, so both turn an address into the same target here. Only string
// work: no gRPC dependency.
#ifndef HOSTD_CHANNEL_GRPC_TARGET_H_
#define HOSTD_CHANNEL_GRPC_TARGET_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hostd::channel {

// InvalidArgument quoting `addr` when it is not a concrete unix, tcp or tls address
// (local: and the "any" forms have no gRPC target).
absl::StatusOr<std::string> GrpcTarget(absl::string_view addr);

}  // namespace hostd::channel

#endif  // HOSTD_CHANNEL_GRPC_TARGET_H_
