#include "hostctl/client.h"

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "base/default_paths.h"
#include "base/small_file.h"
#include "channel/grpc_target.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "hostctl/output.h"

namespace hostd::hostctl {
namespace {

constexpr int kMaxGrpcMessage = 80 << 20;

}  // namespace

void AddGlobalOptions(CLI::App& app, GlobalOptions& g) {
  const char* env_addr = getenv("HOSTD_GRPC");
  g.grpc = env_addr != nullptr && env_addr[0] != '\0' ? env_addr : base::DefaultGrpcAddr();
  app.add_option("--grpc", g.grpc, "hostd's control address (also $HOSTD_GRPC)")->capture_default_str();
  auto env = [](const char* name) {
    const char* v = getenv(name);
    return v == nullptr ? std::string() : std::string(v);
  };
  g.tls_ca = env("HOSTD_TLS_CA");
  g.tls_cert = env("HOSTD_TLS_CERT");
  g.tls_key = env("HOSTD_TLS_KEY");
  app.add_option("--tls-ca", g.tls_ca,
                 "tls: addresses: the CA hostd's certificate is verified against ($HOSTD_TLS_CA)");
  app.add_option("--tls-cert", g.tls_cert,
                 "tls: addresses: this client's certificate, if hostd asks ($HOSTD_TLS_CERT)");
  app.add_option("--tls-key", g.tls_key, "the key of --tls-cert ($HOSTD_TLS_KEY)");
  app.add_flag("--json", g.json, "machine-readable output (one JSON object per result or event)");
  app.add_option("--timeout", g.timeout_s, "seconds to wait for hostd on quick calls")->capture_default_str();
}

int ExitCodeOf(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return 0;
    case grpc::StatusCode::NOT_FOUND: return 3;
    case grpc::StatusCode::ALREADY_EXISTS: return 4;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return 5;
    case grpc::StatusCode::UNAVAILABLE: return 6;
    case grpc::StatusCode::FAILED_PRECONDITION: return 7;
    case grpc::StatusCode::INVALID_ARGUMENT: return 8;
    default: return 1;
  }
}

google::protobuf::Duration SecondsToProto(double seconds) {
  return google::protobuf::util::TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(absl::Seconds(seconds)));
}

Client::Client(const GlobalOptions& g) : g_(g) {
  // An address hostd would not accept goes to gRPC as it is, which then reports it.
  absl::StatusOr<std::string> target = channel::GrpcTarget(g.grpc);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxGrpcMessage);
  args.SetMaxSendMessageSize(kMaxGrpcMessage);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (absl::StartsWith(g.grpc, "tls:")) {
    grpc::SslCredentialsOptions o;
    // Unreadable files leave the field empty: the handshake then fails and says why.
    for (auto [path, field] : {std::pair{&g.tls_ca, &o.pem_root_certs}, std::pair{&g.tls_cert, &o.pem_cert_chain},
                               std::pair{&g.tls_key, &o.pem_private_key}}) {
      if (path->empty()) continue;
      absl::StatusOr<std::string> pem = base::ReadSmallFile(*path);
      if (pem.ok()) {
        *field = *std::move(pem);
      } else {
        fprintf(stderr, "hostctl: %s\n", std::string(pem.status().message()).c_str());
      }
    }
    creds = grpc::SslCredentials(o);
  }
  stub_ = v1::HostService::NewStub(grpc::CreateCustomChannel(target.ok() ? *target : g.grpc, creds, args));
}

void Client::Prepare(grpc::ClientContext& ctx, absl::Duration timeout) {
  if (timeout != absl::InfiniteDuration()) ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

void Client::Prepare(grpc::ClientContext& ctx) { Prepare(ctx, absl::Seconds(g_.timeout_s)); }

int Client::Fail(const grpc::Status& s) {
  if (g_.json) {
    // Scripts read stdout: the error is a JSON object there too (and the exit code says the same).
    PrintJsonObject({{"error",
                      {{"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code()))},
                       {"message", s.error_message()},
                       {"exit_code", ExitCodeOf(s.error_code())}}}});
    return ExitCodeOf(s.error_code());
  }
  const std::string& m = s.error_message();
  // gRPC reports a refused TLS handshake as UNAVAILABLE: "Ssl handshake failed"
  // when hostd's certificate was not verified; when hostd refused ours (or the
  // lack of one) TLS 1.3 has already let the client finish, so the refusal (an
  // alert, then the close) reaches it as "Endpoint read failed" or "Socket closed".
  bool tls_refused = m.find("andshake") != std::string::npos || m.find("certificate") != std::string::npos ||
                     (absl::StartsWith(g_.grpc, "tls:") && (m.find("Socket closed") != std::string::npos ||
                                                            m.find("Endpoint read failed") != std::string::npos));
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE && tls_refused) {
    fprintf(stderr,
            "hostctl: the TLS handshake with hostd at %s failed (%s)\n"
            "  --tls-ca must be the CA that signed hostd's certificate%s\n",
            g_.grpc.c_str(), m.c_str(),
            g_.tls_cert.empty() ? "; hostd may require a client certificate: pass --tls-cert and --tls-key"
                                : ", and --tls-cert one signed by the CA hostd trusts");
    return ExitCodeOf(s.error_code());
  }
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE &&
      (s.error_message().find("connect") != std::string::npos ||
       s.error_message().find("No such file") != std::string::npos)) {
    fprintf(stderr,
            "hostctl: cannot reach hostd at %s (%s)\n"
            "  is hostd running? start it with `hostd`, or point hostctl at it with --grpc ADDR or "
            "HOSTD_GRPC=ADDR\n",
            g_.grpc.c_str(), s.error_message().c_str());
  } else {
    fprintf(stderr, "hostctl: %s\n", s.error_message().c_str());
  }
  return ExitCodeOf(s.error_code());
}

}  // namespace hostd::hostctl
