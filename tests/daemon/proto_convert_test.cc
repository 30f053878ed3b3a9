#include <string>

#include "daemon/proto_convert.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace hostd::daemon {
namespace {

using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

google::protobuf::Duration Dur(int64_t s, int32_t ns = 0) {
  google::protobuf::Duration d;
  d.set_seconds(s);
  d.set_nanos(ns);
  return d;
}

proc::ProcId Id(const std::string& name) { return *proc::ProcId::Create(channel::ChannelAddr::Local(1), name); }

// ---- status and time ----

TEST(ProtoConvertTest, ToGrpcKeepsCodeAndMessage) {
  grpc::Status g = ToGrpc(absl::NotFoundError("no proc named \"x\""));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(g.error_message(), "no proc named \"x\"");
  EXPECT_TRUE(ToGrpc(absl::OkStatus()).ok());
  EXPECT_EQ(ToGrpc(absl::ResourceExhaustedError("full")).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST(ProtoConvertTest, TimeBecomesSecondsAndNanosAndInfiniteTimesStayUnset) {
  google::protobuf::Timestamp ts;
  ToProto(absl::FromUnixNanos(1700000000123456789), &ts);
  EXPECT_EQ(ts.seconds(), 1700000000);
  EXPECT_EQ(ts.nanos(), 123456789);
  google::protobuf::Timestamp unset;
  ToProto(absl::InfinitePast(), &unset);
  ToProto(absl::InfiniteFuture(), &unset);
  EXPECT_EQ(unset.seconds(), 0);
  EXPECT_EQ(unset.nanos(), 0);
}

TEST(ProtoConvertTest, DurationRoundTrips) {
  google::protobuf::Duration d;
  ToProto(absl::Milliseconds(2500), &d);
  EXPECT_EQ(d.seconds(), 2);
  EXPECT_EQ(d.nanos(), 500000000);
  EXPECT_THAT(FromProto(d, true, absl::ZeroDuration(), "f"), IsOk());
  EXPECT_EQ(*FromProto(d, true, absl::ZeroDuration(), "f"), absl::Milliseconds(2500));
}

TEST(ProtoConvertTest, UnsetDurationTakesTheFallback) {
  EXPECT_EQ(*FromProto(Dur(99), false, absl::Seconds(7), "f"), absl::Seconds(7));
}

TEST(ProtoConvertTest, NegativeDurationIsRefusedNamingTheField) {
  EXPECT_THAT(FromProto(Dur(-1), true, absl::ZeroDuration(), "spec.ready_timeout"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "spec.ready_timeout: a duration must not be negative (got -1s 0ns)"));
  EXPECT_THAT(FromProto(Dur(0, -5), true, absl::ZeroDuration(), "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must not be negative (got 0s -5ns)")));
  EXPECT_THAT(FromProto(Dur(0, 1000000000), true, absl::ZeroDuration(), "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x: a duration")));
}

TEST(ProtoConvertTest, DurationOverTheLimitIsRefused) {
  EXPECT_THAT(FromProto(Dur(24 * 3600), true, absl::ZeroDuration(), "x"), IsOk());
  EXPECT_THAT(FromProto(Dur(24 * 3600 + 1), true, absl::ZeroDuration(), "within"),
              StatusIs(absl::StatusCode::kInvalidArgument, "within: 24h1s is longer than the limit of 24h"));
}

// ---- procs ----

TEST(ProtoConvertTest, EveryProcStateHasItsProtoValue) {
  EXPECT_EQ(ToProto(proc::ProcState::kStarting), v1::PROC_STATE_STARTING);
  EXPECT_EQ(ToProto(proc::ProcState::kRunning), v1::PROC_STATE_RUNNING);
  EXPECT_EQ(ToProto(proc::ProcState::kReady), v1::PROC_STATE_READY);
  EXPECT_EQ(ToProto(proc::ProcState::kStopping), v1::PROC_STATE_STOPPING);
  EXPECT_EQ(ToProto(proc::ProcState::kStopped), v1::PROC_STATE_STOPPED);
  EXPECT_EQ(ToProto(proc::ProcState::kKilled), v1::PROC_STATE_KILLED);
  EXPECT_EQ(ToProto(proc::ProcState::kFailed), v1::PROC_STATE_FAILED);
}

TEST(ProtoConvertTest, ProcStatusCarriesEveryField) {
  proc::ProcStatus s = proc::ProcStatus::Killed(9, true, "boom\n");
  s.pid = 42;
  s.started_at = absl::FromUnixSeconds(100);
  s.ready_at = absl::FromUnixSeconds(101);
  s.addr = *channel::ChannelAddr::Parse("unix:@p");
  v1::ProcStatus out;
  ToProto(s, &out);
  EXPECT_EQ(out.state(), v1::PROC_STATE_KILLED);
  EXPECT_EQ(out.pid(), 42);
  EXPECT_EQ(out.started_at().seconds(), 100);
  EXPECT_EQ(out.ready_at().seconds(), 101);
  EXPECT_EQ(out.addr(), "unix:@p");
  EXPECT_EQ(out.signal(), 9);
  EXPECT_TRUE(out.core_dumped());
  EXPECT_EQ(out.stderr_tail(), "boom\n");
  EXPECT_EQ(out.display(), s.ToString());

  v1::ProcStatus stopped;
  ToProto(proc::ProcStatus::Stopped(7), &stopped);
  EXPECT_EQ(stopped.exit_code(), 7);
  EXPECT_EQ(stopped.ready_at().seconds(), 0) << "never ready: no time";
  EXPECT_EQ(stopped.ready_at().nanos(), 0);
  EXPECT_TRUE(stopped.addr().empty());
  v1::ProcStatus failed;
  ToProto(proc::ProcStatus::Failed("no such program"), &failed);
  EXPECT_EQ(failed.reason(), "no such program");
}

TEST(ProtoConvertTest, ProcInfoCarriesEveryField) {
  ProcInfo p{.name = "trainer", .id = Id("trainer")};
  p.status = proc::ProcStatus::Stopped(0);
  p.labels = {{"team", "ml"}};
  p.program = "/bin/train";
  p.args = {"--fast", "x"};
  p.created_at = absl::FromUnixSeconds(10);
  p.incarnation = 3;
  p.incarnation_started = absl::FromUnixSeconds(20);
  p.supervision.restart.mode = manager::RestartMode::kAlways;
  p.groups = {"top", "inner"};
  p.restarting = true;
  p.saved_state_bytes = 12;
  v1::Proc out;
  ToProto(p, &out);
  EXPECT_EQ(out.name(), "trainer");
  EXPECT_EQ(out.proc_id(), p.id.ToString());
  EXPECT_EQ(out.status().state(), v1::PROC_STATE_STOPPED);
  EXPECT_THAT(out.labels(), ElementsAre(Pair("team", "ml")));
  EXPECT_EQ(out.program(), "/bin/train");
  EXPECT_THAT(out.args(), ElementsAre("--fast", "x"));
  EXPECT_EQ(out.created_at().seconds(), 10);
  EXPECT_EQ(out.incarnation(), 3);
  EXPECT_EQ(out.incarnation_started_at().seconds(), 20);
  EXPECT_EQ(out.restart().mode(), v1::RESTART_MODE_ALWAYS);
  EXPECT_THAT(out.groups(), ElementsAre("top", "inner"));
  EXPECT_TRUE(out.restarting());
  EXPECT_EQ(out.saved_state_bytes(), 12u);
}

TEST(ProtoConvertTest, HostEventCarriesItsKindAndDetails) {
  const std::pair<HostEvent::Kind, v1::ProcEvent::Kind> kinds[] = {
      {HostEvent::Kind::kSnapshot, v1::ProcEvent::KIND_SNAPSHOT},
      {HostEvent::Kind::kSpawned, v1::ProcEvent::KIND_SPAWNED},
      {HostEvent::Kind::kTransition, v1::ProcEvent::KIND_TRANSITION},
      {HostEvent::Kind::kSpawnFailed, v1::ProcEvent::KIND_SPAWN_FAILED},
      {HostEvent::Kind::kRemoved, v1::ProcEvent::KIND_REMOVED},
      {HostEvent::Kind::kRestarting, v1::ProcEvent::KIND_RESTARTING},
      {HostEvent::Kind::kRestarted, v1::ProcEvent::KIND_RESTARTED},
      {HostEvent::Kind::kGaveUp, v1::ProcEvent::KIND_GAVE_UP},
      {HostEvent::Kind::kRestartFailed, v1::ProcEvent::KIND_RESTART_FAILED},
      {HostEvent::Kind::kTerminated, v1::ProcEvent::KIND_TERMINATED},
  };
  for (auto [kind, want] : kinds) {
    HostEvent e;
    e.kind = kind;
    v1::ProcEvent out;
    ToProto(e, &out);
    EXPECT_EQ(out.kind(), want) << static_cast<int>(kind);
  }
  HostEvent e;
  e.seq = 5;
  e.kind = HostEvent::Kind::kRestarting;
  e.name = "w";
  e.status = proc::ProcStatus::Stopped(1);
  e.at = absl::FromUnixSeconds(30);
  e.incarnation = 2;
  e.groups = {"g"};
  e.attempt = 4;
  e.delay = absl::Milliseconds(1500);
  e.start_failed = true;
  e.detail = "exited with 1";
  v1::ProcEvent out;
  ToProto(e, &out);
  EXPECT_EQ(out.seq(), 5u);
  EXPECT_EQ(out.name(), "w");
  EXPECT_EQ(out.status().exit_code(), 1);
  EXPECT_EQ(out.at().seconds(), 30);
  EXPECT_EQ(out.incarnation(), 2);
  EXPECT_THAT(out.groups(), ElementsAre("g"));
  EXPECT_EQ(out.attempt(), 4);
  EXPECT_EQ(out.delay().seconds(), 1);
  EXPECT_EQ(out.delay().nanos(), 500000000);
  EXPECT_TRUE(out.start_failed());
  EXPECT_EQ(out.detail(), "exited with 1");
}

TEST(ProtoConvertTest, GroupEventHasNoStatusAndOnlyRestartingHasADelay) {
  HostEvent e;
  e.kind = HostEvent::Kind::kGaveUp;
  e.is_group = true;
  e.delay = absl::Seconds(3);
  v1::ProcEvent out;
  ToProto(e, &out);
  EXPECT_TRUE(out.is_group());
  EXPECT_FALSE(out.has_status());
  EXPECT_FALSE(out.has_delay());
}

// ---- spawn specs ----

TEST(ProtoConvertTest, SpawnSpecCarriesEveryField) {
  v1::ProcSpec spec;
  spec.set_program("/bin/echo");
  spec.add_args("a");
  spec.add_args("b");
  auto* env = spec.add_env();
  env->set_name("K");
  env->set_value("v=1");
  spec.add_inherit_env("TERM");
  spec.set_cwd("/tmp");
  spec.set_readiness(v1::READINESS_MODE_NOTIFY);
  *spec.mutable_ready_timeout() = Dur(3);
  absl::StatusOr<manager::SpawnSpec> out = FromProto(spec);
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->program, "/bin/echo");
  EXPECT_THAT(out->args, ElementsAre("a", "b"));
  EXPECT_THAT(out->env, ElementsAre(Pair("K", "v=1")));
  EXPECT_THAT(out->inherit_env, ElementsAre("TERM"));
  EXPECT_EQ(out->cwd, "/tmp");
  EXPECT_EQ(out->readiness, manager::ReadinessMode::kNotify);
  EXPECT_EQ(out->ready_timeout, absl::Seconds(3));
}

