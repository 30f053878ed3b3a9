// The Host's supervision with in-process procs on real sockets: restarts keep
// name and address, messages wait for the new incarnation, groups, escalation,
// state handoff, broadcast signals, the event stream and the tree.
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "base/status_macros.h"
#include "daemon/host.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/local_proc_manager.h"
#include "testing/status_matchers.h"
#include "tests/daemon/host_test_util.h"

namespace hostd::daemon {
namespace {

using channel::ReturnReason;
using ::hostd::testing::StatusIs;
using manager::RestartMode;
using proc::ProcState;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using Kind = HostEvent::Kind;

// What the in-process procs of one test saw, per proc name.
struct World {
  absl::Mutex mu;
  std::map<std::string, int> starts ABSL_GUARDED_BY(mu);
  std::map<std::string, std::vector<std::string>> initial_state ABSL_GUARDED_BY(mu);  // per start; "-" for none
  std::map<std::string, std::vector<std::string>> log ABSL_GUARDED_BY(mu);  // "data <payload>" and "signal <name>"

  int Starts(const std::string& n) {
    absl::MutexLock lock(&mu);
    return starts[n];
  }
  std::vector<std::string> Log(const std::string& n) {
    absl::MutexLock lock(&mu);
    return log[n];
  }
  std::vector<std::string> States(const std::string& n) {
    absl::MutexLock lock(&mu);
    return initial_state[n];
  }
};

// An in-process proc that counts its starts and answers "echo" with
// "<start>:<payload>"; a message on "ctl" ends it with that exit code; "save"
// saves its payload as state; "data" and signals are logged. With `provider`, it
// hands `state` (or a failure) over on request.
SpawnSpec Member(World& w, const std::string& name, std::optional<absl::StatusOr<std::string>> provide = {}) {
  SpawnSpec spec;
  spec.local_setup = [&w, name, provide](proc::ProcRuntime& rt) -> absl::Status {
    int n;
    {
      absl::MutexLock lock(&w.mu);
      n = ++w.starts[name];
      w.initial_state[name].push_back(rt.initial_state().value_or("-"));
    }
    rt.OnSignal([&w, name](absl::string_view sig, absl::string_view) {
      absl::MutexLock lock(&w.mu);
      w.log[name].push_back(absl::StrCat("signal ", sig));
    });
    if (provide) rt.SetStateProvider([provide] { return *provide; });
    HOSTD_RETURN_IF_ERROR(
        rt.Bind("echo", [&rt, n](Message m) { (void)rt.Reply(m, "echo.reply", absl::StrCat(n, ":", m.payload())); }));
    HOSTD_RETURN_IF_ERROR(rt.Bind("ctl", [&rt](Message m) { rt.RequestStop(std::string(m.payload())); }));
    HOSTD_RETURN_IF_ERROR(rt.Bind("save", [&rt](Message m) { (void)rt.SaveState(std::string(m.payload())); }));
    return rt.Bind("data", [&w, name](Message m) {
      absl::MutexLock lock(&w.mu);
      w.log[name].push_back(absl::StrCat("data ", m.payload()));
    });
  };
  // The stop reason is the exit code: "1" from "ctl", anything else (a stop) is 0.
  spec.local_main = [](proc::ProcRuntime& rt, const absl::Notification&) {
    absl::StatusOr<std::string> why = rt.WaitForStopRequest(absl::InfiniteFuture());
    int code = 0;
    return why.ok() && absl::SimpleAtoi(*why, &code) ? code : 0;
  };
  return spec;
}

Supervision Restart(RestartMode mode, std::string group = "", int max_restarts = 5) {
  return {.restart = {.mode = mode,
                      .max_restarts = max_restarts,
                      .within = absl::Minutes(1),
                      .backoff = {.initial = absl::Milliseconds(1),
                                  .max = absl::Milliseconds(20),
                                  .multiplier = 2,
                                  .jitter = 0.1}},
          .group = std::move(group)};
}

GroupSpec Group(Strategy s, int max_restarts = 5, std::string parent = "") {
  return {.parent = std::move(parent),
          .strategy = s,
          .max_restarts = max_restarts,
          .within = absl::Minutes(1),
          .backoff = {.initial = absl::Milliseconds(1), .max = absl::Milliseconds(20), .multiplier = 2, .jitter = 0.1}};
}

struct Fixture {
  LocalHost h;
  World w;
  EventLog events{*h.host};
  Client client{h.host->frontend()};

