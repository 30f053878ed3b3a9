#include "channel/grpc_target.h"

#include "absl/strings/str_cat.h"
#include "channel/channel_addr.h"

namespace hostd::channel {

absl::StatusOr<std::string> GrpcTarget(absl::string_view addr) {
  absl::StatusOr<ChannelAddr> a = ChannelAddr::Parse(addr);
  if (!a.ok() || a->transport() == Transport::kLocal || a->is_any()) {
    return absl::InvalidArgumentError(
        absl::StrCat("gRPC address \"", addr, "\" is not unix:/path, unix:@name, tcp:host:port or tls:host:port"));
  }
  if (a->transport() == Transport::kUnix) {
    return a->is_abstract() ? absl::StrCat("unix-abstract:", a->host().substr(1)) : absl::StrCat("unix:", a->host());
  }
  return a->is_ipv6() ? absl::StrCat("[", a->host(), "]:", a->port()) : absl::StrCat(a->host(), ":", a->port());
}

}  // namespace hostd::channel