TEST(ProtoConvertTest, SpawnSpecDefaults) {
  v1::ProcSpec spec;
  spec.set_program("x");
  absl::StatusOr<manager::SpawnSpec> out = FromProto(spec);
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->readiness, manager::ReadinessMode::kHandshake);
  EXPECT_EQ(out->ready_timeout, absl::Seconds(30));
  EXPECT_EQ(out->inherit_env, manager::SpawnSpec().inherit_env) << "no inherit_env given: the manager's default";
  spec.set_readiness(v1::READINESS_MODE_EXEC);
  EXPECT_EQ(FromProto(spec)->readiness, manager::ReadinessMode::kExec);
  spec.set_readiness(v1::READINESS_MODE_HANDSHAKE);
  EXPECT_EQ(FromProto(spec)->readiness, manager::ReadinessMode::kHandshake);
}

TEST(ProtoConvertTest, SpawnSpecWithoutProgramIsRefused) {
  EXPECT_THAT(FromProto(v1::ProcSpec()),
              StatusIs(absl::StatusCode::kInvalidArgument, "spec.program: required (a path or a name in PATH)"));
}

TEST(ProtoConvertTest, SpawnSpecWithTooManyArgsIsRefused) {
  v1::ProcSpec spec;
  spec.set_program("x");
  for (size_t i = 0; i <= kMaxArgs; ++i) spec.add_args("a");
  EXPECT_THAT(FromProto(spec), StatusIs(absl::StatusCode::kInvalidArgument, "spec.args: 4097 arguments; at most 4096"));
}

