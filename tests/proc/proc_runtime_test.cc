#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/unique_fd.h"
#include "channel/event_loop.h"
#include "channel/listener.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proc/agent.h"
#include "proc/bootstrap.h"
#include "proc/proc_runtime.h"
#include "testing/eventually.h"
#include "testing/status_matchers.h"

namespace hostd::proc {
namespace {

using channel::ChannelAddr;
using channel::Inbox;
using channel::Message;
using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

using ::hostd::testing::HangGuard;

// A proc runtime with a fake host backend: everything the proc sends lands in `host`.
struct RuntimeFixture {
  explicit RuntimeFixture(std::optional<std::string> initial_state = std::nullopt)
      : rt(*ProcRuntime::Start(*loop, {id, ChannelAddr::Local(0), backend->addr(), std::move(initial_state)})),
        to_proc(channel::Sender::Dial(*loop, rt->addr())) {}

  std::unique_ptr<channel::EventLoop> loop = channel::EventLoop::Start("test");
  Inbox host;
  std::unique_ptr<channel::Listener> backend = *channel::Listener::Serve(*loop, ChannelAddr::Local(0), host);
  ProcId id = *ProcId::Parse("unix:@fe,worker");
  std::unique_ptr<ProcRuntime> rt;
  std::unique_ptr<channel::Sender> to_proc;

  absl::Status Tell(absl::string_view port, absl::string_view payload, absl::string_view dest = "") {
    return to_proc->Send(*Message::Create(dest.empty() ? id.ToString() : dest, port, "unix:@fe,client", payload),
                         HangGuard());
  }
};

TEST(ProcRuntimeTest, DispatchesToBoundPortsAndRepliesThroughTheHost) {
  RuntimeFixture f;
  ASSERT_THAT(f.rt->Bind("echo", [&](Message m) { (void)f.rt->Reply(m, "echo.reply", m.payload()); }), IsOk());
  EXPECT_THAT(f.rt->Bind("echo", [](Message) {}), StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_THAT(f.Tell("echo", "hi"), IsOk());
  absl::StatusOr<Message> reply = f.host.Receive(HangGuard());
  ASSERT_THAT(reply, IsOk());
  EXPECT_EQ(reply->dest(), "unix:@fe,client");
  EXPECT_EQ(reply->src(), "unix:@fe,worker");
  EXPECT_EQ(reply->port(), "echo.reply");
  EXPECT_EQ(reply->payload(), "hi");
}

TEST(ProcRuntimeTest, UnknownPortAndWrongDestinationGoBackToTheSender) {
  RuntimeFixture f;
  ASSERT_THAT(f.Tell("nope", "x"), IsOk());
  absl::StatusOr<Message> back = f.host.Receive(HangGuard());
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->kind(), Message::Kind::kReturned);
  EXPECT_EQ(back->reason(), channel::ReturnReason::kUnknownPort);
  EXPECT_EQ(back->dest(), "unix:@fe,client");
  EXPECT_THAT(back->note(), HasSubstr("has no port \"nope\""));

  ASSERT_THAT(f.Tell("echo", "x", "unix:@fe,other"), IsOk());
  back = f.host.Receive(HangGuard());
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->reason(), channel::ReturnReason::kUnroutable);
}

TEST(ProcRuntimeTest, MessagesToItselfAreDispatchedLocally) {
  RuntimeFixture f;
  absl::Notification got;
  ASSERT_THAT(f.rt->Bind("self",
                         [&](Message m) {
                           EXPECT_EQ(m.payload(), "loop");
                           got.Notify();
                         }),
              IsOk());
  ASSERT_THAT(f.rt->Send(*Message::Create(f.id.ToString(), "self", "", "loop")), IsOk());
  EXPECT_TRUE(got.WaitForNotificationWithDeadline(HangGuard()));
  EXPECT_EQ(f.host.size(), 0u);
}

TEST(ProcRuntimeTest, SignalsReachTheLatestHandlerWithNameAndDataApart) {
  RuntimeFixture f;
  absl::Mutex mu;
  std::vector<std::pair<std::string, std::string>> got;
  f.rt->OnSignal([&](absl::string_view, absl::string_view) { ADD_FAILURE() << "a replaced handler ran"; });
  f.rt->OnSignal([&](absl::string_view name, absl::string_view data) {
    absl::MutexLock lock(&mu);
    got.emplace_back(name, data);
  });
  ASSERT_THAT(f.Tell(kSignalPort, "reload\nconfig=v2\nmore"), IsOk());
  ASSERT_THAT(f.Tell(kSignalPort, "drain"), IsOk());
  ASSERT_THAT(f.Tell(kSignalPort, "empty-data\n"), IsOk());
  absl::MutexLock lock(&mu);
  auto all_arrived = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return got.size() == 3; };
  ASSERT_TRUE(mu.AwaitWithDeadline(absl::Condition(&all_arrived), HangGuard()));
  EXPECT_EQ(got[0], std::make_pair(std::string("reload"), std::string("config=v2\nmore")));
  EXPECT_EQ(got[1], std::make_pair(std::string("drain"), std::string()));
  EXPECT_EQ(got[2], std::make_pair(std::string("empty-data"), std::string()));
  EXPECT_EQ(f.rt->signals_received(), 3u);
}

