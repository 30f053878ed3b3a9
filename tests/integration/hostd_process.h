// The real hostd binary for integration tests: `Hostd` runs it on sockets in a
// temp dir and waits for its READY=1; `RunShell` and `Hostctl` run commands and
// return their exit code and output. Shared by the tests in this folder.
#ifndef HOSTD_TESTS_INTEGRATION_HOSTD_PROCESS_H_
#define HOSTD_TESTS_INTEGRATION_HOSTD_PROCESS_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/small_file.h"
#include "base/unique_fd.h"
#include "base/unix_addr.h"
#include "channel/grpc_target.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "hostd/v1/host.grpc.pb.h"
#include "testing/eventually.h"
#include "testing/temp_dir.h"

namespace hostd {

constexpr char kHostd[] = HOSTD_BIN;
constexpr char kHostctl[] = HOSTCTL_BIN;
constexpr char kTestProc[] = HOSTD_TEST_PROC;

inline std::chrono::system_clock::time_point In(absl::Duration d) { return absl::ToChronoTime(absl::Now() + d); }

inline google::protobuf::Duration Secs(int64_t s) {
  google::protobuf::Duration d;
  d.set_seconds(s);
  return d;
}

// A TCP port on 127.0.0.1 nothing listens on now (bound and closed), for a hostd
// told to listen on it. It is below the kernel's ephemeral range, so a socket
// another test binds to port 0 meanwhile cannot take it before hostd does.
inline int FreePort() {
  int ephemeral_low = 32768;
  std::string range = base::ReadSmallFile("/proc/sys/net/ipv4/ip_local_port_range").value_or("");
  (void)absl::SimpleAtoi(range.substr(0, range.find_first_of(" \t")), &ephemeral_low);
  static std::atomic<uint32_t> seed{static_cast<uint32_t>(getpid()) * 2654435761u};
  for (int attempt = 0; attempt < 200 && ephemeral_low > 10001; ++attempt) {
    int port = 10000 + static_cast<int>(seed.fetch_add(7919) % static_cast<uint32_t>(ephemeral_low - 10000));
    base::UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(static_cast<uint16_t>(port));
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) return port;
  }
  ADD_FAILURE() << "no free port below the ephemeral range (" << range << ")";
  return 0;
}

// Waits (up to the hang guard) until `pid` has exited; true if it did. Works for any pid,
// not only children: a pidfd becomes readable when its process ends.
inline bool AwaitGone(pid_t pid) {
  base::UniqueFd fd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!fd.valid()) return errno == ESRCH;
  pollfd p{fd.get(), POLLIN, 0};
  return poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(testing::kHangGuard))) == 1;
}

// hostd running in a temp dir, with READY=1 awaited on a notify socket.
class Hostd {
 public:
  // `extra`: more hostd flags; `env`: NAME=VALUE set in hostd's environment; with
  // `log_to_file`, hostd's stderr (its log) goes to log_path() instead of the test's.
  explicit Hostd(std::vector<std::string> extra = {}, std::vector<std::string> env = {}, bool log_to_file = false) {
    Start(std::move(extra), std::move(env), log_to_file, "", "", nullptr);
  }
  // `grpc` and `frontend` replace the unix defaults in the temp dir (when not
  // empty); `creds` are the control API client's (default: none, for unix).
  Hostd(std::vector<std::string> extra, std::string grpc, std::string frontend = "",
        std::shared_ptr<grpc::ChannelCredentials> creds = nullptr, bool log_to_file = false) {
    Start(std::move(extra), {}, log_to_file, std::move(grpc), std::move(frontend), std::move(creds));
  }
  // In `root` instead of a temp dir of its own: a second Hostd on the same root
  // finds the first one's state directory and sockets (a restart).
  Hostd(std::vector<std::string> extra, const testing::TempDir& root) : root_(root.path()) {
    Start(std::move(extra), {}, false, "", "", nullptr);
  }

