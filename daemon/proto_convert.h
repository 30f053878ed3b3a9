// Conversions between hostd's types and the hostd.v1 messages, with the request
// validation the API promises: every error is InvalidArgument naming the field and
// the rule it breaks.
#ifndef HOSTD_DAEMON_PROTO_CONVERT_H_
#define HOSTD_DAEMON_PROTO_CONVERT_H_

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/death_history.h"
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
void ToProto(const ProcEnd& e, v1::ProcEnd* out);
v1::ProcState ToProto(proc::ProcState s);

absl::StatusOr<manager::SpawnSpec> FromProto(const v1::ProcSpec& spec);
void ToProto(const manager::LivenessSpec& l, v1::LivenessCheck* out);

// A bulk spawn's rank variables (v1::RankEnv), checked once for `entries` entries.
struct RankVars {
  int first_rank = 0, world_size = 0, first_local_rank = 0, local_world_size = 0;
  std::string rank, world, local_rank, local_world;  // the variables' names
};
absl::StatusOr<RankVars> FromProto(const v1::RankEnv& ranks, int entries);
// Adds entry `index`'s rank variables to `spec`'s environment; INVALID_ARGUMENT
// (naming the entry and the variable) if the spec sets one of them itself.
absl::Status AddRankVars(const RankVars& vars, int index, manager::SpawnSpec& spec);

// Supervision. Unset fields take the defaults the .proto states.
void ToProto(const manager::RestartPolicy& p, v1::RestartPolicy* out);
absl::StatusOr<manager::RestartPolicy> FromProto(const v1::RestartPolicy& p, bool present);
absl::StatusOr<GroupSpec> FromProto(const v1::CreateGroupRequest& req);
void ToProto(const GroupInfo& g, v1::Group* out);
// The node alone, without its children.
void ToProto(const TreeNode& n, absl::Time now, v1::TreeNode* out);
absl::Status ValidateName(absl::string_view name);

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_PROTO_CONVERT_H_
