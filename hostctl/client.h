// hostctl's connection to hostd: the global options, the gRPC stub, and how a
// failed call becomes a message on stderr and one of the documented exit codes.
//
//   GlobalOptions g;                  // --grpc defaults to $HOSTD_GRPC, else the default socket
//   AddGlobalOptions(app, g);
//   ... parse ...
//   Client c(g);
//   grpc::ClientContext ctx;
//   c.Prepare(ctx);                   // --timeout as the deadline
//   grpc::Status s = c.stub().GetProc(&ctx, req, &resp);
//   if (!s.ok()) return c.Fail(s);
//
// A Client is used from one thread at a time, except stub() (gRPC stubs are
// thread-safe). It refers to its GlobalOptions, which must outlive it.
#ifndef HOSTD_HOSTCTL_CLIENT_H_
#define HOSTD_HOSTCTL_CLIENT_H_

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "CLI/CLI.hpp"
#include "google/protobuf/duration.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"
#include "hostd/v1/host.grpc.pb.h"

namespace hostd::hostctl {

namespace v1 = ::hostd::v1;

// The exit codes, as `hostctl --help` prints them (the README lists the same).
inline constexpr char kExitCodes[] = R"(exit codes:
  0  success (wait: the proc stopped with exit code 0)
  1  any other error
  2  usage error
  3  no such proc (NOT_FOUND)
  4  a proc of that name already exists (ALREADY_EXISTS)
  5  timed out (DEADLINE_EXCEEDED)
  6  hostd not reachable, or shutting down (UNAVAILABLE)
  7  the proc failed, or is in the wrong state (FAILED_PRECONDITION);
     wait: the proc ended other than with exit code 0
  8  invalid request (INVALID_ARGUMENT)
  9  a bulk operation partly failed)";

// Exit codes that do not come from a gRPC status.
inline constexpr int kExitUsage = 2;
inline constexpr int kExitProcFailed = 7;
inline constexpr int kExitPartlyFailed = 9;

// Options every subcommand takes (before or after its name).
struct GlobalOptions {
  std::string grpc;  // hostd's control address, in hostd's own form (unix:/path, tcp:host:port, tls:host:port)
  // tls: addresses: the CA hostd's certificate must chain to, and this client's
  // certificate and key when hostd requires one (also $HOSTD_TLS_CA, ...).
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  bool json = false;
  double timeout_s = 30;
};

// Sets g.grpc to $HOSTD_GRPC, else hostd's default address, and registers
// --grpc, --tls-ca, --tls-cert, --tls-key, --json and --timeout on `app`.
void AddGlobalOptions(CLI::App& app, GlobalOptions& g);

// hostctl's exit code for a gRPC status code.
int ExitCodeOf(grpc::StatusCode code);

// `seconds` as a google.protobuf.Duration for a request.
google::protobuf::Duration SecondsToProto(double seconds);

class Client {
 public:
  explicit Client(const GlobalOptions& g);

  v1::HostService::Stub& stub() { return *stub_; }
  const GlobalOptions& options() const { return g_; }

  // Sets the deadline of a call: `timeout` from now (none if infinite), or --timeout.
  void Prepare(grpc::ClientContext& ctx, absl::Duration timeout);
  void Prepare(grpc::ClientContext& ctx);

  // Prints the error so a person knows what to do; returns the exit code.
  int Fail(const grpc::Status& s);

 private:
  const GlobalOptions& g_;
  std::unique_ptr<v1::HostService::Stub> stub_;
};

}  // namespace hostd::hostctl

#endif  // HOSTD_HOSTCTL_CLIENT_H_