TEST(ProtoConvertTest, SpawnSpecOverTheSizeLimitIsRefused) {
  v1::ProcSpec spec;
  spec.set_program("x");
  spec.add_args(std::string(kMaxSpecBytes, 'a'));
  EXPECT_THAT(FromProto(spec), StatusIs(absl::StatusCode::kInvalidArgument,
                                        "spec: 1048577 bytes of program, args and env; at most 1048576"));
}

TEST(ProtoConvertTest, SpawnSpecWithBadEnvNameIsRefused) {
  for (const std::string& name : {std::string(""), std::string("A=B")}) {
    v1::ProcSpec spec;
    spec.set_program("x");
    spec.add_env()->set_name(name);
    EXPECT_THAT(FromProto(spec),
                StatusIs(absl::StatusCode::kInvalidArgument, "spec.env: \"" + name + "\" is not a variable name"));
  }
}

TEST(ProtoConvertTest, SpawnSpecWithNulInProgramOrCwdIsRefused) {
  v1::ProcSpec spec;
  spec.set_program(std::string("x\0y", 3));
  EXPECT_THAT(FromProto(spec),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.program: \"x\\x00y\" contains a NUL byte")));
  spec.set_program("x");
  spec.set_cwd(std::string("/t\0", 3));
  EXPECT_THAT(FromProto(spec), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.cwd: ")));
}

