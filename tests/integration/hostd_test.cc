// The real hostd binary on temp sockets, driven by the generated gRPC client and
// by the real hostctl binary (the fixture: hostd_process.h). One file over 500
// lines on purpose: the scenarios share one test binary, which keeps links few.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "base/small_file.h"
#include "base/unique_fd.h"
#include "base/unix_addr.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "hostd/v1/host.grpc.pb.h"
#include "testing/eventually.h"
#include "testing/temp_dir.h"
#include "tests/integration/hostd_process.h"

namespace hostd {
namespace {

using ::testing::HasSubstr;
namespace v1 = ::hostd::v1;

// The raw bytes of the reflection service's answer to list_services.
std::string ReflectedServices(grpc::Channel& channel) {
  class Call final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
   public:
    Call() {
      grpc::Slice req("\x3a\x00", 2);
      request_ = grpc::ByteBuffer(&req, 1);
    }
    void Start(grpc::GenericStub& stub) {
      ctx_.set_deadline(In(absl::Seconds(30)));
      stub.PrepareBidiStreamingCall(&ctx_, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                    grpc::StubOptions(), this);
      StartWriteLast(&request_, grpc::WriteOptions());
      StartRead(&response_);
      StartCall();
    }
    void OnReadDone(bool ok) override {
      if (!ok) return;
      std::vector<grpc::Slice> slices;
      (void)response_.Dump(&slices);
      for (auto& sl : slices) bytes_ += std::string(reinterpret_cast<const char*>(sl.begin()), sl.size());
    }
    void OnDone(const grpc::Status&) override { done_.Notify(); }
    std::string Wait() {
      done_.WaitForNotification();
      return bytes_;
    }

   private:
    grpc::ClientContext ctx_;
    grpc::ByteBuffer request_;
    grpc::ByteBuffer response_;
    std::string bytes_;
    absl::Notification done_;
  };
  grpc::GenericStub stub(channel.shared_from_this());
  Call call;
  call.Start(stub);
  return call.Wait();
}

TEST(HostdTest, EveryRpcSucceedsAndFailsWithTheRightCode) {
  Hostd h;
  v1::SpawnProcResponse spawned;
  v1::SpawnProcRequest echo = h.EchoRequest("echo", {"--stderr=to-the-log"});
  (*echo.mutable_labels())["team"] = "infra";
  ASSERT_TRUE(h.Spawn(echo, &spawned).ok());
  EXPECT_EQ(spawned.proc().status().state(), v1::PROC_STATE_READY);
  EXPECT_GT(spawned.proc().status().pid(), 0);
  pid_t echo_pid = spawned.proc().status().pid();

  // Spawn errors.
  EXPECT_EQ(h.Spawn(echo, &spawned).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  v1::SpawnProcRequest bad = h.EchoRequest("no spaces");
  EXPECT_EQ(h.Spawn(bad, &spawned).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::SpawnProcRequest missing = h.EchoRequest("missing");
  missing.mutable_spec()->set_program("/no/such/program");
  grpc::Status s = h.Spawn(missing, &spawned);
  // Not NOT_FOUND: that would tell hostctl there is no such proc.
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("/no/such/program"));
  v1::SpawnProcRequest slow = h.EchoRequest("slow", {"--never-ready"});
  slow.mutable_spec()->mutable_ready_timeout()->set_nanos(200000000);
  EXPECT_EQ(h.Spawn(slow, &spawned).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);

  // SpawnProcs: results per proc.
  {
    v1::SpawnProcsRequest req;
    *req.add_procs() = h.EchoRequest("b1");
    *req.add_procs() = h.EchoRequest("b2");
    *req.add_procs() = h.EchoRequest("echo");  // taken
    v1::SpawnProcsResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(h.api().SpawnProcs(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.ok(), 2);
    EXPECT_EQ(resp.failed(), 1);
    EXPECT_EQ(resp.results(2).code(), static_cast<int>(grpc::StatusCode::ALREADY_EXISTS));
  }
  // GetProc / ListProcs.
  {
    v1::GetProcRequest req;
    req.set_name("echo");
    v1::Proc p;
    grpc::ClientContext ctx;
    ASSERT_TRUE(h.api().GetProc(&ctx, req, &p).ok());
    EXPECT_EQ(p.labels().at("team"), "infra");
    EXPECT_THAT(p.proc_id(), HasSubstr(",echo"));
    grpc::ClientContext ctx2;
    req.set_name("ghost");
    EXPECT_EQ(h.api().GetProc(&ctx2, req, &p).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    v1::ListProcsRequest req;
    (*req.mutable_labels())["team"] = "infra";
    v1::ListProcsResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(h.api().ListProcs(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.procs_size(), 1);
    EXPECT_EQ(resp.procs(0).name(), "echo");
  }
  // SendMessage: a reply, an unknown port, an unknown proc.
  {
    v1::SendMessageRequest req;
    req.set_name("echo");
    req.set_port("echo");
    req.set_payload("ping");
    *req.mutable_reply_timeout() = Secs(30);
    v1::SendMessageResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(h.api().SendMessage(&ctx, req, &resp).ok());
    EXPECT_TRUE(resp.replied());
    EXPECT_EQ(resp.reply_payload(), "ping");
    req.set_port("nope");
    grpc::ClientContext ctx2;
    s = h.api().SendMessage(&ctx2, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(s.error_message(), HasSubstr("unknown port"));
    req.set_name("ghost");
    grpc::ClientContext ctx3;
    EXPECT_EQ(h.api().SendMessage(&ctx3, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  // WaitProc with a timeout on a live proc.
  {
    v1::WaitProcRequest req;
    req.set_name("echo");
    req.mutable_timeout()->set_nanos(100000000);
    v1::Proc p;
    grpc::ClientContext ctx;
    EXPECT_EQ(h.api().WaitProc(&ctx, req, &p).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  // StreamLogs: the stderr written at start.
  {
    v1::StreamLogsRequest req;
    req.set_name("echo");
    req.set_stderr(true);
    grpc::ClientContext ctx;
    auto reader = h.api().StreamLogs(&ctx, req);
    std::string all;
    v1::LogChunk chunk;
    while (reader->Read(&chunk)) all += chunk.data();
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_THAT(all, HasSubstr("to-the-log"));
  }
  // WatchProcs: a snapshot, then the kill below.
  grpc::ClientContext watch_ctx;
  v1::WatchProcsRequest wreq;
  wreq.add_names("echo");
  wreq.set_snapshot(true);
  auto watch = h.api().WatchProcs(&watch_ctx, wreq);
  v1::ProcEvent ev;
  ASSERT_TRUE(watch->Read(&ev));
  EXPECT_EQ(ev.kind(), v1::ProcEvent::KIND_SNAPSHOT);
  EXPECT_EQ(ev.status().state(), v1::PROC_STATE_READY);
  // KillProc, then WaitProc and TerminateProc report the end.
  {
    v1::KillProcRequest req;
    req.set_name("echo");
    v1::Proc p;
    grpc::ClientContext ctx;
    ASSERT_TRUE(h.api().KillProc(&ctx, req, &p).ok());
    EXPECT_EQ(p.status().state(), v1::PROC_STATE_KILLED);
    EXPECT_EQ(p.status().signal(), SIGKILL);
    EXPECT_TRUE(AwaitGone(echo_pid));
    v1::WaitProcRequest wait;
    wait.set_name("echo");
    grpc::ClientContext ctx2;
    ASSERT_TRUE(h.api().WaitProc(&ctx2, wait, &p).ok());
    EXPECT_EQ(p.status().state(), v1::PROC_STATE_KILLED);
  }
  bool saw_killed = false;
  while (!saw_killed && watch->Read(&ev)) saw_killed = ev.status().state() == v1::PROC_STATE_KILLED;
  EXPECT_TRUE(saw_killed);
  watch_ctx.TryCancel();
  (void)watch->Finish();
  {
    v1::TerminateProcRequest req;
    req.set_name("b1");
    *req.mutable_grace() = Secs(5);
    v1::Proc p;
    grpc::ClientContext ctx;
    ASSERT_TRUE(h.api().TerminateProc(&ctx, req, &p).ok());
    EXPECT_EQ(p.status().state(), v1::PROC_STATE_STOPPED);
    EXPECT_EQ(p.status().exit_code(), 0);
    req.set_name("ghost");
    grpc::ClientContext ctx2;
    EXPECT_EQ(h.api().TerminateProc(&ctx2, req, &p).error_code(), grpc::StatusCode::NOT_FOUND);
    req.set_name("b2");
    req.mutable_grace()->set_seconds(-1);
    grpc::ClientContext ctx3;
    EXPECT_EQ(h.api().TerminateProc(&ctx3, req, &p).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // GetHostInfo.
  {
    v1::HostInfo info;
    grpc::ClientContext ctx;
    ASSERT_TRUE(h.api().GetHostInfo(&ctx, v1::GetHostInfoRequest(), &info).ok());
    EXPECT_EQ(info.pid(), h.pid());
    EXPECT_EQ(info.manager(), "process");
    EXPECT_EQ(info.live_procs(), 1);  // b2
    EXPECT_THAT(info.frontend_addr(), HasSubstr("fe.sock"));
  }
  // TerminateAll: b2 terminated; the names are free again.
  {
    v1::TerminateAllRequest req;
    *req.mutable_grace() = Secs(5);
    v1::TerminateAllResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(h.api().TerminateAll(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.attempted(), 1);
    EXPECT_EQ(resp.ok(), 1);
    ASSERT_EQ(resp.outcomes_size(), 1);
    EXPECT_EQ(resp.outcomes(0).name(), "b2");
    v1::ListProcsResponse list;
    grpc::ClientContext ctx2;
    ASSERT_TRUE(h.api().ListProcs(&ctx2, v1::ListProcsRequest(), &list).ok());
    EXPECT_EQ(list.procs_size(), 0);
  }
  // The standard health service answers SERVING, for the server and by name.
  for (const char* service : {"", "hostd.v1.HostService"}) {
    auto [hs, serving] = HealthCheck(h.channel(), service);
    ASSERT_TRUE(hs.ok()) << hs.error_message();
    EXPECT_EQ(serving, 1) << "service \"" << service << "\"";
  }
  // Server reflection lists the services (ServerReflectionRequest.list_services is
  // field 7: bytes 3a 00).
  EXPECT_THAT(ReflectedServices(h.channel()),
              ::testing::AllOf(HasSubstr("hostd.v1.HostService"), HasSubstr("grpc.health.v1.Health")));
  EXPECT_EQ(h.Signal(SIGTERM), 0);
}

// All of a StreamLogs stream.
std::pair<grpc::Status, std::string> ReadLogs(Hostd& h, const v1::StreamLogsRequest& req) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(testing::kHangGuard));
  auto reader = h.api().StreamLogs(&ctx, req);
  std::string all;
  v1::LogChunk chunk;
  while (reader->Read(&chunk)) all += chunk.data();
  return {reader->Finish(), all};
}

// With umask 000, nothing hostd makes is open to other local users: its
// directories, its sockets and its procs' logs get explicit modes.
TEST(HostdTest, UnderUmaskZeroEveryFileAndDirectoryHostdMakesIsPrivate) {
  const mode_t old_umask = ::umask(0);  // inherited by hostd
  Hostd h;
  ::umask(old_umask);
  v1::SpawnProcResponse spawned;
  ASSERT_TRUE(h.Spawn(h.EchoRequest("m"), &spawned).ok());
  auto mode = [](const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  };
  EXPECT_EQ(mode(h.Path("state")), 0700u);
  EXPECT_EQ(mode(h.Path("state/logs")), 0700u);
  EXPECT_EQ(mode(h.Path("state/logs/m.stdout")), 0640u);
  EXPECT_EQ(mode(h.Path("fe.sock")), 0600u);
  EXPECT_EQ(mode(h.Path("be.sock")), 0600u);
  EXPECT_EQ(mode(h.Path("hostd.sock")), 0600u);
}

// A soft descriptor limit of 256 (a hard one far above) is raised to the hard
// limit at start: a host of many procs does not run out at 1024.
TEST(HostdTest, HostdRaisesItsSoftDescriptorLimitToTheHardOne) {
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  if (old.rlim_max <= 256) GTEST_SKIP() << "the hard limit is too low to see a raise";
  rlimit low = old;
  low.rlim_cur = 256;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  Hostd h;  // inherits the low soft limit
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);
  absl::StatusOr<std::string> limits = base::ReadSmallFile(absl::StrCat("/proc/", h.pid(), "/limits"));
  ASSERT_TRUE(limits.ok()) << limits.status();
  std::string want = old.rlim_max == RLIM_INFINITY ? "unlimited" : absl::StrCat(old.rlim_max);
  bool found = false;
  for (absl::string_view line : absl::StrSplit(*limits, '\n')) {
    if (!absl::StartsWith(line, "Max open files")) continue;
    found = true;
    std::vector<absl::string_view> cols = absl::StrSplit(line, ' ', absl::SkipEmpty());
    ASSERT_GE(cols.size(), 5u) << line;
    EXPECT_EQ(cols[3], want) << "soft limit: " << line;
    EXPECT_EQ(cols[4], want) << "hard limit: " << line;
  }
  EXPECT_TRUE(found) << *limits;
}

// Descriptors `pid` has open.
// The sanitizers' own runtime needs descriptors to report (and UBSan's vptr check
// fails without them), so a sanitized hostd out of descriptors aborts.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// gRPC's own listener stops accepting for good after one EMFILE; hostd's does not,
// on a unix or a tcp control address (the parameter: tcp). Floods the control
// address with silent connections until hostd is out of descriptors, then lets
// them go and expects a new connection to be served.
class DescriptorExhaustionTest : public ::testing::TestWithParam<bool> {};

TEST_P(DescriptorExhaustionTest, TheControlApiServesAgainAfterHostdRanOutOfDescriptors) {
  if (kSanitized) GTEST_SKIP() << "not meaningful with the sanitizers, which themselves need descriptors";
  Hostd h = GetParam() ? Hostd({}, absl::StrCat("tcp:127.0.0.1:", FreePort())) : Hostd();
  {
    grpc::ClientContext ctx;
    v1::HostInfo info;
    ASSERT_TRUE(h.api().GetHostInfo(&ctx, v1::GetHostInfoRequest(), &info).ok());  // connected before the flood
  }
  DescriptorFlood flood = FloodDescriptors(h);
  EXPECT_TRUE(testing::Eventually([&] { return OpenDescriptors(h.pid()) >= flood.limit - 1; }))
      << "hostd did not run out of descriptors: " << OpenDescriptors(h.pid()) << " of " << flood.limit;
  // A spawn now, over the connection made before, is refused saying why.
  v1::SpawnProcResponse resp;
  grpc::Status spawn = h.Spawn(h.EchoRequest("starved"), &resp);
  EXPECT_EQ(spawn.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << spawn.error_message();
  EXPECT_THAT(spawn.error_message(), HasSubstr("RLIMIT_NOFILE"));
  flood.connections.clear();
  EXPECT_TRUE(testing::Eventually([&] { return FreshCall(h, absl::Seconds(2)).ok(); }))
      << "the control API did not come back after the descriptors were free";
  EXPECT_EQ(h.Signal(SIGTERM), 0);
}


INSTANTIATE_TEST_SUITE_P(UnixAndTcp, DescriptorExhaustionTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "Tcp" : "Unix"; });

TEST(HostdTest, ControlConnectionsPastTheCapAreClosedAndServedAgainLater) {
  Hostd h({"--max-grpc-connections", "4"});
  std::vector<base::UniqueFd> held;
  for (int i = 0; i < 4; ++i) held.push_back(Connect(h.grpc_addr()));
  // Refused once hostd has accepted the four held connections. (Counting hostd's
  // descriptors instead raced with connections of its own that close meanwhile.)
  grpc::Status refused;
  EXPECT_TRUE(testing::Eventually([&] {
    refused = FreshCall(h, absl::Seconds(5));
    return refused.error_code() == grpc::StatusCode::UNAVAILABLE;
  })) << refused.error_message();
  held.clear();
  EXPECT_TRUE(testing::Eventually([&] { return FreshCall(h, absl::Seconds(2)).ok(); }));
  EXPECT_EQ(h.Signal(SIGTERM), 0);
}

TEST(HostdTest, StreamLogsTailsAndFollowsUntilTheProcEnds) {
  Hostd h;
  v1::SpawnProcResponse spawned;
  ASSERT_TRUE(h.Spawn(h.EchoRequest("logger", {"--flood-stdout=300000", "--exit-after-ms=300"}), &spawned).ok());
  v1::StreamLogsRequest req;
  req.set_name("logger");
  req.set_tail_bytes(1000);
  auto [s, tail] = ReadLogs(h, req);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(tail.size(), 1000u);
  // Following returns everything and ends once the proc has ended.
  req.set_tail_bytes(0);
  req.set_follow(true);
  auto [fs, all] = ReadLogs(h, req);
  ASSERT_TRUE(fs.ok()) << fs.error_message();
  EXPECT_EQ(all.size(), 300000u);
  v1::WaitProcRequest wait;
  wait.set_name("logger");
  v1::Proc p;
  grpc::ClientContext ctx;
  ASSERT_TRUE(h.api().WaitProc(&ctx, wait, &p).ok());
  EXPECT_EQ(p.status().state(), v1::PROC_STATE_STOPPED);
  req.set_name("ghost");
  EXPECT_EQ(ReadLogs(h, req).first.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(h.Signal(SIGTERM), 0);
}

TEST(HostdTest, SigtermWithAHundredProcsTerminatesThemAllAndExitsZero) {
  Hostd h;
  v1::SpawnProcsRequest req;
  for (int i = 0; i < 100; ++i) {
    // Every fourth ignores SIGTERM and the agent's stop: only SIGKILL ends it.
    std::vector<std::string> extra;
    if (i % 4 == 0) extra = {"--ignore-sigterm", "--ignore-stop"};
    *req.add_procs() = h.EchoRequest(absl::StrCat("p", i), extra);
  }
  req.set_max_in_flight(16);
  v1::SpawnProcsResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(120)));
  ASSERT_TRUE(h.api().SpawnProcs(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.ok(), 100) << (resp.failed() > 0 ? resp.results(0).error() : "");
  std::vector<pid_t> pids;
  for (const auto& r : resp.results()) pids.push_back(r.proc().status().pid());
  int status = h.Signal(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  for (pid_t p : pids) EXPECT_TRUE(AwaitGone(p)) << "proc pid " << p << " outlived hostd";
}

// Open streams do not hold hostd's exit up, and say why they end: at a shutdown a
// watcher gets the end of every proc, then UNAVAILABLE, and a log follower the
// whole log; at a hand-over to the next hostd (--keep-procs) a watcher and a log
// follower are told so.
TEST(HostdTest, AtShutdownAndAtAHandOverOpenStreamsEndWithUnavailableSayingWhy) {
  for (bool hand_over : {false, true}) {
    SCOPED_TRACE(hand_over ? "hand-over" : "shutdown");
    testing::TempDir root;
    Hostd h(hand_over ? std::vector<std::string>{"--keep-procs"} : std::vector<std::string>{}, root);
    v1::SpawnProcResponse spawned;
    ASSERT_TRUE(h.Spawn(h.EchoRequest("w", {"--flood-stdout=100"}), &spawned).ok());
    grpc::ClientContext watch_ctx;
    watch_ctx.set_deadline(In(testing::kHangGuard));
    v1::WatchProcsRequest with_snapshot;
    with_snapshot.set_snapshot(true);
    auto watch = h.api().WatchProcs(&watch_ctx, with_snapshot);
    v1::ProcEvent e;
    ASSERT_TRUE(watch->Read(&e));  // registered: its snapshot of "w" came
    grpc::ClientContext logs_ctx;
    logs_ctx.set_deadline(In(testing::kHangGuard));
    v1::StreamLogsRequest follow;
    follow.set_name("w");
    follow.set_follow(true);
    auto logs = h.api().StreamLogs(&logs_ctx, follow);
    v1::LogChunk chunk;
    ASSERT_TRUE(logs->Read(&chunk));  // registered: the proc's first output came

    EXPECT_EQ(h.Signal(SIGTERM), 0);
    bool saw_end = false;
    while (watch->Read(&e)) saw_end |= e.name() == "w" && e.status().state() >= v1::PROC_STATE_STOPPED;
    grpc::Status ws = watch->Finish();
    EXPECT_EQ(ws.error_code(), grpc::StatusCode::UNAVAILABLE) << ws.error_message();
    while (logs->Read(&chunk)) {
    }
    grpc::Status ls = logs->Finish();
    if (hand_over) {
      EXPECT_THAT(ws.error_message(), HasSubstr("handing its procs over to the next hostd"));
      EXPECT_EQ(ls.error_code(), grpc::StatusCode::UNAVAILABLE) << ls.error_message();
      EXPECT_THAT(ls.error_message(), HasSubstr("handing its procs over to the next hostd"));
      EXPECT_FALSE(saw_end) << "the proc was ended at a hand-over";
      kill(spawned.proc().status().pid(), SIGKILL);  // nobody adopts it: the test ends it
      EXPECT_TRUE(AwaitGone(spawned.proc().status().pid()));
    } else {
      EXPECT_THAT(ws.error_message(), HasSubstr("hostd has shut down"));
      EXPECT_TRUE(saw_end) << "the watcher missed the proc's end";
      EXPECT_TRUE(ls.ok()) << "the follower of an ended proc gets all of its log: " << ls.error_message();
    }
  }
}

TEST(HostdTest, ASecondSignalDuringShutdownKillsEverythingAtOnce) {
  Hostd h;
  std::vector<pid_t> pids;
  for (int i = 0; i < 3; ++i) {
    v1::SpawnProcResponse resp;
    ASSERT_TRUE(h.Spawn(h.EchoRequest(absl::StrCat("s", i), {"--ignore-sigterm", "--ignore-stop"}), &resp).ok());
    pids.push_back(resp.proc().status().pid());
  }
  kill(h.pid(), SIGTERM);
  // Shutdown under way (the procs have their 2 s grace): hostd said STOPPING=1.
  EXPECT_THAT(h.AwaitNotify(), HasSubstr("STOPPING=1"));
  int status = h.Signal(SIGINT);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT);
  for (pid_t p : pids) EXPECT_TRUE(AwaitGone(p)) << "proc pid " << p << " outlived hostd";
}

TEST(HostdTest, ReadsAConfigFile) {
  testing::TempDir cfg_dir;
  std::string cfg = cfg_dir.Join("hostd.toml");
  {
    std::ofstream out(cfg);
    out << "# hostd's options, by their long names\nmanager = \"local\"\nlog-format = \"json\"\n";
  }
  Hostd h({"--config", cfg});
  v1::HostInfo info;
  grpc::ClientContext ctx;
  ASSERT_TRUE(h.api().GetHostInfo(&ctx, v1::GetHostInfoRequest(), &info).ok());
  EXPECT_EQ(info.manager(), "local");
  EXPECT_EQ(h.Signal(SIGTERM), 0);
}

// Pids a test proc printed as "grandchild <pid>" into its stdout log.
std::vector<pid_t> GrandchildrenIn(const std::string& log) {
  std::vector<pid_t> out;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) {
    absl::string_view rest = line;
    int pid = 0;
    if (absl::ConsumePrefix(&rest, "grandchild ") && absl::SimpleAtoi(rest, &pid)) out.push_back(pid);
  }
  return out;
}

// With and without cgroups: without them, the grandchildren that called setsid()
// are found by the mark in their environment (manager/proc_mark.h).
class HostdSigkillTest : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(CgroupsOnOff, HostdSigkillTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Cgroups" : "NoCgroups"; });

TEST_P(HostdSigkillTest, SigkillOfHostdLeavesNoProcAndNoEscapedGrandchild) {
  Hostd h({"--cgroups", GetParam() ? "true" : "false"});
  std::vector<pid_t> pids;
  for (int i = 0; i < 5; ++i) {
    v1::SpawnProcResponse resp;
    std::string name = absl::StrCat("k", i);
    ASSERT_TRUE(h.Spawn(h.EchoRequest(name, {"--ignore-sigterm", "--grandchild", "--grandchild-setsid"}), &resp).ok());
    pids.push_back(resp.proc().status().pid());
    std::string log = h.Path(absl::StrCat("state/logs/", name, ".stdout"));
    ASSERT_TRUE(testing::Eventually([&] { return GrandchildrenIn(log).size() == 2; })) << log;
    for (pid_t g : GrandchildrenIn(log)) pids.push_back(g);
  }
  int status = h.Signal(SIGKILL);
  EXPECT_TRUE(WIFSIGNALED(status));
  for (pid_t p : pids) EXPECT_TRUE(AwaitGone(p)) << "pid " << p << " outlived hostd";
}

// WatchProcs streams that never read cannot make hostd hold more than its budget:
// past max_watch_bytes the streams behind by more than their share are ended with
// RESOURCE_EXHAUSTED naming the limit, while a stream that keeps up gets every
// event; one stream more than max_watch_streams is refused.
TEST(HostdTest, WatchStreamsThatNeverReadAreCutOffAtTheHostWideBudget) {
  constexpr int kSilent = 8;
  constexpr int kProcs = 400;
  Hostd h({"--manager", "local", "--max-watch-bytes", "262144", "--max-watch-streams", absl::StrCat(kSilent + 1)});
  // The silent streams share a connection of their own, so that their unread
  // events stall only it; small flow-control windows keep gRPC's own buffers small.
  grpc::ChannelArguments silent_args;
  silent_args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  silent_args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8192);
  silent_args.SetInt("hostd.test.connection", 1);
  auto silent_channel = grpc::CreateCustomChannel(h.grpc_addr(), grpc::InsecureChannelCredentials(), silent_args);
  auto silent_stub = v1::HostService::NewStub(silent_channel);
  // Every stream asks for a snapshot and reads its one event (the proc "zero"):
  // a stream that has delivered it is registered, so none of them can race the
  // probe below for a slot. The silent ones never read again.
  v1::SpawnProcResponse zero;
  ASSERT_TRUE(h.Spawn(h.EchoRequest("zero"), &zero).ok());
  v1::WatchProcsRequest with_snapshot;
  with_snapshot.set_snapshot(true);
  auto registered = [](grpc::ClientReader<v1::ProcEvent>& stream) {
    v1::ProcEvent e;
    return stream.Read(&e) && e.name() == "zero" && e.kind() == v1::ProcEvent::KIND_SNAPSHOT;
  };
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::ProcEvent>>> silent;
  for (int i = 0; i < kSilent; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    contexts.back()->set_deadline(In(testing::kHangGuard));
    silent.push_back(silent_stub->WatchProcs(contexts.back().get(), with_snapshot));
    ASSERT_TRUE(registered(*silent.back())) << "silent stream " << i;
  }
  // The one that reads, on hostd's usual channel.
  grpc::ClientContext reader_ctx;
  reader_ctx.set_deadline(In(testing::kHangGuard));
  auto reader = h.api().WatchProcs(&reader_ctx, with_snapshot);
  ASSERT_TRUE(registered(*reader));
  // Every slot is taken: one stream more is refused, naming the limit.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(testing::kHangGuard));
    auto extra = h.api().WatchProcs(&ctx, v1::WatchProcsRequest());
    v1::ProcEvent e;
    EXPECT_FALSE(extra->Read(&e));
    grpc::Status st = extra->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
    EXPECT_THAT(st.error_message(), HasSubstr("max_watch_streams"));
  }
  int seen = 0;
  bool saw_last = false;
  std::thread read_all([&] {
    v1::ProcEvent e;
    while (reader->Read(&e)) {
      ++seen;
      if (e.name() == "last" && e.kind() == v1::ProcEvent::KIND_SPAWNED) {
        saw_last = true;
        break;
      }
    }
  });
  for (int batch = 0; batch < kProcs / 100; ++batch) {
    v1::SpawnProcsRequest req;
    for (int i = 0; i < 100; ++i) *req.add_procs() = h.EchoRequest(absl::StrCat("w", batch, "-", i));
    v1::SpawnProcsResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(In(testing::kHangGuard));
    ASSERT_TRUE(h.api().SpawnProcs(&ctx, req, &resp).ok());
  }
  {
    v1::TerminateAllResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(In(testing::kHangGuard));
    ASSERT_TRUE(h.api().TerminateAll(&ctx, v1::TerminateAllRequest(), &resp).ok());
  }
  v1::SpawnProcResponse last;
  ASSERT_TRUE(h.Spawn(h.EchoRequest("last"), &last).ok());
  read_all.join();
  EXPECT_TRUE(saw_last) << "the stream that kept up was cut off after " << seen << " events";
  EXPECT_GT(seen, kProcs * 3);
  reader_ctx.TryCancel();
  (void)reader->Finish();
  int cut_off = 0;
  for (int i = 0; i < kSilent; ++i) {
    v1::ProcEvent e;
    while (silent[i]->Read(&e)) {
    }
    grpc::Status st = silent[i]->Finish();
    if (st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      EXPECT_THAT(st.error_message(), HasSubstr("max_watch_bytes"));
      ++cut_off;
    }
  }
  EXPECT_EQ(cut_off, kSilent) << "every silent stream fell far behind and was ended";
  EXPECT_EQ(h.Signal(SIGTERM), 0);
}

// A proc's output written while the state file system is full is lost (it writes
// to its log file itself); its terminal status says so, and one that ran with room
// to spare carries no such note.
TEST(HostdTest, AProcWhoseOutputHitAFullStateFileSystemSaysSoInItsStatus) {
  testing::TempDir dir;
  const std::string state = dir.Join("small-state");
  std::filesystem::create_directories(state);
  if (::mount("tmpfs", state.c_str(), "tmpfs", 0, "size=1m,mode=0700") != 0) {
    GTEST_SKIP() << "cannot mount a small tmpfs here: " << std::strerror(errno);
  }
  {
    Hostd h({"--state-dir", state});
    auto run = [&](const std::string& name, std::vector<std::string> args) {
      v1::SpawnProcResponse resp;
      EXPECT_TRUE(h.Spawn(h.EchoRequest(name, std::move(args)), &resp).ok());
      v1::WaitProcRequest wait;
      wait.set_name(name);
      v1::Proc p;
      grpc::ClientContext ctx;
      ctx.set_deadline(In(testing::kHangGuard));
      EXPECT_TRUE(h.api().WaitProc(&ctx, wait, &p).ok());
      return p.status();
    };
    v1::ProcStatus quiet = run("quiet", {"--exit-after-ms=0"});
    EXPECT_EQ(quiet.note(), "");
    v1::ProcStatus flood = run("flood", {"--flood-stdout=3000000", "--exit-after-ms=0"});
    EXPECT_THAT(flood.note(), HasSubstr("output may be lost"));
    EXPECT_THAT(flood.note(), HasSubstr(state));
    EXPECT_EQ(h.Signal(SIGTERM), 0);
  }
  EXPECT_EQ(::umount2(state.c_str(), MNT_DETACH), 0) << std::strerror(errno);
}

// Runs a shell command; returns its exit code and its output (stdout and stderr).
TEST(HostdTest, HostctlEndToEnd) {
  Hostd h;
  auto [rc, out] = Hostctl(h, absl::StrCat("spawn e1 ", kTestProc, " -- --echo"));
  ASSERT_EQ(rc, 0) << out;
  std::tie(rc, out) = Hostctl(h, absl::StrCat("spawn e1 ", kTestProc, " -- --echo"));
  EXPECT_EQ(rc, 4) << out;  // already exists
  EXPECT_THAT(out, HasSubstr("already exists"));
  std::tie(rc, out) = Hostctl(h, absl::StrCat("spawn --count 3 w ", kTestProc, " -- --echo"));
  ASSERT_EQ(rc, 0) << out;

  std::tie(rc, out) = Hostctl(h, "list --json");
  ASSERT_EQ(rc, 0) << out;
  v1::ListProcsResponse list;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &list).ok()) << out;
  ASSERT_EQ(list.procs_size(), 4);
  EXPECT_EQ(list.procs(0).name(), "e1");
  EXPECT_EQ(list.procs(0).status().state(), v1::PROC_STATE_READY);

  std::tie(rc, out) = Hostctl(h, "send e1 echo hello-hostctl --reply-timeout 30");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "hello-hostctl\n");
  std::tie(rc, out) = Hostctl(h, "get ghost");
  EXPECT_EQ(rc, 3) << out;

  std::tie(rc, out) = Hostctl(h, "terminate-all --grace 5");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("attempted 4, ok 4, failed 0"));
  std::tie(rc, out) = Hostctl(h, "list --json");
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &list).ok()) << out;
  EXPECT_EQ(list.procs_size(), 0);
  EXPECT_EQ(h.Signal(SIGTERM), 0);
}

// Supervision end to end, through hostctl, with real processes: a one-for-all group
// restarts both procs when one is SIGKILLed; the tree shows them; a requested
// restart hands the state over; a broadcast arrives before data sent after it.
TEST(HostdTest, SupervisionThroughHostctlWithRealProcs) {
  Hostd h;
  auto [rc, out] = Hostctl(h, "group create g --strategy one-for-all --max-restarts 5 --within 60");
  ASSERT_EQ(rc, 0) << out;
  const std::string fast = "--restart always --group g --backoff-initial 0.01 --backoff-max 0.1";
  std::tie(rc, out) = Hostctl(h, absl::StrCat("spawn a ", kTestProc, " ", fast, " -- --echo"));
  ASSERT_EQ(rc, 0) << out;
  std::tie(rc, out) = Hostctl(
      h, absl::StrCat("spawn b ", kTestProc, " ", fast, " -- --state=abc --print-state --log-signals --log-data"));
  ASSERT_EQ(rc, 0) << out;
  auto get = [&](const std::string& name) {
    v1::GetProcRequest req;
    req.set_name(name);
    v1::Proc p;
    grpc::ClientContext ctx;
    EXPECT_TRUE(h.api().GetProc(&ctx, req, &p).ok());
    return p;
  };
  pid_t a1 = get("a").status().pid(), b1 = get("b").status().pid();
  ASSERT_EQ(kill(a1, SIGKILL), 0);
  testing::Eventually([&] {
    return get("a").incarnation() >= 2 && get("b").incarnation() >= 2 &&
           get("b").status().state() == v1::PROC_STATE_READY;
  });
  EXPECT_EQ(get("a").incarnation(), 2);
  EXPECT_EQ(get("b").incarnation(), 2);
  EXPECT_TRUE(AwaitGone(a1));
  EXPECT_TRUE(AwaitGone(b1)) << "one-for-all stopped the sibling before starting it again";
  EXPECT_NE(get("b").status().pid(), b1);

  // Outside the group, a proc of two processes (it forks a grandchild).
  std::tie(rc, out) = Hostctl(h, absl::StrCat("spawn kids ", kTestProc, " -- --grandchild"));
  ASSERT_EQ(rc, 0) << out;
  std::tie(rc, out) = Hostctl(h, "tree --json");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("\"name\":\"g\""));
  EXPECT_THAT(out, HasSubstr("\"rss_bytes\""));
  EXPECT_THAT(out, HasSubstr("\"incarnation\":2"));
  EXPECT_THAT(out, HasSubstr("\"processes\":2")) << "kids: the leader and its grandchild";
  std::tie(rc, out) = Hostctl(h, "tree");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("in 2 processes"));

  std::tie(rc, out) = Hostctl(h, "restart b --handoff");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("incarnation 3"));
  // a cannot hand over state (no --state): it keeps running, exit code 7.
  std::tie(rc, out) = Hostctl(h, "restart a --handoff");
  EXPECT_EQ(rc, 7) << out;
  EXPECT_THAT(out, HasSubstr("keeps running"));
  EXPECT_EQ(get("a").incarnation(), 2);