 private:
  void Start(std::vector<std::string> extra, std::vector<std::string> env, bool log_to_file, std::string grpc,
             std::string frontend, std::shared_ptr<grpc::ChannelCredentials> creds) {
    if (root_.empty()) root_ = dir_.path();
    log_path_ = Path("hostd.log");
    notify_path_ = Path("notify");
    ::unlink(notify_path_.c_str());  // left by a previous Hostd on the same root
    notify_ = base::UniqueFd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    base::UniqueFd& notify = notify_;
    absl::StatusOr<base::UnixAddr> sa = base::UnixAddr::Create(notify_path_);
    EXPECT_TRUE(sa.ok()) << sa.status();
    if (sa.ok()) {
      EXPECT_EQ(bind(notify.get(), sa->get(), sa->size()), 0);
    }
    grpc_ = grpc.empty() ? "unix:" + Path("hostd.sock") : grpc;
    if (frontend.empty()) frontend = "unix:" + Path("fe.sock");
    std::vector<std::string> args = {kHostd,
                                     "--grpc",
                                     grpc_,
                                     "--frontend",
                                     frontend,
                                     "--backend",
                                     "unix:" + Path("be.sock"),
                                     "--shutdown-grace",
                                     "2"};
    if (std::find(extra.begin(), extra.end(), "--state-dir") == extra.end()) {
      args.insert(args.end(), {"--state-dir", Path("state")});
    }
    // Quiet unless the test asks for a level of its own.
    if (std::find(extra.begin(), extra.end(), "--log-level") == extra.end()) {
      args.insert(args.end(), {"--log-level", "warn"});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      setenv("NOTIFY_SOCKET", notify_path_.c_str(), 1);
      for (const std::string& kv : env) putenv(strdup(kv.c_str()));
      if (log_to_file) {
        int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, STDERR_FILENO) < 0) _exit(126);
      }
      execv(kHostd, argv.data());
      _exit(127);
    }
    EXPECT_THAT(AwaitNotify(), ::testing::HasSubstr("READY=1")) << "hostd did not announce readiness";
    absl::StatusOr<std::string> target = channel::GrpcTarget(grpc_);
    creds_ = creds != nullptr ? creds : grpc::InsecureChannelCredentials();
    channel_ = grpc::CreateChannel(target.ok() ? *target : grpc_, creds_);
    stub_ = v1::HostService::NewStub(channel_);
  }

 public:
  ~Hostd() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // The next datagram hostd sends to $NOTIFY_SOCKET (empty after 30 s).
  std::string AwaitNotify() {
    pollfd p{notify_.get(), POLLIN, 0};
    if (poll(&p, 1, 30000) != 1) return "";
    char buf[512] = {};
    ssize_t n = recv(notify_.get(), buf, sizeof(buf) - 1, 0);
    return n > 0 ? std::string(buf, n) : "";
  }

  v1::HostService::Stub& api() { return *stub_; }
  grpc::Channel& channel() { return *channel_; }
  const std::string& grpc_addr() const { return grpc_; }
  // The control API client's credentials (insecure ones without TLS).
  const std::shared_ptr<grpc::ChannelCredentials>& creds() const { return creds_; }
  pid_t pid() const { return pid_; }
  std::string Path(const std::string& name) const { return root_ + "/" + name; }
  // hostd's log, when started with log_to_file.
  const std::string& log_path() const { return log_path_; }
  // Whether hostd has exited (after Signal).
  bool exited() const { return exited_; }
  // Forgets the process without killing or reaping it (it left its procs running,
  // and the test waits for it itself).
  void Release() { exited_ = true; }

  // Sends `sig` and returns hostd's wait status.
  int Signal(int sig) {
    kill(pid_, sig);
    int status = 0;
    EXPECT_EQ(waitpid(pid_, &status, 0), pid_);
    exited_ = true;
    return status;
  }

  v1::SpawnProcRequest EchoRequest(const std::string& name, std::vector<std::string> extra = {}) {
    v1::SpawnProcRequest req;
    req.set_name(name);
    req.mutable_spec()->set_program(kTestProc);
    req.mutable_spec()->add_args("--echo");
    for (auto& a : extra) req.mutable_spec()->add_args(a);
    return req;
  }

  grpc::Status Spawn(const v1::SpawnProcRequest& req, v1::SpawnProcResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(testing::kHangGuard));
    return api().SpawnProc(&ctx, req, resp);
  }

 private:
  testing::TempDir dir_;
  std::string root_;  // dir_, or the root a restart shares
  std::string notify_path_;
  std::string log_path_;
  base::UniqueFd notify_;
  std::string grpc_;
  std::shared_ptr<grpc::ChannelCredentials> creds_;
  pid_t pid_ = -1;
  bool exited_ = false;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::HostService::Stub> stub_;
};