TEST(ProtoConvertTest, SpawnSpecWithUnknownReadinessOrBadTimeoutIsRefused) {
  v1::ProcSpec spec;
  spec.set_program("x");
  spec.set_readiness(static_cast<v1::ReadinessMode>(77));
  EXPECT_THAT(FromProto(spec), StatusIs(absl::StatusCode::kInvalidArgument, "spec.readiness: unknown mode 77"));
  spec.set_readiness(v1::READINESS_MODE_EXEC);
  *spec.mutable_ready_timeout() = Dur(-3);
  EXPECT_THAT(FromProto(spec), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.ready_timeout: ")));
}

// ---- names ----

TEST(ProtoConvertTest, ValidNamesPassAndBadOnesNameTheField) {
  EXPECT_THAT(ValidateName("trainer-3.a_b"), IsOk());
  EXPECT_THAT(ValidateName(""),
              StatusIs(absl::StatusCode::kInvalidArgument, "name: invalid proc name \"\": it is empty"));
  EXPECT_THAT(ValidateName("-x"), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("name: invalid proc name \"-x\": it must start with a letter")));
  EXPECT_THAT(ValidateName("a b"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("' ' is not allowed")));
  EXPECT_THAT(ValidateName(std::string(1000, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("it is 1000 characters")));
}

// ---- supervision ----

TEST(ProtoConvertTest, RestartPolicyRoundTrips) {
  manager::RestartPolicy p;
  p.mode = manager::RestartMode::kOnFailure;
  p.max_restarts = 9;
  p.within = absl::Seconds(60);
  p.backoff = {absl::Milliseconds(250), absl::Seconds(8), 3.0, 0.5};
  v1::RestartPolicy proto;
  ToProto(p, &proto);
  EXPECT_EQ(proto.mode(), v1::RESTART_MODE_ON_FAILURE);
  absl::StatusOr<manager::RestartPolicy> back = FromProto(proto, true);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->mode, p.mode);
  EXPECT_EQ(back->max_restarts, 9);
  EXPECT_EQ(back->within, absl::Seconds(60));
  EXPECT_EQ(back->backoff.initial, absl::Milliseconds(250));
  EXPECT_EQ(back->backoff.max, absl::Seconds(8));
  EXPECT_EQ(back->backoff.multiplier, 3.0);
  EXPECT_EQ(back->backoff.jitter, 0.5);
  for (auto [mode, want] : {std::pair{manager::RestartMode::kNever, v1::RESTART_MODE_NEVER},
                            std::pair{manager::RestartMode::kAlways, v1::RESTART_MODE_ALWAYS}}) {
    p.mode = mode;
    ToProto(p, &proto);
    EXPECT_EQ(proto.mode(), want);
    EXPECT_EQ(FromProto(proto, true)->mode, mode);
  }
}

