// The fixture of the integration tests: the real hostd binary in a temp dir (its
// sockets, state dir and $NOTIFY_SOCKET), a gRPC stub to it, and the real hostctl
// run through a shell. Each test binary that includes it defines HOSTD_BIN,
// HOSTCTL_BIN and HOSTD_TEST_PROC (tests/CMakeLists.txt).
#ifndef HOSTD_TESTS_INTEGRATION_HOSTD_FIXTURE_H_
#define HOSTD_TESTS_INTEGRATION_HOSTD_FIXTURE_H_

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/unique_fd.h"
#include "base/unix_addr.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "hostd/v1/host.grpc.pb.h"
#include "testing/eventually.h"
#include "testing/temp_dir.h"

namespace hostd {

namespace v1 = ::hostd::v1;

inline constexpr char kHostd[] = HOSTD_BIN;
inline constexpr char kHostctl[] = HOSTCTL_BIN;
inline constexpr char kTestProc[] = HOSTD_TEST_PROC;

inline std::chrono::system_clock::time_point In(absl::Duration d) { return absl::ToChronoTime(absl::Now() + d); }

inline google::protobuf::Duration Secs(int64_t s) {
  google::protobuf::Duration d;
  d.set_seconds(s);
  return d;
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
  explicit Hostd(std::vector<std::string> extra = {}) {
    notify_path_ = dir_.Join("notify");
    notify_ = base::UniqueFd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    base::UniqueFd& notify = notify_;
    absl::StatusOr<base::UnixAddr> sa = base::UnixAddr::Create(notify_path_);
    EXPECT_TRUE(sa.ok()) << sa.status();
    if (sa.ok()) {
      EXPECT_EQ(bind(notify.get(), sa->get(), sa->size()), 0);
    }
    grpc_ = "unix:" + dir_.Join("hostd.sock");
    std::vector<std::string> args = {kHostd,
                                     "--grpc",
                                     grpc_,
                                     "--frontend",
                                     "unix:" + dir_.Join("fe.sock"),
                                     "--backend",
                                     "unix:" + dir_.Join("be.sock"),
                                     "--state-dir",
                                     dir_.Join("state"),
                                     "--shutdown-grace",
                                     "2",
                                     "--log-level",
                                     "warn"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      setenv("NOTIFY_SOCKET", notify_path_.c_str(), 1);
      execv(kHostd, argv.data());
      _exit(127);
    }
    EXPECT_THAT(AwaitNotify(), ::testing::HasSubstr("READY=1")) << "hostd did not announce readiness";
    channel_ = grpc::CreateChannel(grpc_, grpc::InsecureChannelCredentials());
    stub_ = v1::HostService::NewStub(channel_);
  }
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
  pid_t pid() const { return pid_; }
  std::string Path(const std::string& name) const { return dir_.Join(name); }

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
  std::string notify_path_;
  base::UniqueFd notify_;
  std::string grpc_;
  pid_t pid_ = -1;
  bool exited_ = false;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::HostService::Stub> stub_;
};

// Runs a shell command; returns its exit code and its output (stdout and stderr).
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

}  // namespace hostd

#endif  // HOSTD_TESTS_INTEGRATION_HOSTD_FIXTURE_H_