// A spawn of the test proc with `args` and exec readiness (no proc runtime
// handshake needed).
inline v1::SpawnProcRequest ExecRequest(const std::string& name, std::vector<std::string> args) {
  v1::SpawnProcRequest req;
  req.set_name(name);
  req.mutable_spec()->set_program(kTestProc);
  req.mutable_spec()->set_readiness(v1::READINESS_MODE_EXEC);
  for (auto& a : args) req.mutable_spec()->add_args(a);
  return req;
}

// grpc.health.v1.Health/Check for `service` ("" for the whole server), without
// the health proto's stubs: the request is field 1 (the name), the answer's field 1
// is the status (1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN). Returns the call's
// status and the serving status (0 when the call failed).
// A unary call of `method` ("/package.Service/Method") with `request` as the raw
// body, whatever it is: the call's status and the answer's bytes.
inline std::pair<grpc::Status, std::string> RawUnaryCall(grpc::Channel& channel, const std::string& method,
                                                         const std::string& request) {
  grpc::GenericStub generic(channel.shared_from_this());
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(30)));
  grpc::Slice slice(request);
  grpc::ByteBuffer req(&slice, 1);
  grpc::ByteBuffer resp;
  absl::Notification done;
  grpc::Status status;
  generic.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &resp, [&](grpc::Status st) {
    status = st;
    done.Notify();
  });
  done.WaitForNotification();
  std::string bytes;
  std::vector<grpc::Slice> slices;
  if (status.ok() && !resp.Dump(&slices).ok())
    return {grpc::Status(grpc::StatusCode::INTERNAL, "unreadable answer"), ""};
  for (auto& sl : slices) bytes += std::string(reinterpret_cast<const char*>(sl.begin()), sl.size());
  return {status, bytes};
}

inline std::pair<grpc::Status, int> HealthCheck(grpc::Channel& channel, const std::string& service) {
  std::string request;
  if (!service.empty()) request = absl::StrCat("\x0a", std::string(1, static_cast<char>(service.size())), service);
  auto [status, bytes] = RawUnaryCall(channel, "/grpc.health.v1.Health/Check", request);
  if (!status.ok()) return {status, 0};
  // An answer of 0 (UNKNOWN) is encoded as no bytes at all.
  return {status, bytes.size() == 2 && bytes[0] == '\x08' ? bytes[1] : 0};
}

// Every proc hostd lists, by name.
inline std::map<std::string, v1::Proc> ListByName(Hostd& h) {
  v1::ListProcsRequest req;
  v1::ListProcsResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(testing::kHangGuard));
  grpc::Status s = h.api().ListProcs(&ctx, req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  std::map<std::string, v1::Proc> out;
  for (const v1::Proc& p : resp.procs()) out[p.name()] = p;
  return out;
}

// The next READY=1 hostd sends (an upgrade sends RELOADING=1 first).
inline bool AwaitReady(Hostd& h) {
  for (int i = 0; i < 4; ++i) {
    if (absl::StrContains(h.AwaitNotify(), "READY=1")) return true;
  }
  return false;
}

// Processes (zombies aside) whose process group is one of `groups`.
inline int LiveMembersOf(const std::vector<pid_t>& groups) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    absl::StatusOr<std::string> stat = base::ReadSmallFile(entry.path().string() + "/stat", 4096);
    if (!stat.ok()) continue;
    size_t close = stat->rfind(')');
    if (close == std::string::npos) continue;
    std::vector<std::string> f = absl::StrSplit(stat->substr(close + 2), ' ');
    pid_t pgrp = 0;
    if (f.size() < 3 || f[0] == "Z" || !absl::SimpleAtoi(f[2], &pgrp)) continue;
    for (pid_t g : groups) n += pgrp == g;
  }
  return n;
}