TEST(ProtoConvertTest, RestartPolicyUnsetOrEmptyTakesTheDefaults) {
  manager::RestartPolicy defaults;
  for (bool present : {false, true}) {
    absl::StatusOr<manager::RestartPolicy> p = FromProto(v1::RestartPolicy(), present);
    ASSERT_THAT(p, IsOk());
    EXPECT_EQ(p->mode, manager::RestartMode::kNever);
    EXPECT_EQ(p->max_restarts, defaults.max_restarts);
    EXPECT_EQ(p->within, defaults.within);
    EXPECT_EQ(p->backoff.initial, defaults.backoff.initial);
    EXPECT_EQ(p->backoff.multiplier, defaults.backoff.multiplier);
    EXPECT_EQ(p->backoff.jitter, defaults.backoff.jitter);
  }
}

TEST(ProtoConvertTest, BadRestartPoliciesAreRefusedNamingTheField) {
  v1::RestartPolicy p;
  p.set_mode(static_cast<v1::RestartMode>(42));
  EXPECT_THAT(FromProto(p, true), StatusIs(absl::StatusCode::kInvalidArgument, "restart.mode: unknown mode 42"));
  p = v1::RestartPolicy();
  *p.mutable_within() = Dur(-1);
  EXPECT_THAT(FromProto(p, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("restart.within: a duration")));
  p = v1::RestartPolicy();
  *p.mutable_backoff()->mutable_initial() = Dur(-1);
  EXPECT_THAT(FromProto(p, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("restart.backoff.initial: a duration")));
  p = v1::RestartPolicy();
  *p.mutable_backoff()->mutable_max() = Dur(25 * 3600);
  EXPECT_THAT(FromProto(p, true), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("restart.backoff.max: 25h")));
  // The policy's limits (backoff order, multiplier, jitter) are Host::Spawn's to
  // check (HostTest.BadSpawnInputIsRefusedOnceAtTheHost).
}

TEST(ProtoConvertTest, CreateGroupRequestCarriesEveryFieldAndDefaults) {
  v1::CreateGroupRequest req;
  req.set_parent("top");
  req.set_strategy(v1::STRATEGY_REST_FOR_ONE);
  req.set_max_restarts(7);
  *req.mutable_within() = Dur(9);
  *req.mutable_backoff()->mutable_initial() = Dur(2);
  absl::StatusOr<GroupSpec> g = FromProto(req);
  ASSERT_THAT(g, IsOk());
  EXPECT_EQ(g->parent, "top");
  EXPECT_EQ(g->strategy, Strategy::kRestForOne);
  EXPECT_EQ(g->max_restarts, 7);
  EXPECT_EQ(g->within, absl::Seconds(9));
  EXPECT_EQ(g->backoff.initial, absl::Seconds(2));

  absl::StatusOr<GroupSpec> d = FromProto(v1::CreateGroupRequest());
  ASSERT_THAT(d, IsOk());
  GroupSpec defaults;
  EXPECT_EQ(d->strategy, Strategy::kOneForOne);
  EXPECT_EQ(d->max_restarts, defaults.max_restarts);
  EXPECT_EQ(d->within, defaults.within);
  req.set_strategy(v1::STRATEGY_ONE_FOR_ALL);
  EXPECT_EQ(FromProto(req)->strategy, Strategy::kOneForAll);
}

