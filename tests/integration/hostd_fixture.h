// The real hostd binary in a temp directory, for the integration tests: the
// binaries' paths, a Hostd fixture (started, READY=1 awaited, a gRPC stub), and
// small helpers.
#ifndef HOSTD_TESTS_INTEGRATION_HOSTD_FIXTURE_H_
#define HOSTD_TESTS_INTEGRATION_HOSTD_FIXTURE_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "base/unix_addr.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "hostd/v1/host.grpc.pb.h"
#include "testing/eventually.h"
#include "testing/temp_dir.h"

namespace hostd {

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

// hostd running in a temp dir (or in `root`, to run one hostd after another on the
// same sockets and state directory), with READY=1 awaited on a notify socket.
class Hostd {
 public:
  explicit Hostd(std::vector<std::string> extra = {}, std::string root = "")
      : root_(root.empty() ? dir_.path() : root) {
    notify_path_ = Path("notify");
    ::unlink(notify_path_.c_str());
    notify_ = base::UniqueFd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    base::UniqueFd& notify = notify_;
    absl::StatusOr<base::UnixAddr> sa = base::UnixAddr::Create(notify_path_);
    EXPECT_TRUE(sa.ok()) << sa.status();
    if (sa.ok()) {
      EXPECT_EQ(bind(notify.get(), sa->get(), sa->size()), 0);
    }
    grpc_ = "unix:" + Path("hostd.sock");
    std::vector<std::string> args = {kHostd,
                                     "--grpc",
                                     grpc_,
                                     "--frontend",
                                     "unix:" + Path("fe.sock"),
                                     "--backend",
                                     "unix:" + Path("be.sock"),
                                     "--state-dir",
                                     Path("state"),
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
  std::string Path(const std::string& name) const { return root_ + "/" + name; }
  // Forgets the process without killing or reaping it (it left its procs running,
  // and a test waits for it itself).
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
  const std::string root_;
  std::string notify_path_;
  base::UniqueFd notify_;
  std::string grpc_;
  pid_t pid_ = -1;
  bool exited_ = false;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::HostService::Stub> stub_;
};

}  // namespace hostd

#endif  // HOSTD_TESTS_INTEGRATION_HOSTD_FIXTURE_H_
