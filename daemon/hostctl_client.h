// hostctl's shared pieces: global options, the gRPC client with its error
// reporting, and output helpers. Internal to the hostctl binary
// (hostctl_main.cc, hostctl_supervision.cc).
#ifndef HOSTD_DAEMON_HOSTCTL_CLIENT_H_
#define HOSTD_DAEMON_HOSTCTL_CLIENT_H_

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "CLI/CLI.hpp"
#include "channel/grpc_target.h"
#include "daemon/config.h"
#include "daemon/proto_convert.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/create_channel.h"
#include "hostd/v1/host.grpc.pb.h"

namespace hostd::daemon {

namespace v1 = ::hostd::v1;


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

struct Globals {
  std::string grpc;
  bool json = false;
  double timeout_s = 30;
};

inline int ExitCodeOf(grpc::StatusCode code) {
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

class Client {
 public:
  explicit Client(const Globals& g) : g_(g) {
    absl::StatusOr<std::string> target = channel::GrpcTarget(g.grpc);
    target_ = target.ok() ? *target : g.grpc;
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(80 << 20);
    args.SetMaxSendMessageSize(80 << 20);
    stub_ = v1::HostService::NewStub(grpc::CreateCustomChannel(target_, grpc::InsecureChannelCredentials(), args));
  }
  v1::HostService::Stub& stub() { return *stub_; }

  void Prepare(grpc::ClientContext& ctx, absl::Duration timeout) {
    if (timeout != absl::InfiniteDuration()) ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
  void Prepare(grpc::ClientContext& ctx) { Prepare(ctx, absl::Seconds(g_.timeout_s)); }

  // Prints the error so a person knows what to do; returns the exit code.
  int Fail(const grpc::Status& s) {
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

  template <typename M>
  void PrintJson(const M& m) {
    std::string out;
    google::protobuf::util::JsonPrintOptions o;
    o.preserve_proto_field_names = true;
    o.always_print_primitive_fields = true;
    (void)google::protobuf::util::MessageToJsonString(m, &out, o);
    std::cout << out << "\n";
  }

 private:
  const Globals& g_;
  std::string target_;
  std::unique_ptr<v1::HostService::Stub> stub_;
};

inline std::string StateName(v1::ProcState s) {
  std::string n = v1::ProcState_Name(s);
  return n.size() > 11 ? absl::AsciiStrToLower(n.substr(11)) : n;  // PROC_STATE_
}

inline std::string Age(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0) return "-";
  absl::Duration d = absl::Now() - absl::FromUnixSeconds(t.seconds());
  return absl::FormatDuration(absl::Trunc(d, absl::Seconds(1)));
}

inline void PrintProcTable(const google::protobuf::RepeatedPtrField<v1::Proc>& procs) {
  printf("%-24s %-9s %-8s %-10s %s\n", "NAME", "STATE", "PID", "AGE", "STATUS");
  for (const v1::Proc& p : procs) {
    printf("%-24s %-9s %-8d %-10s %s\n", p.name().c_str(), StateName(p.status().state()).c_str(), p.status().pid(),
           Age(p.created_at()).c_str(), p.status().display().c_str());
  }
}

inline void PrintProc(const v1::Proc& p) {
  printf("name:     %s\nproc id:  %s\nstatus:   %s\npid:      %d\n", p.name().c_str(), p.proc_id().c_str(),
         p.status().display().c_str(), p.status().pid());
  if (!p.status().addr().empty()) printf("addr:     %s\n", p.status().addr().c_str());
  printf("command:  %s %s\n", p.program().c_str(), absl::StrJoin(p.args(), " ").c_str());
  for (const auto& [k, v] : p.labels()) printf("label:    %s=%s\n", k.c_str(), v.c_str());
  if (!p.status().stderr_tail().empty()) printf("stderr (end):\n%s\n", p.status().stderr_tail().c_str());
}

inline google::protobuf::Duration Secs(double s) {
  google::protobuf::Duration d;
  ToProto(absl::Seconds(s), &d);  // the server's own conversion (daemon/proto_convert.h)
  return d;
}

// Counts lifecycle events on a side stream while a bulk call runs, and shows
// "<verb> k/n" on stderr when it is a terminal.
class Progress {
 public:
  Progress(Client& c, std::string verb, int total, std::function<bool(const v1::ProcEvent&)> counts)
      : verb_(std::move(verb)), total_(total) {
    if (!isatty(STDERR_FILENO) || total <= 1) return;
    c.Prepare(ctx_, absl::InfiniteDuration());
    reader_ = c.stub().WatchProcs(&ctx_, v1::WatchProcsRequest());
    thread_ = std::thread([this, counts] {
      v1::ProcEvent e;
      while (reader_->Read(&e)) {
        if (!counts(e)) continue;
        fprintf(stderr, "\r%s %d/%d", verb_.c_str(), ++done_, total_);
      }
    });
  }
  ~Progress() {
    if (!reader_) return;
    ctx_.TryCancel();
    thread_.join();
    fprintf(stderr, "\n");
  }

 private:
  std::string verb_;
  int total_;
  int done_ = 0;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::ProcEvent>> reader_;
  std::thread thread_;
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_HOSTCTL_CLIENT_H_