TEST(ProtoConvertTest, BadCreateGroupRequestsAreRefusedNamingTheField) {
  v1::CreateGroupRequest req;
  req.set_strategy(static_cast<v1::Strategy>(9));
  EXPECT_THAT(FromProto(req), StatusIs(absl::StatusCode::kInvalidArgument, "strategy: unknown strategy 9"));
  req = v1::CreateGroupRequest();
  *req.mutable_within() = Dur(-2);
  EXPECT_THAT(FromProto(req), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("within: a duration")));
  req = v1::CreateGroupRequest();
  *req.mutable_backoff()->mutable_max() = Dur(-2);
  EXPECT_THAT(FromProto(req), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("backoff.max: a duration")));
}

TEST(ProtoConvertTest, GroupInfoCarriesEveryField) {
  GroupInfo g;
  g.name = "web";
  g.spec.parent = "top";
  g.spec.within = absl::Seconds(4);
  g.spec.max_restarts = 2;
  g.restarts = 3;
  g.gave_up = true;
  g.why = "3 restarts within 4s";
  for (auto [strategy, want] : {std::pair{Strategy::kOneForOne, v1::STRATEGY_ONE_FOR_ONE},
                                std::pair{Strategy::kOneForAll, v1::STRATEGY_ONE_FOR_ALL},
                                std::pair{Strategy::kRestForOne, v1::STRATEGY_REST_FOR_ONE}}) {
    g.spec.strategy = strategy;
    v1::Group out;
    ToProto(g, &out);
    EXPECT_EQ(out.strategy(), want);
    EXPECT_EQ(out.name(), "web");
    EXPECT_EQ(out.parent(), "top");
    EXPECT_EQ(out.max_restarts(), 2);
    EXPECT_EQ(out.within().seconds(), 4);
    EXPECT_EQ(out.restarts(), 3);
    EXPECT_TRUE(out.gave_up());
    EXPECT_EQ(out.why(), "3 restarts within 4s");
  }
}

TEST(ProtoConvertTest, TreeNodeCarriesGroupsProcsUsageAndUptimeWithoutItsChildren) {
  absl::Time now = absl::FromUnixSeconds(1000);
  TreeNode root;
  root.is_group = true;
  root.group.name = "top";
  TreeNode live;
  ProcInfo p{.name = "a", .id = Id("a")};
  p.status = proc::ProcStatus::Running(5, now - absl::Seconds(30));
  p.incarnation_started = now - absl::Seconds(30);
  live.proc = p;
  live.usage = {.known = true, .processes = 2, .cpu_seconds = 1.5, .rss_bytes = 4096};
  TreeNode ended;
  p.name = "b";
  p.status = proc::ProcStatus::Stopped(0);
  ended.proc = p;
  root.children = {live, ended};
  v1::TreeNode out;
  ToProto(root, now, &out);
  EXPECT_EQ(out.group().name(), "top");
  EXPECT_EQ(out.children_size(), 0) << "the node alone: GetTree adds the children within its reply budget";
  v1::TreeNode a;
  ToProto(live, now, &a);
  EXPECT_EQ(a.proc().name(), "a");
  EXPECT_EQ(a.processes(), 2);
  EXPECT_EQ(a.cpu_seconds(), 1.5);
  EXPECT_EQ(a.rss_bytes(), 4096u);
  EXPECT_EQ(a.uptime_seconds(), 30);
  v1::TreeNode b;
  ToProto(ended, now, &b);
  EXPECT_EQ(b.proc().name(), "b");
  EXPECT_EQ(b.uptime_seconds(), 0) << "an ended proc has no uptime";
  EXPECT_EQ(b.processes(), 0) << "unknown usage is left out";
}

}  // namespace
}  // namespace hostd::daemon
