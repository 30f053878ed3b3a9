#include <sys/prctl.h>

#include <map>
#include <string>

#include "absl/synchronization/notification.h"
#include "channel/event_loop.h"
#include "channel/listener.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proc/agent.h"
#include "proc/bootstrap.h"
#include "proc/proc_runtime.h"
#include "testing/status_matchers.h"

namespace hostd::proc {
namespace {

using channel::ChannelAddr;
using channel::Inbox;
using channel::Message;
using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

absl::Time Guard() { return absl::Now() + absl::Seconds(60); }

// A proc runtime with a fake host backend: everything the proc sends lands in `host`.
struct RuntimeFixture {
  std::unique_ptr<channel::EventLoop> loop = channel::EventLoop::Start("test");
  Inbox host;
  std::unique_ptr<channel::Listener> backend = *channel::Listener::Serve(*loop, ChannelAddr::Local(0), host);
  ProcId id = *ProcId::Parse("unix:@fe,worker");
  std::unique_ptr<ProcRuntime> rt = *ProcRuntime::Start(*loop, {id, ChannelAddr::Local(0), backend->addr()});
  std::unique_ptr<channel::Sender> to_proc = channel::Sender::Dial(*loop, rt->addr());

  absl::Status Tell(absl::string_view port, absl::string_view payload, absl::string_view dest = "") {
    return to_proc->Send(*Message::Create(dest.empty() ? id.ToString() : dest, port, "unix:@fe,client", payload), Guard());
  }
};

TEST(ProcRuntimeTest, DispatchesToBoundPortsAndRepliesThroughTheHost) {
  RuntimeFixture f;
  ASSERT_THAT(f.rt->Bind("echo", [&](Message m) { (void)f.rt->Reply(m, "echo.reply", m.payload()); }), IsOk());
  EXPECT_THAT(f.rt->Bind("echo", [](Message) {}), StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_THAT(f.Tell("echo", "hi"), IsOk());
  absl::StatusOr<Message> reply = f.host.Receive(Guard());
  ASSERT_THAT(reply, IsOk());
  EXPECT_EQ(reply->dest(), "unix:@fe,client");
  EXPECT_EQ(reply->src(), "unix:@fe,worker");
  EXPECT_EQ(reply->port(), "echo.reply");
  EXPECT_EQ(reply->payload(), "hi");
}

TEST(ProcRuntimeTest, UnknownPortAndWrongDestinationGoBackToTheSender) {
  RuntimeFixture f;
  ASSERT_THAT(f.Tell("nope", "x"), IsOk());
  absl::StatusOr<Message> back = f.host.Receive(Guard());
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->kind(), Message::Kind::kReturned);
  EXPECT_EQ(back->reason(), channel::ReturnReason::kUnknownPort);
  EXPECT_EQ(back->dest(), "unix:@fe,client");
  EXPECT_THAT(back->note(), HasSubstr("has no port \"nope\""));

  ASSERT_THAT(f.Tell("echo", "x", "unix:@fe,other"), IsOk());
  back = f.host.Receive(Guard());
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->reason(), channel::ReturnReason::kUnroutable);
}

TEST(ProcRuntimeTest, MessagesToItselfAreDispatchedLocally) {
  RuntimeFixture f;
  absl::Notification got;
  ASSERT_THAT(f.rt->Bind("self", [&](Message m) {
    EXPECT_EQ(m.payload(), "loop");
    got.Notify();
  }), IsOk());
  ASSERT_THAT(f.rt->Send(*Message::Create(f.id.ToString(), "self", "", "loop")), IsOk());
  EXPECT_TRUE(got.WaitForNotificationWithDeadline(Guard()));
  EXPECT_EQ(f.host.size(), 0u);
}

TEST(AgentTest, PingStatusStopAndUnknownCommands) {
  RuntimeFixture f;
  std::map<std::string, std::string> answers;
  for (const char* cmd : {"ping", "status", "dance", "stop draining"}) {
    ASSERT_THAT(f.Tell(kAgentPort, cmd), IsOk());
    absl::StatusOr<Message> a = f.host.Receive(Guard());
    ASSERT_THAT(a, IsOk());
    EXPECT_EQ(a->port(), kAgentReplyPort);
    answers[cmd] = std::string(a->payload());
  }
  EXPECT_EQ(answers["ping"], "pong");
  EXPECT_THAT(answers["status"], StartsWith("running unix:@fe,worker pid="));
  EXPECT_THAT(answers["dance"], HasSubstr("unknown agent command \"dance\""));
  EXPECT_EQ(answers["stop draining"], "stopping");
  absl::StatusOr<std::string> reason = f.rt->WaitForStopRequest(Guard());
  ASSERT_THAT(reason, IsOk());
  EXPECT_EQ(*reason, "draining");
}

TEST(BootstrapTest, EnvironmentIsValidatedNamingTheVariable) {
  std::map<std::string, std::string> env;
  auto get = [&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  EXPECT_THAT(ReadBootstrapEnv(get), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HOSTD_PROC_ID is not set")));
  env[kEnvProcId] = "unix:@fe,bad name";
  EXPECT_THAT(ReadBootstrapEnv(get),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HOSTD_PROC_ID=\"unix:@fe,bad name\" is invalid")));
  env[kEnvProcId] = "unix:@fe,w";
  EXPECT_THAT(ReadBootstrapEnv(get), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HOSTD_HOST_BACKEND is not set")));
  env[kEnvHostBackend] = "unix:";
  EXPECT_THAT(ReadBootstrapEnv(get), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dialable")));
  env[kEnvHostBackend] = "unix:@host-backend";
  env[kEnvReadyFd] = "999";
  EXPECT_THAT(ReadBootstrapEnv(get), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HOSTD_READY_FD=\"999\"")));
  env.erase(kEnvReadyFd);
  env[kEnvListen] = "tcp:nowhere:1";
  EXPECT_THAT(ReadBootstrapEnv(get), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HOSTD_LISTEN")));
  env.erase(kEnvListen);
  absl::StatusOr<BootstrapEnv> ok = ReadBootstrapEnv(get);
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(ok->id.name(), "w");
  EXPECT_EQ(ok->listen.ToString(), "unix:");
}

TEST(BootstrapTest, ParentDeathSignalRechecksTheParent) {
  EXPECT_THAT(ArmParentDeathSignal(getppid()), IsOk());
  EXPECT_THAT(ArmParentDeathSignal(getppid() + 100000),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("exited before")));
  prctl(PR_SET_PDEATHSIG, 0);
}

}  // namespace
}  // namespace hostd::proc