inline std::pair<int, std::string> RunShell(const std::string& cmd) {
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  int status = pclose(f);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

inline std::pair<int, std::string> Hostctl(const Hostd& h, const std::string& args) {
  return RunShell(absl::StrCat(kHostctl, " --grpc ", h.grpc_addr(), " ", args));
}

// How a hostd with --keep-procs goes away and comes back.
enum class RestartKind { kSigterm, kSigkill, kUpgrade };

// Restarts `h` (started with `flags` on `root`) the given way and returns once the
// next hostd (or, for an upgrade, the new image) announced readiness.
inline void RestartHostd(std::unique_ptr<Hostd>& h, RestartKind kind, const std::vector<std::string>& flags,
                         const testing::TempDir& root) {
  if (kind == RestartKind::kUpgrade) {
    auto [code, out] = Hostctl(*h, absl::StrCat("upgrade ", kHostd));
    EXPECT_EQ(code, 0) << out;
    EXPECT_TRUE(AwaitReady(*h)) << "the new image did not announce readiness";
    return;
  }
  int status = h->Signal(kind == RestartKind::kSigterm ? SIGTERM : SIGKILL);
  if (kind == RestartKind::kSigterm) {
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  h = std::make_unique<Hostd>(flags, root);
}

// The rest of each line of `text` that starts with `prefix` and a space.
inline std::vector<std::string> LinesWithIn(absl::string_view text, absl::string_view prefix) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&line, prefix) && absl::ConsumePrefix(&line, " ")) out.emplace_back(line);
  }
  return out;
}
// The same for the file at `path` (a proc's log).
inline std::vector<std::string> LinesWith(const std::string& path, absl::string_view prefix) {
  return LinesWithIn(base::ReadSmallFile(path, 64 << 20).value_or(""), prefix);
}

// The sequence number ending a --stream-to payload ("<tag>:<i>:<seq>"), or 0 when
// there is none in 1..max.
inline int SeqOf(absl::string_view payload, int max) {
  int seq = 0;
  size_t colon = payload.rfind(':');
  if (colon == absl::string_view::npos || !absl::SimpleAtoi(payload.substr(colon + 1), &seq)) return 0;
  return seq >= 1 && seq <= max ? seq : 0;
}

// How many descriptors `pid` has open.
inline int OpenDescriptors(pid_t pid) {
  std::error_code ec;
  int n = 0;
  for (auto it = std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/fd"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

// A raw connection to a unix:, tcp:127.0.0.1: or tls:127.0.0.1: address that never
// says a word (on tls:, not even a TLS hello).
inline base::UniqueFd Connect(const std::string& target) {
  absl::string_view rest = target;
  if (absl::ConsumePrefix(&rest, "tcp:127.0.0.1:") || absl::ConsumePrefix(&rest, "tls:127.0.0.1:")) {
    base::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int port = 0;
    if (!absl::SimpleAtoi(rest, &port)) return base::UniqueFd();
    sa.sin_port = htons(static_cast<uint16_t>(port));
    if (!fd.valid() || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) return base::UniqueFd();
    return fd;
  }
  absl::ConsumePrefix(&rest, "unix:");
  base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  absl::StatusOr<base::UnixAddr> sa = base::UnixAddr::Create(std::string(rest));
  if (!fd.valid() || !sa.ok() || ::connect(fd.get(), sa->get(), sa->size()) != 0) return base::UniqueFd();
  return fd;
}

// Lowers hostd's descriptor limit to 32 past what it has open now, then opens up to
// 100 silent connections to its control address. Holding `connections` keeps hostd
// out of descriptors; `limit` is the limit set.
struct DescriptorFlood {
  int limit = 0;
  std::vector<base::UniqueFd> connections;
};
inline DescriptorFlood FloodDescriptors(const Hostd& h) {
  DescriptorFlood f;
  f.limit = OpenDescriptors(h.pid()) + 32;
  rlimit lim{static_cast<rlim_t>(f.limit), static_cast<rlim_t>(f.limit)};
  if (::prlimit(h.pid(), RLIMIT_NOFILE, &lim, nullptr) != 0) return f;
  for (int i = 0; i < 100; ++i) {
    base::UniqueFd fd = Connect(h.grpc_addr());
    if (fd.valid()) f.connections.push_back(std::move(fd));
  }
  return f;
}

// GetHostInfo over a connection of its own (no subchannel shared with earlier
// calls), with `h`'s client credentials.
inline grpc::Status FreshCall(const Hostd& h, absl::Duration timeout) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto stub =
      v1::HostService::NewStub(grpc::CreateCustomChannel(*channel::GrpcTarget(h.grpc_addr()), h.creds(), args));
  grpc::ClientContext ctx;
  ctx.set_deadline(In(timeout));
  v1::HostInfo info;
  return stub->GetHostInfo(&ctx, v1::GetHostInfoRequest(), &info);
}

}  // namespace hostd

#endif  // HOSTD_TESTS_INTEGRATION_HOSTD_PROCESS_H_