TEST(ProcRuntimeTest, SignalWithoutAHandlerIsCountedAndNotReturned) {
  RuntimeFixture f;
  ASSERT_THAT(f.Tell(kSignalPort, "reload\nx"), IsOk());  // acknowledged once dispatched
  EXPECT_EQ(f.rt->signals_received(), 1u);
  // A bounce would have reached the host before the answer to this ping.
  ASSERT_THAT(f.Tell(kAgentPort, "ping"), IsOk());
  absl::StatusOr<Message> first = f.host.Receive(HangGuard());
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->kind(), Message::Kind::kMessage);
  EXPECT_EQ(first->port(), kAgentReplyPort);
  EXPECT_EQ(first->payload(), "pong");
}

TEST(ProcRuntimeTest, InitialStateComesFromTheOptions) {
  EXPECT_EQ(RuntimeFixture().rt->initial_state(), std::nullopt);
  std::string state("from the last\0incarnation", 25);
  RuntimeFixture f(state);
  ASSERT_TRUE(f.rt->initial_state().has_value());
  EXPECT_EQ(*f.rt->initial_state(), state);
}

TEST(ProcRuntimeTest, InitialStateOverTheLimitFailsTheStart) {
  auto loop = channel::EventLoop::Start("test");
  EXPECT_THAT(
      ProcRuntime::Start(*loop, {*ProcId::Parse("unix:@fe,big"), ChannelAddr::Local(0),
                                 *ChannelAddr::Parse("unix:@hostd-test-nobody"), std::string(kMaxStateBytes + 1, 'x')}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unix:@fe,big")));
}

TEST(ProcRuntimeTest, SaveStateSendsTheBlobToTheHostsStateAddress) {
  RuntimeFixture f;
  EXPECT_THAT(f.rt->SaveState(std::string(kMaxStateBytes + 1, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unix:@fe,worker")));
  std::string blob("snap\nshot\0!", 11);
  ASSERT_THAT(f.rt->SaveState(blob), IsOk());
  absl::StatusOr<Message> saved = f.host.Receive(HangGuard());
  ASSERT_THAT(saved, IsOk());
  EXPECT_EQ(saved->kind(), Message::Kind::kMessage);
  EXPECT_EQ(saved->dest(), "unix:@fe,_host.state");
  EXPECT_EQ(saved->port(), "save");
  EXPECT_EQ(saved->src(), "unix:@fe,worker");
  EXPECT_EQ(saved->payload(), blob) << "the oversize blob was not sent";
  ASSERT_THAT(f.rt->SaveState(std::string(kMaxStateBytes, 'y')), IsOk()) << "the limit itself is allowed";
  saved = f.host.Receive(HangGuard());
  ASSERT_THAT(saved, IsOk());
  EXPECT_EQ(saved->payload().size(), kMaxStateBytes);
}

// The agent's "handoff", answered on agent.reply.
std::string Handoff(RuntimeFixture& f) {
  EXPECT_THAT(f.Tell(kAgentPort, "handoff"), IsOk());
  absl::StatusOr<Message> a = f.host.Receive(HangGuard());
  EXPECT_THAT(a, IsOk());
  if (!a.ok()) return "";
  EXPECT_EQ(a->port(), kAgentReplyPort);
  return std::string(a->payload());
}

TEST(AgentTest, HandoffAnswersWithTheProvidersState) {
  RuntimeFixture f;
  std::string blob("line one\nline\0two", 18);
  std::thread::id provider_thread;
  f.rt->SetStateProvider([&]() -> absl::StatusOr<std::string> {
    provider_thread = std::this_thread::get_id();
    return blob;
  });
  EXPECT_EQ(Handoff(f), "state\n" + blob);
  EXPECT_NE(provider_thread, std::this_thread::get_id()) << "it runs on the loop thread";
  blob = std::string(kMaxStateBytes, 'z');
  EXPECT_EQ(Handoff(f), "state\n" + blob) << "the limit itself is allowed";
}

TEST(AgentTest, HandoffWithoutAProviderIsAnError) {
  RuntimeFixture f;
  EXPECT_EQ(Handoff(f), "error: proc has no state provider");
}

TEST(AgentTest, HandoffWhenTheProviderFailsAnswersWithItsMessage) {
  RuntimeFixture f;
  f.rt->SetStateProvider([]() -> absl::StatusOr<std::string> { return absl::UnavailableError("mid-checkpoint"); });
  EXPECT_EQ(Handoff(f), "error: mid-checkpoint");
}

TEST(AgentTest, HandoffOfAStateOverTheLimitIsRefused) {
  RuntimeFixture f;
  f.rt->SetStateProvider([]() -> absl::StatusOr<std::string> { return std::string(kMaxStateBytes + 1, 'x'); });
  std::string answer = Handoff(f);
  EXPECT_THAT(answer, StartsWith("error: "));
  EXPECT_THAT(answer, HasSubstr(absl::StrCat(kMaxStateBytes + 1, " bytes")));
}

TEST(AgentTest, PingStatusStopAndUnknownCommands) {
  RuntimeFixture f;
  std::map<std::string, std::string> answers;
  for (const char* cmd : {"ping", "status", "dance", "stop draining"}) {
    ASSERT_THAT(f.Tell(kAgentPort, cmd), IsOk());
    absl::StatusOr<Message> a = f.host.Receive(HangGuard());
    ASSERT_THAT(a, IsOk());
    EXPECT_EQ(a->port(), kAgentReplyPort);
    answers[cmd] = std::string(a->payload());
  }
  EXPECT_EQ(answers["ping"], "pong");
  EXPECT_THAT(answers["status"], StartsWith("running unix:@fe,worker pid="));
  EXPECT_THAT(answers["dance"], HasSubstr("unknown agent command \"dance\""));
  EXPECT_EQ(answers["stop draining"], "stopping");
  absl::StatusOr<std::string> reason = f.rt->WaitForStopRequest(HangGuard());
  ASSERT_THAT(reason, IsOk());
  EXPECT_EQ(*reason, "draining");
}

TEST(BootstrapTest, EnvironmentIsValidatedNamingTheVariable) {
  std::map<std::string, std::string> env;
  auto get = [&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  EXPECT_THAT(ReadBootstrapEnv(get),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HOSTD_PROC_ID is not set")));
  env[kEnvProcId] = "unix:@fe,bad name";
  EXPECT_THAT(ReadBootstrapEnv(get), StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("HOSTD_PROC_ID=\"unix:@fe,bad name\" is invalid")));
  env[kEnvProcId] = "unix:@fe,w";
  EXPECT_THAT(ReadBootstrapEnv(get),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HOSTD_HOST_BACKEND is not set")));
  env[kEnvHostBackend] = "unix:";
  EXPECT_THAT(ReadBootstrapEnv(get), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dialable")));
  env[kEnvHostBackend] = "unix:@host-backend";
  env[kEnvReadyFd] = "999";
  EXPECT_THAT(ReadBootstrapEnv(get), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HOSTD_READY_FD=\"999\"")));
  env.erase(kEnvReadyFd);
  env[kEnvListen] = "tcp:Nowhere:1";  // host names are lower case
  EXPECT_THAT(ReadBootstrapEnv(get), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HOSTD_LISTEN")));
  env.erase(kEnvListen);
  absl::StatusOr<BootstrapEnv> ok = ReadBootstrapEnv(get);
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(ok->id.name(), "w");
  EXPECT_EQ(ok->listen.ToString(), "unix:");
}

// A fake environment for BootstrapProc: a proc that reports no readiness.
struct FakeEnv {
  std::map<std::string, std::string> vars = {
      {kEnvProcId, "unix:@fe,w"}, {kEnvHostBackend, "unix:@hostd-test-nobody"}, {kEnvListen, "local:0"}};
  GetEnv get() {
    return [this](const char* name) -> const char* {
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

// How many of this process's descriptors are the memfd called `name`.
int DescriptorsOf(const std::string& name) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    std::string target = std::filesystem::read_symlink(e.path(), ec).string();
    if (!ec && target.find("memfd:" + name) != std::string::npos) ++n;
  }
  return n;
}

base::UniqueFd MemfdWith(const std::string& name, const std::string& bytes) {
  base::UniqueFd fd(::memfd_create(name.c_str(), MFD_CLOEXEC));
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(::write(fd.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  EXPECT_EQ(::lseek(fd.get(), 0, SEEK_SET), 0);
  return fd;
}

TEST(BootstrapTest, StateDescriptorIsReadToEofClosedAndHandedToTheRuntime) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  base::UniqueFd read_end(p[0]), write_end(p[1]);
  std::string state("handed\nover\0state", 18);
  ASSERT_EQ(::write(write_end.get(), state.data(), state.size()), static_cast<ssize_t>(state.size()));
  write_end.reset();
  FakeEnv env;
  env.vars[kEnvStateFd] = absl::StrCat(read_end.get());
  absl::StatusOr<BootedProc> proc = BootstrapProc(nullptr, env.get());
  prctl(PR_SET_PDEATHSIG, 0);
  ASSERT_THAT(proc, IsOk());
  (void)read_end.release();  // the bootstrap owns it now
  ASSERT_TRUE(proc->runtime->initial_state().has_value());
  EXPECT_EQ(*proc->runtime->initial_state(), state);

  base::UniqueFd memfd = MemfdWith("hostd-test-state", "from a memfd");
  env.vars[kEnvStateFd] = absl::StrCat(memfd.get());
  env.vars[kEnvProcId] = "unix:@fe,w2";
  absl::StatusOr<BootedProc> second = BootstrapProc(nullptr, env.get());
  prctl(PR_SET_PDEATHSIG, 0);
  ASSERT_THAT(second, IsOk());
  (void)memfd.release();
  EXPECT_EQ(second->runtime->initial_state(), "from a memfd");
  EXPECT_EQ(DescriptorsOf("hostd-test-state"), 0) << "the bootstrap closed it";

  env.vars.erase(kEnvStateFd);
  env.vars[kEnvProcId] = "unix:@fe,w3";
  absl::StatusOr<BootedProc> none = BootstrapProc(nullptr, env.get());
  prctl(PR_SET_PDEATHSIG, 0);
  ASSERT_THAT(none, IsOk());
  EXPECT_EQ(none->runtime->initial_state(), std::nullopt);
}

TEST(BootstrapTest, StateDescriptorOverTheLimitOrUnreadableFailsNamingTheVariable) {
  base::UniqueFd big = MemfdWith("hostd-test-big-state", std::string(kMaxStateBytes + 1, 'x'));
  FakeEnv env;
  env.vars[kEnvStateFd] = absl::StrCat(big.get());
  EXPECT_THAT(BootstrapProc(nullptr, env.get()),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("HOSTD_STATE_FD"), HasSubstr("over"))));
  prctl(PR_SET_PDEATHSIG, 0);
  (void)big.release();
  EXPECT_EQ(DescriptorsOf("hostd-test-big-state"), 0) << "closed on failure too";

  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  base::UniqueFd read_end(p[0]), write_end(p[1]);
  env.vars[kEnvStateFd] = absl::StrCat(write_end.get());  // open, but not for reading
  EXPECT_THAT(
      BootstrapProc(nullptr, env.get()),
      StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("HOSTD_STATE_FD"), HasSubstr("cannot read"))));
  prctl(PR_SET_PDEATHSIG, 0);
  (void)write_end.release();

  env.vars[kEnvStateFd] = "999";
  EXPECT_THAT(ReadBootstrapEnv(env.get()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HOSTD_STATE_FD=\"999\"")));
  env.vars[kEnvStateFd] = "four";
  EXPECT_THAT(ReadBootstrapEnv(env.get()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a descriptor number")));
}

TEST(BootstrapTest, ParentDeathSignalRechecksTheParent) {
  EXPECT_THAT(ArmParentDeathSignal(getppid()), IsOk());
  EXPECT_THAT(ArmParentDeathSignal(getppid() + 100000),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("exited before")));
  prctl(PR_SET_PDEATHSIG, 0);
}

}  // namespace
}  // namespace hostd::proc