  std::tie(rc, out) = Hostctl(h, "signal conclude --group g");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("2 procs, 2 delivered"));
  std::tie(rc, out) = Hostctl(h, "send b data after-the-signal");
  ASSERT_EQ(rc, 0) << out;
  v1::StreamLogsRequest logs;
  logs.set_name("b");
  std::string text;
  testing::Eventually([&] {
    text = ReadLogs(h, logs).second;
    return text.find("data after-the-signal") != std::string::npos;
  });
  // The log holds every incarnation's output, in order: two started without state,
  // the third with the state handed over.
  size_t none1 = text.find("initial-state NONE\n");
  ASSERT_NE(none1, std::string::npos) << text;
  size_t none2 = text.find("initial-state NONE\n", none1 + 1);
  ASSERT_NE(none2, std::string::npos) << text;
  size_t abc = text.find("initial-state abc\n");
  ASSERT_NE(abc, std::string::npos) << text;
  EXPECT_GT(abc, none2) << text;
  size_t sig = text.find("signal conclude");
  ASSERT_NE(sig, std::string::npos) << text;
  EXPECT_LT(sig, text.find("data after-the-signal")) << text;
}

// A supervised proc's log holds every incarnation's output, and a follower keeps
// following across its restarts until it gives up; so does `wait --for-good`.
TEST(HostdTest, FollowedLogsAndWaitForGoodSpanEveryIncarnationUntilTheProcGivesUp) {
  Hostd h;
  auto [rc, out] = Hostctl(h, absl::StrCat("spawn phoenix ", kTestProc,
                                           " --restart on-failure --max-restarts 2 --within 60 --backoff-initial 0.01"
                                           " --backoff-max 0.05 -- --print-state --exit-after-ms=200 --exit-code=1"));
  ASSERT_EQ(rc, 0) << out;
  int wait_rc = -1;
  std::string wait_out;
  std::thread waiter([&] { std::tie(wait_rc, wait_out) = Hostctl(h, "wait phoenix --for-good --json"); });
  v1::StreamLogsRequest req;
  req.set_name("phoenix");
  req.set_follow(true);
  auto [s, all] = ReadLogs(h, req);
  waiter.join();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(all, "initial-state NONE\ninitial-state NONE\ninitial-state NONE\n");
  EXPECT_EQ(wait_rc, 7) << wait_out;  // it ended with exit code 1
  EXPECT_THAT(wait_out, HasSubstr("\"incarnation\":3")) << "the wait outlived the first two incarnations";
  // A proc that runs on never ends for good: the wait times out and says so.
  std::tie(rc, out) = Hostctl(h, absl::StrCat("spawn steady ", kTestProc, " --restart always -- --echo"));
  ASSERT_EQ(rc, 0) << out;
  std::tie(rc, out) = Hostctl(h, "wait steady --for-good --wait-timeout 0.3");
  EXPECT_NE(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("had not ended for good by the timeout"));
  v1::GetProcRequest get;
  get.set_name("phoenix");
  v1::Proc p;
  grpc::ClientContext ctx;
  ASSERT_TRUE(h.api().GetProc(&ctx, get, &p).ok());
  EXPECT_EQ(p.incarnation(), 3);
  EXPECT_EQ(p.status().exit_code(), 1);
  EXPECT_FALSE(p.restarting());
  EXPECT_EQ(h.Signal(SIGTERM), 0);
}

TEST(HostdTest, HostctlSaysWhereItLookedWhenHostdIsNotThere) {
  testing::TempDir dir;
  auto [rc, out] = RunShell(absl::StrCat(kHostctl, " --grpc unix:", dir.Join("none.sock"), " --timeout 2 list"));
  EXPECT_EQ(rc, 6);
  EXPECT_THAT(out, HasSubstr(dir.Join("none.sock")));
  EXPECT_THAT(out, HasSubstr("--grpc"));
}

}  // namespace
}  // namespace hostd
