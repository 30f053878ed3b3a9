// Conversions between hostd's types and the hostd.v1 messages, with the request
// validation the API promises: every error is InvalidArgument naming the field and
// the rule it breaks.
#ifndef HOSTD_DAEMON_PROTO_CONVERT_H_
#define HOSTD_DAEMON_PROTO_CONVERT_H_

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/host.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "grpcpp/support/status.h"
#include "hostd/v1/host.pb.h"
#include "manager/proc_manager.h"

namespace hostd::daemon {

// Limits on requests (beyond gRPC's message size).
inline constexpr size_t kMaxArgs = 4096;
inline constexpr size_t kMaxSpecBytes = 1 << 20;  // program + args + env + cwd
inline constexpr absl::Duration kMaxDuration = absl::Hours(24);

grpc::Status ToGrpc(const absl::Status& s);

void ToProto(absl::Time t, google::protobuf::Timestamp* out);
void ToProto(absl::Duration d, google::protobuf::Duration* out);
// `field` names the request field in errors. Unset (`present` false): `fallback`.
absl::StatusOr<absl::Duration> FromProto(const google::protobuf::Duration& d, bool present, absl::Duration fallback,
                                         absl::string_view field);

void ToProto(const proc::ProcStatus& s, v1::ProcStatus* out);
void ToProto(const ProcInfo& p, v1::Proc* out);
void ToProto(const HostEvent& e, v1::ProcEvent* out);
v1::ProcState ToProto(proc::ProcState s);

absl::StatusOr<manager::SpawnSpec> FromProto(const v1::ProcSpec& spec);
absl::Status ValidateName(absl::string_view name);

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_PROTO_CONVERT_H_