  void Exit(const std::string& name, int code) {
    ASSERT_THAT(client.Tell(h.Dest(name), "ctl", std::to_string(code)), IsOk());
  }
  int Incarnation(const std::string& name) {
    absl::StatusOr<ProcInfo> p = h.host->Get(name);
    return p.ok() ? p->incarnation : -1;
  }
  ~Fixture() { h.host->TerminateChildren(absl::Seconds(10), 16, "test over"); }
};

TEST(HostSupervisionTest, TransientProcExitingZeroIsNotRestartedExitingOneIs) {
  Fixture f;
  ASSERT_THAT(f.h.host->Spawn("t", Member(f.w, "t"), {}, Restart(RestartMode::kOnFailure)), IsOk());
  f.Exit("t", 1);
  HostEvent restarting = f.events.Await(Kind::kRestarting, "t");
  EXPECT_EQ(restarting.attempt, 1);
  EXPECT_FALSE(restarting.start_failed);
  EXPECT_EQ(f.events.Await(Kind::kRestarted, "t").incarnation, 2);
  f.Exit("t", 0);
  f.events.Await([](const HostEvent& e) {
    return e.name == "t" && e.incarnation == 2 && e.kind == Kind::kTransition && e.status.terminal();
  });
  f.h.host->TerminateChildren(absl::Seconds(5), 4, "flush");  // applies every pending end
  EXPECT_EQ(f.w.Starts("t"), 2);
  EXPECT_EQ(f.events.Count(Kind::kRestarting, "t"), 1);
}

TEST(HostSupervisionTest, ACrashLoopStopsAtTheIntensityAndGivesUp) {
  Fixture f;
  SpawnSpec spec = Member(f.w, "loop");
  spec.local_main = [](proc::ProcRuntime&, const absl::Notification&) { return 3; };  // dies once ready
  ASSERT_THAT(f.h.host->Spawn("loop", spec, {}, Restart(RestartMode::kAlways, "", 2)), IsOk());
  HostEvent gave_up = f.events.Await(Kind::kGaveUp, "loop");
  EXPECT_THAT(gave_up.detail, HasSubstr("gave up: 2 restarts"));
  EXPECT_EQ(f.events.Count(Kind::kRestarting, "loop"), 2);
  EXPECT_EQ(f.w.Starts("loop"), 3);
  absl::StatusOr<ProcInfo> p = f.h.host->Get("loop");
  ASSERT_THAT(p, IsOk());
  EXPECT_TRUE(p->status.terminal());
  EXPECT_FALSE(p->restarting);
  EXPECT_EQ(p->incarnation, 3);
  // It stays ended: messages to it come back saying so.
  ASSERT_THAT(f.client.Tell(f.h.Dest("loop"), "echo", "x"), IsOk());
  EXPECT_EQ(f.client.Next().reason(), ReturnReason::kProcExited);
}

// Procs that end the moment they are ready race the Host's own bookkeeping of
// their start (the spawn and each restart): every end must still be seen, so each
// of them goes through its restarts and gives up, none is left looking alive.
TEST(HostSupervisionTest, ProcsEndingAsSoonAsReadyAreSeenToEndEveryTime) {
  Fixture f;
  constexpr int kProcs = 24;
  for (int i = 0; i < kProcs; ++i) {
    std::string name = absl::StrCat("brief", i);
    SpawnSpec spec = Member(f.w, name);
    spec.local_main = [](proc::ProcRuntime&, const absl::Notification&) { return 3; };
    ASSERT_THAT(f.h.host->Spawn(name, spec, {}, Restart(RestartMode::kAlways, "", 2)), IsOk());
  }
  for (int i = 0; i < kProcs; ++i) {
    std::string name = absl::StrCat("brief", i);
    f.events.Await(Kind::kGaveUp, name);
    EXPECT_EQ(f.w.Starts(name), 3) << name;
    absl::StatusOr<ProcInfo> p = f.h.host->Get(name);
    ASSERT_THAT(p, IsOk());
    EXPECT_TRUE(p->ended) << name;
    EXPECT_EQ(p->incarnation, 3) << name;
  }
}

TEST(HostSupervisionTest, MessagesSentDuringARestartReachTheNewIncarnationInOrder) {
  Fixture f;
  Supervision s = Restart(RestartMode::kAlways);
  s.restart.backoff.initial = s.restart.backoff.max = absl::Milliseconds(300);  // a window to send in
  ASSERT_THAT(f.h.host->Spawn("a", Member(f.w, "a"), {}, s), IsOk());
  const std::string id_before = f.h.host->IdOf("a").ToString();
  f.Exit("a", 1);
  f.events.Await(Kind::kRestarting, "a");
  for (int i = 0; i < 50; ++i) {
    ASSERT_THAT(f.client.to_host->Post(*Message::Create(f.h.Dest("a"), "echo", f.client.me, std::to_string(i)),
                                       [](absl::Status st, Message) { EXPECT_THAT(st, IsOk()); }),
                IsOk());
  }
  for (int i = 0; i < 50; ++i) {
    Message m = f.client.Next();
    ASSERT_EQ(m.kind(), Message::Kind::kMessage) << m.note();
    EXPECT_EQ(m.payload(), absl::StrCat("2:", i));  // the second incarnation, in order
    EXPECT_EQ(m.src(), id_before);                  // same name, same address
  }
}

TEST(HostSupervisionTest, OneForAllRestartsEverySibling) {
  Fixture f;
  ASSERT_THAT(f.h.host->CreateGroup("g", Group(Strategy::kOneForAll)), IsOk());
  for (const char* n : {"a", "b", "c"}) {
    ASSERT_THAT(f.h.host->Spawn(n, Member(f.w, n), {}, Restart(RestartMode::kAlways, "g")), IsOk());
  }
  f.Exit("b", 1);
  for (const char* n : {"a", "b", "c"}) EXPECT_EQ(f.events.Await(Kind::kRestarted, n).incarnation, 2) << n;
  for (const char* n : {"a", "b", "c"}) EXPECT_EQ(f.w.Starts(n), 2) << n;
  // Stopped in reverse start order (c, then a), started in order (a, b, c).
  std::vector<std::string> restarted;
  for (const HostEvent& e : f.events.All()) {
    if (e.kind == Kind::kRestarted) restarted.push_back(e.name);
  }
  EXPECT_THAT(restarted, ElementsAre("a", "b", "c"));
}

TEST(HostSupervisionTest, RestForOneRestartsOnlyTheLaterSiblings) {
  Fixture f;
  ASSERT_THAT(f.h.host->CreateGroup("g", Group(Strategy::kRestForOne)), IsOk());
  for (const char* n : {"a", "b", "c"}) {
    ASSERT_THAT(f.h.host->Spawn(n, Member(f.w, n), {}, Restart(RestartMode::kAlways, "g")), IsOk());
  }
  f.Exit("b", 1);
  f.events.Await(Kind::kRestarted, "c");
  EXPECT_EQ(f.w.Starts("a"), 1);
  EXPECT_EQ(f.w.Starts("b"), 2);
  EXPECT_EQ(f.w.Starts("c"), 2);
  EXPECT_EQ(f.Incarnation("a"), 1);
  EXPECT_EQ(f.Incarnation("c"), 2);
}

TEST(HostSupervisionTest, AGroupPastItsIntensityEscalatesToItsParentThenToTheTop) {
  Fixture f;
  ASSERT_THAT(f.h.host->CreateGroup("top", Group(Strategy::kOneForOne, 1)), IsOk());
  ASSERT_THAT(f.h.host->CreateGroup("inner", Group(Strategy::kOneForAll, 0, "top")), IsOk());
  for (const char* n : {"a", "b"}) {
    ASSERT_THAT(f.h.host->Spawn(n, Member(f.w, n), {}, Restart(RestartMode::kAlways, "inner")), IsOk());
  }
  ASSERT_THAT(f.h.host->Spawn("x", Member(f.w, "x"), {}, Restart(RestartMode::kAlways, "top")), IsOk());
  // inner allows no restart: it gives up, and top restarts it (both its procs).
  f.Exit("a", 1);
  HostEvent inner = f.events.Await(Kind::kGaveUp, "inner");
  EXPECT_TRUE(inner.is_group);
  EXPECT_THAT(inner.groups, ElementsAre("top", "inner"));
  f.events.Await(Kind::kRestarted, "a");
  f.events.Await(Kind::kRestarted, "b");
  EXPECT_EQ(f.w.Starts("x"), 1);
  // Again: top is past its own intensity now, and gives up at the top. Everything
  // under it ends; the host carries on.
  f.Exit("b", 1);
  HostEvent top = f.events.Await(Kind::kGaveUp, "top");
  EXPECT_TRUE(top.is_group);
  for (const char* n : {"a", "b", "x"}) f.events.Await(Kind::kGaveUp, n);
  for (const std::string n : {"a", "x"}) {  // stopped by the give-up, x first (reverse start order)
    f.events.Await([&](const HostEvent& e) {
      return e.name == n && e.incarnation == (n == "a" ? 2 : 1) && e.kind == Kind::kTransition && e.status.terminal();
    });
  }
  for (const char* n : {"a", "b", "x"}) {
    absl::StatusOr<ProcInfo> p = f.h.host->Get(n);
    ASSERT_THAT(p, IsOk());
    EXPECT_TRUE(p->status.terminal()) << n;
    EXPECT_FALSE(p->restarting) << n;
  }
  EXPECT_THAT(f.h.host->Spawn("late", Member(f.w, "late"), {}, Restart(RestartMode::kAlways, "top")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("gave up")));
  EXPECT_THAT(f.h.host->Spawn("alive", Member(f.w, "alive")), IsOk());
}

TEST(HostSupervisionTest, StateHandedOverOnARequestedRestartArrivesIntact) {
  Fixture f;
  std::string blob(100 << 10, '\0');
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>(i * 7 + 3);
  ASSERT_THAT(f.h.host->Spawn("s", Member(f.w, "s", blob)), IsOk());
  absl::StatusOr<ProcInfo> p = f.h.host->Restart("s", {.handoff = true});
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->incarnation, 2);
  EXPECT_EQ(p->id.ToString(), f.h.Dest("s"));
  std::vector<std::string> states = f.w.States("s");
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(states[0], "-");
  EXPECT_TRUE(states[1] == blob) << "the state arrived changed (" << states[1].size() << " bytes)";
  ASSERT_THAT(f.client.Tell(f.h.Dest("s"), "echo", "x"), IsOk());
  EXPECT_EQ(f.client.Next().payload(), "2:x");
}

TEST(HostSupervisionTest, ARestartWhoseStateCannotBeHadLeavesTheOldProcRunning) {
  Fixture f;
  ASSERT_THAT(f.h.host->Spawn("s", Member(f.w, "s", absl::InternalError("disk on fire"))), IsOk());
  EXPECT_THAT(f.h.host->Restart("s", {.handoff = true}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("disk on fire")));
  HostEvent failed = f.events.Await(Kind::kRestartFailed, "s");
  EXPECT_THAT(failed.detail, HasSubstr("keeps running"));
  absl::StatusOr<ProcInfo> p = f.h.host->Get("s");
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->incarnation, 1);
  EXPECT_EQ(p->status.state, ProcState::kReady);
  ASSERT_THAT(f.client.Tell(f.h.Dest("s"), "echo", "still"), IsOk());
  EXPECT_EQ(f.client.Next().payload(), "1:still");
  // A proc with no provider at all fails the same way.
  ASSERT_THAT(f.h.host->Spawn("n", Member(f.w, "n")), IsOk());
  EXPECT_THAT(f.h.host->Restart("n", {.handoff = true}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no state provider")));
}

TEST(HostSupervisionTest, SavedStateStartsTheNextIncarnationAfterACrash) {
  Fixture f;
  ASSERT_THAT(f.h.host->Spawn("s", Member(f.w, "s"), {}, Restart(RestartMode::kOnFailure)), IsOk());
  ASSERT_THAT(f.client.Tell(f.h.Dest("s"), "save", "v7"), IsOk());
  ASSERT_TRUE(Eventually([&] { return f.h.host->Get("s")->saved_state_bytes == 2; }));
  f.Exit("s", 1);
  f.events.Await(Kind::kRestarted, "s");
  EXPECT_THAT(f.w.States("s"), ElementsAre("-", "v7"));
}

TEST(HostSupervisionTest, ABroadcastArrivesBeforeDataSentAfterItAtEveryProc) {
  Fixture f;
  const std::vector<std::string> names = {"p0", "p1", "p2", "p3"};
  for (const auto& n : names) ASSERT_THAT(f.h.host->Spawn(n, Member(f.w, n)), IsOk());
  // One more, still starting when the signal goes out.
  absl::Notification release;
  SpawnSpec slow = Member(f.w, "slow");
  auto setup = slow.local_setup;
  slow.local_setup = [&release, setup](proc::ProcRuntime& rt) {
    release.WaitForNotification();
    return setup(rt);
  };
  std::thread spawner([&] { EXPECT_THAT(f.h.host->Spawn("slow", slow), IsOk()); });
  AwaitKnown(*f.h.host, "slow");

  auto post = [&](const std::string& n, const std::string& payload) {
    ASSERT_THAT(f.client.to_host->Post(*Message::Create(f.h.Dest(n), "data", f.client.me, payload),
                                       [](absl::Status st, Message) { EXPECT_THAT(st, IsOk()); }),
                IsOk());
  };
  for (int i = 0; i < 200; ++i) {
    for (const auto& n : names) post(n, absl::StrCat("pre-", i));
  }
  absl::Notification done;
  absl::StatusOr<BroadcastResult> result;
  f.h.host->Broadcast("conclude", "bye", "", [&](absl::StatusOr<BroadcastResult> r) {
    result = r;
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kHangGuard));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->targeted, 5);
  EXPECT_EQ(result->delivered, 4);
  EXPECT_EQ(result->queued, 1);
  for (int i = 0; i < 50; ++i) {
    for (const auto& n : names) post(n, absl::StrCat("post-", i));
    post("slow", absl::StrCat("post-", i));
  }
  release.Notify();
  spawner.join();
  ASSERT_THAT(f.client.to_host->Flush(HangGuard()), IsOk());
  std::vector<std::string> all = names;
  all.push_back("slow");
  for (const auto& n : all) {
    size_t want = n == "slow" ? 51 : 251;
    EXPECT_TRUE(Eventually([&] { return f.w.Log(n).size() >= want; })) << n;
    std::vector<std::string> log = f.w.Log(n);
    ASSERT_EQ(log.size(), want) << n;
    auto sig = std::find(log.begin(), log.end(), "signal conclude");
    ASSERT_NE(sig, log.end()) << n;
    for (auto it = log.begin(); it != sig; ++it) EXPECT_THAT(*it, HasSubstr("pre-")) << n;
    EXPECT_EQ(std::count_if(sig, log.end(), [](const std::string& s) { return absl::StrContains(s, "post-"); }), 50)
        << n << ": every later message after the signal";
  }
}

TEST(HostSupervisionTest, AWatchWithASnapshotMissesNoEventUnderABurst) {
  Fixture f;
  std::atomic<bool> stop{false};
  std::thread burst([&] {
    for (int i = 0; i < 60 && !stop; ++i) {
      SpawnSpec quick = Member(f.w, "q");
      quick.local_main = [](proc::ProcRuntime&, const absl::Notification&) { return 0; };
      (void)f.h.host->Spawn(absl::StrCat("q", i), quick);
    }
  });
  EXPECT_TRUE(Eventually([&] { return f.h.host->counters().spawned >= 15; }));
  absl::Mutex mu;
  std::vector<HostEvent> seen;
  uint64_t id = f.h.host->Subscribe(
      [&](const HostEvent& e) {
        absl::MutexLock lock(&mu);
        seen.push_back(e);
      },
      /*snapshot=*/true);
  burst.join();
  f.h.host->TerminateChildren(absl::Seconds(5), 16, "flush");
  f.h.host->Unsubscribe(id);
  absl::MutexLock lock(&mu);
  size_t first_live = 0;
  while (first_live < seen.size() && seen[first_live].kind == Kind::kSnapshot) ++first_live;
  ASSERT_GT(first_live, 0u);
  ASSERT_LT(first_live, seen.size());
  // Snapshots carry the sequence number they were taken at; every later event
  // follows with no gap: none was missed in between.
  EXPECT_EQ(seen[first_live].seq, seen[0].seq + 1);
  for (size_t i = first_live + 1; i < seen.size(); ++i) ASSERT_EQ(seen[i].seq, seen[i - 1].seq + 1) << i;
  // Every proc seen ends: its last state change is terminal.
  std::map<std::string, proc::ProcStatus> last;
  for (const HostEvent& e : seen) {
    if (e.kind == Kind::kSnapshot || e.kind == Kind::kTransition) last[e.name] = e.status;
  }
  for (const auto& [n, st] : last) EXPECT_TRUE(st.terminal()) << n << " " << st;
}

TEST(HostSupervisionTest, TheTreeMatchesReality) {
  Fixture f;
  ASSERT_THAT(f.h.host->CreateGroup("g", Group(Strategy::kRestForOne)), IsOk());
  ASSERT_THAT(f.h.host->Spawn("a", Member(f.w, "a"), {}, Restart(RestartMode::kAlways, "g")), IsOk());
  ASSERT_THAT(f.h.host->CreateGroup("h", Group(Strategy::kOneForOne, 5, "g")), IsOk());
  ASSERT_THAT(f.h.host->Spawn("c", Member(f.w, "c"), {}, Restart(RestartMode::kAlways, "h")), IsOk());
  ASSERT_THAT(f.h.host->Spawn("d", Member(f.w, "d")), IsOk());
  f.Exit("a", 1);
  f.events.Await(Kind::kRestarted, "c");  // rest-for-one: a, then the later child h (c)
  std::vector<TreeNode> tree = f.h.host->Tree();
  ASSERT_EQ(tree.size(), 2u);
  EXPECT_TRUE(tree[0].is_group);
  EXPECT_EQ(tree[0].name, "g");
  EXPECT_EQ(tree[0].group.restarts, 1);
  ASSERT_EQ(tree[0].children.size(), 2u);
  EXPECT_EQ(tree[0].children[0].name, "a");
  EXPECT_EQ(tree[0].children[0].proc->incarnation, 2);
  EXPECT_EQ(tree[0].children[0].proc->status.state, ProcState::kReady);
  ASSERT_TRUE(tree[0].children[1].is_group);
  EXPECT_EQ(tree[0].children[1].name, "h");
  ASSERT_EQ(tree[0].children[1].children.size(), 1u);
  EXPECT_EQ(tree[0].children[1].children[0].proc->incarnation, 2);
  EXPECT_THAT(tree[0].children[1].children[0].proc->groups, ElementsAre("g", "h"));
  EXPECT_FALSE(tree[1].is_group);
  EXPECT_EQ(tree[1].name, "d");
  EXPECT_EQ(tree[1].proc->incarnation, 1);
  EXPECT_FALSE(tree[1].usage.known) << "in-process procs have no process of their own";
}

TEST(HostSupervisionTest, AProcStoppedOnRequestIsNotRestarted) {
  Fixture f;
  ASSERT_THAT(f.h.host->Spawn("p", Member(f.w, "p"), {}, Restart(RestartMode::kAlways)), IsOk());
  absl::StatusOr<proc::ProcStatus> end = f.h.host->Terminate("p", absl::Seconds(5), "done");
  ASSERT_THAT(end, IsOk());
  EXPECT_TRUE(end->terminal());
  f.events.Await(Kind::kTerminated, "p");
  EXPECT_EQ(f.events.Count(Kind::kRestarting, "p"), 0);
  EXPECT_EQ(f.w.Starts("p"), 1);
  EXPECT_THAT(f.h.host->Terminate("ghost", absl::Seconds(1), ""), StatusIs(absl::StatusCode::kNotFound));
}

// Between a proc's end and the moment the host applies it, a listing must not
// show an end that looks final (terminal, not restarting) for a proc its policy
// is about to restart, and shows at once an end that is final (a kill asked
// for): the host's loop is held while the procs die.
TEST(HostSupervisionTest, AnEndNotYetAppliedIsNeverListedAsFinal) {
  Fixture f;
  ASSERT_THAT(f.h.host->Spawn("t", Member(f.w, "t"), {}, Restart(RestartMode::kOnFailure)), IsOk());
  ASSERT_THAT(f.h.host->Spawn("killed", Member(f.w, "killed"), {}, Restart(RestartMode::kAlways)), IsOk());
  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> handle = f.h.host->Handle("t");
  ASSERT_THAT(handle, IsOk());
  absl::Notification holding, release;
  f.h.host->SendToProc("t", "echo", "x", absl::Seconds(10), absl::Seconds(10), [&](absl::StatusOr<Host::Reply>) {
    holding.Notify();
    release.WaitForNotificationWithTimeout(testing::kHangGuard);  // the host's loop waits here
  });
  ASSERT_TRUE(holding.WaitForNotificationWithTimeout(testing::kHangGuard));
  ASSERT_THAT((*handle)->Kill(), IsOk());
  ASSERT_TRUE((*handle)->status().terminal());
  absl::StatusOr<ProcInfo> during = f.h.host->Get("t");
  ASSERT_THAT(during, IsOk());
  EXPECT_FALSE(during->status.terminal() && !during->restarting) << during->status.ToString();
  ASSERT_THAT(f.h.host->Kill("killed"), IsOk());
  absl::StatusOr<ProcInfo> killed = f.h.host->Get("killed");
  ASSERT_THAT(killed, IsOk());
  EXPECT_TRUE(killed->status.terminal() && !killed->restarting) << killed->status.ToString();
  release.Notify();
  EXPECT_EQ(f.events.Await(Kind::kRestarted, "t").incarnation, 2);
}

}  // namespace
}  // namespace hostd::daemon
