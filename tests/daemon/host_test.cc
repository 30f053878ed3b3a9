// The Host mux with in-process procs (and scripted fake procs for spawn outcomes):
// Monarch's host scenarios plus the routing rules of daemon/host.h.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "channel/listener.h"
#include "daemon/host.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/local_proc_manager.h"
#include "testing/fake_proc_manager.h"
#include "testing/status_matchers.h"
#include "tests/daemon/host_test_util.h"

namespace hostd::daemon {
namespace {

using channel::ChannelAddr;
using channel::Inbox;
using channel::Message;
using channel::ReturnReason;
using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using manager::SpawnSpec;
using proc::ProcState;
using ::testing::HasSubstr;

// A proc that sends each payload it gets on "relay" to the proc named in the payload
// before the first ':', port "echo", keeping the rest.
SpawnSpec RelaySpec() {
  SpawnSpec spec;
  spec.local_setup = [](proc::ProcRuntime& rt) {
    return rt.Bind("relay", [&rt](Message m) {
      std::string p(m.payload());
      size_t colon = p.find(':');
      proc::ProcId to = *proc::ProcId::Create(rt.id().frontend(), p.substr(0, colon));
      (void)rt.Send(*Message::Create(to.ToString(), "echo", m.src(), p.substr(colon + 1)));
    });
  };
  return spec;
}

TEST(HostTest, ClientToEchoProcThroughTheFrontendAndBack) {
  LocalHost h;
  ASSERT_THAT(h.host->Spawn("echo", EchoSpec()), IsOk());
  Client c(h.host->frontend());
  ASSERT_THAT(c.Tell(h.Dest("echo"), "echo", "hello"), IsOk());
  Message reply = c.Next();
  EXPECT_EQ(reply.kind(), Message::Kind::kMessage);
  EXPECT_EQ(reply.port(), "echo.reply");
  EXPECT_EQ(reply.payload(), "hello");
  EXPECT_EQ(reply.src(), h.Dest("echo"));
  EXPECT_GE(h.host->counters().forwarded, 2u);  // in through the frontend, out through the backend
}

TEST(HostTest, TwoProcsMessageEachOtherThroughTheBackend) {
  LocalHost h;
  ASSERT_THAT(h.host->Spawn("relay", RelaySpec()), IsOk());
  ASSERT_THAT(h.host->Spawn("echo", EchoSpec()), IsOk());
  Client c(h.host->frontend());
  // client -> relay -> (backend) -> echo -> (backend, remote link) -> client
  ASSERT_THAT(c.Tell(h.Dest("relay"), "relay", "echo:via relay"), IsOk());
  Message reply = c.Next();
  EXPECT_EQ(reply.payload(), "via relay");
  EXPECT_EQ(reply.src(), h.Dest("echo"));
}

TEST(HostTest, UnknownProcBouncesAtOnceWithTheReason) {
  LocalHost h;
  Client c(h.host->frontend());
  ASSERT_THAT(c.Tell(h.Dest("ghost"), "echo", "boo"), IsOk());
  Message back = c.Next();
  EXPECT_EQ(back.kind(), Message::Kind::kReturned);
  EXPECT_EQ(back.reason(), ReturnReason::kUnknownProc);
  EXPECT_THAT(std::string(back.note()), HasSubstr("ghost"));
  EXPECT_EQ(back.payload(), "boo");
}

// A host that re-adopts its procs (hostd --keep-procs) serves before it has adopted
// them, and their links reconnect at once. A message for a name it does not know
// yet is not taken, so it neither comes back nor is acknowledged: it waits in its
// link and reaches the proc once adopted. One for a name still unknown when the
// adoption is over comes back "unknown proc" then.
TEST(HostTest, UntilAdoptedAMessageForAnUnknownNameWaitsInItsLink) {
  manager::LocalProcManager mgr;
  HostOptions options;
  options.hold_until_adopted = true;
  std::unique_ptr<Host> host = *Host::Start(mgr, mgr, options);
  Client c(host->frontend());
  absl::Notification acked;
  auto post = [&](const std::string& name, absl::Notification* done) {
    ASSERT_THAT(c.to_host->Post(*Message::Create(host->IdOf(name).ToString(), "echo", c.me, name),
                                [done](absl::Status s, Message) {
                                  EXPECT_THAT(s, IsOk());
                                  if (done != nullptr) done->Notify();
                                }),
                IsOk());
  };
  post("adoptee", &acked);
  post("nobody", nullptr);
  // Nothing was taken: no acknowledgement, nothing back (an unknown name came back at once before).
  EXPECT_FALSE(acked.WaitForNotificationWithTimeout(absl::Milliseconds(300)));
  EXPECT_EQ(c.inbox.size(), 0u);

  // The proc is adopted (a handle the host did not spawn, as from a previous hostd).
  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> handle =
      mgr.Spawn(host->IdOf("adoptee"), host->backend(), EchoSpec());
  ASSERT_THAT(handle, IsOk());
  ASSERT_THAT(host->Adopt("adoptee", EchoSpec(), {}, {}, 1, *handle), IsOk());
  host->Adopted();
  EXPECT_TRUE(acked.WaitForNotificationWithTimeout(kHangGuard));
  // The echo's reply and the return, in either order (they come by different paths).
  std::vector<Message> got = {c.Next(), c.Next()};
  std::sort(got.begin(), got.end(), [](const Message& a, const Message& b) { return a.kind() < b.kind(); });
  EXPECT_EQ(got[0].kind(), Message::Kind::kMessage);
  EXPECT_EQ(got[0].port(), "echo.reply");
  EXPECT_EQ(got[0].payload(), "adoptee");
  EXPECT_EQ(got[1].reason(), ReturnReason::kUnknownProc);
  EXPECT_EQ(got[1].payload(), "nobody");
}

TEST(HostTest, FrontendRefusesMessagesForOtherHosts) {
  LocalHost h;
  Client c(h.host->frontend());
  ASSERT_THAT(c.Tell("unix:@elsewhere,p", "echo", "x"), IsOk());
  Message back = c.Next();
  EXPECT_EQ(back.reason(), ReturnReason::kUnroutable);
  ASSERT_THAT(c.Tell("no-comma-here", "echo", "x"), IsOk());
  EXPECT_EQ(c.Next().reason(), ReturnReason::kUnroutable);
}

TEST(HostTest, AfterAProcEndsMessagesBounceWithItsStatus) {
  LocalHost h;
  SpawnSpec spec = EchoSpec();
  spec.local_main = [](proc::ProcRuntime& rt, const absl::Notification&) {
    (void)rt.WaitForStopRequest(absl::InfiniteFuture());
    return 7;
  };
  absl::StatusOr<ProcInfo> p = h.host->Spawn("short", spec);
  ASSERT_THAT(p, IsOk());
  ASSERT_THAT(p->handle->Terminate(absl::Seconds(10), "test"), IsOk());
  // The route follows the exit monitor: no delivery timeout is involved.
  absl::StatusOr<ProcInfo> info = h.host->Get("short");
  ASSERT_THAT(info, IsOk());
  Client c(h.host->frontend());
  ASSERT_THAT(c.Tell(h.Dest("short"), "echo", "late"), IsOk());
  Message back = c.Next();
  EXPECT_EQ(back.reason(), ReturnReason::kProcExited);
  EXPECT_THAT(std::string(back.note()), HasSubstr("exit 7"));
}

TEST(HostTest, MessagesToAStartingProcArriveInOrderOnceReady) {
  manager::LocalProcManager mgr;
  auto host = *Host::Start(mgr, mgr, {});
  absl::Notification release;
  SpawnSpec spec;
  std::vector<std::string> got;
  absl::Mutex mu;
  absl::Notification all;
  spec.local_setup = [&](proc::ProcRuntime& rt) {
    release.WaitForNotification();  // still Starting while the client sends
    return rt.Bind("in", [&](Message m) {
      absl::MutexLock lock(&mu);
      got.emplace_back(m.payload());
      if (got.size() == 100) all.Notify();
    });
  };
  std::thread spawner([&] { EXPECT_THAT(host->Spawn("late", spec), IsOk()); });
  AwaitKnown(*host, "late");
  Client c(host->frontend());
  for (int i = 0; i < 100; ++i) {
    ASSERT_THAT(c.to_host->Post(*Message::Create(host->IdOf("late").ToString(), "in", c.me, std::to_string(i)),
                                [](absl::Status s, Message) { EXPECT_THAT(s, IsOk()); }),
                IsOk());
  }
  ASSERT_THAT(c.to_host->Flush(HangGuard()), IsOk());  // the host holds them all now
  release.Notify();
  spawner.join();
  ASSERT_TRUE(all.WaitForNotificationWithTimeout(kHangGuard));
  {
    absl::MutexLock lock(&mu);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(got[i], std::to_string(i));
  }
  host->TerminateChildren(absl::Seconds(5), 8, "test");
}

TEST(HostTest, MessagesForAProcThatFailsToStartComeBack) {
  manager::LocalProcManager mgr;
  auto host = *Host::Start(mgr, mgr, {});
  absl::Notification release;
  SpawnSpec spec;
  spec.local_setup = [&](proc::ProcRuntime&) {
    release.WaitForNotification();
    return absl::InternalError("setup broke");
  };
  std::thread spawner([&] { EXPECT_THAT(host->Spawn("doomed", spec), StatusIs(absl::StatusCode::kInternal)); });
  AwaitKnown(*host, "doomed");
  Client c(host->frontend());
  ASSERT_THAT(c.Tell(host->IdOf("doomed").ToString(), "in", "wait for me"), IsOk());
  release.Notify();
  spawner.join();
  Message back = c.Next();
  EXPECT_EQ(back.reason(), ReturnReason::kProcExited);
  EXPECT_THAT(std::string(back.note()), HasSubstr("setup broke"));
  EXPECT_THAT(host->Get("doomed"), StatusIs(absl::StatusCode::kNotFound));  // nothing left
}

TEST(HostTest, StartingBufferIsBounded) {
  manager::LocalProcManager mgr;
  HostOptions opts;
  opts.starting_buffer_messages = 3;
  auto host = *Host::Start(mgr, mgr, opts);
  absl::Notification release;
  SpawnSpec spec = EchoSpec();
  auto setup = spec.local_setup;
  spec.local_setup = [&, setup](proc::ProcRuntime& rt) {
    release.WaitForNotification();
    return setup(rt);
  };
  std::thread spawner([&] { EXPECT_THAT(host->Spawn("slow", spec), IsOk()); });
  AwaitKnown(*host, "slow");
  Client c(host->frontend());
  for (int i = 0; i < 4; ++i) ASSERT_THAT(c.Tell(host->IdOf("slow").ToString(), "echo", std::to_string(i)), IsOk());
  Message back = c.Next();  // the 4th did not fit
  EXPECT_EQ(back.reason(), ReturnReason::kBufferFull);
  EXPECT_EQ(back.payload(), "3");
  release.Notify();
  spawner.join();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(c.Next().payload(), std::to_string(i));
  host->TerminateChildren(absl::Seconds(5), 8, "test");
}

TEST(HostTest, TwoHostsProcOnOneReachesProcOnTheOther) {
  LocalHost a;
  LocalHost b;
  ASSERT_THAT(b.host->Spawn("echo", EchoSpec()), IsOk());
  // A relay on host a forwards to echo on host b (a dials b's frontend).
  SpawnSpec relay;
  std::string b_echo = b.Dest("echo");
  relay.local_setup = [b_echo](proc::ProcRuntime& rt) {
    return rt.Bind("relay",
                   [&rt, b_echo](Message m) { (void)rt.Send(*Message::Create(b_echo, "echo", m.src(), m.payload())); });
  };
  ASSERT_THAT(a.host->Spawn("relay", relay), IsOk());
  Client c(a.host->frontend());
  ASSERT_THAT(c.Tell(a.Dest("relay"), "relay", "across hosts"), IsOk());
  Message reply = c.Next();
  EXPECT_EQ(reply.payload(), "across hosts");
  EXPECT_EQ(reply.src(), b_echo);
}

TEST(HostTest, DuplicateNameIsAlreadyExistsAndEndedNamesCanBeReused) {
  LocalHost h;
  ASSERT_THAT(h.host->Spawn("a", EchoSpec()), IsOk());
  EXPECT_THAT(h.host->Spawn("a", EchoSpec()), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("\"a\"")));
  EXPECT_THAT(h.host->Spawn("bad name", EchoSpec()), StatusIs(absl::StatusCode::kInvalidArgument));
  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> a = h.host->Handle("a");
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT((*a)->Kill(), IsOk());
  EXPECT_THAT(h.host->Spawn("a", EchoSpec()), IsOk());
}

// Past the ended procs a host keeps, the oldest end is forgotten first, however
// often a name was spawned and ended again: a reused name stands at its newest end.
TEST(HostTest, PastTheEndedProcsKeptTheOldestEndGoesEvenWhenNamesAreReused) {
  manager::LocalProcManager mgr;
  HostOptions options;
  options.ended_procs_kept = 2;
  std::unique_ptr<Host> host = *Host::Start(mgr, mgr, options);
  auto end = [&](const std::string& name) {
    ASSERT_THAT(host->Spawn(name, EchoSpec()), IsOk());
    ASSERT_THAT(host->Kill(name), IsOk());
    ASSERT_TRUE(testing::Eventually([&] {
      absl::StatusOr<ProcInfo> p = host->Get(name);
      return p.ok() && p->ended;
    }));
  };
  // A name spawned and ended many times over keeps its one place.
  for (int i = 0; i < 300; ++i) end("a");
  end("b");
  end("a");  // ended now: b, then a
  end("c");  // one past the two kept: b goes
  EXPECT_THAT(host->Get("b"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(host->Get("a"), IsOk());
  EXPECT_THAT(host->Get("c"), IsOk());
}

TEST(HostTest, TerminateChildrenReturnsTheSummaryAndFreesTheNames) {
  LocalHost h;
  for (const char* n : {"p1", "p2", "p3"}) ASSERT_THAT(h.host->Spawn(n, EchoSpec()), IsOk());
  manager::TerminateSummary s = h.host->TerminateChildren(absl::Seconds(10), 2, "test");
  EXPECT_EQ(s.attempted, 3);
  EXPECT_EQ(s.ok, 3);
  EXPECT_EQ(s.failed, 0);
  EXPECT_TRUE(h.host->List().empty());
  EXPECT_EQ(h.host->live_procs(), 0);
  EXPECT_THAT(h.host->Spawn("p1", EchoSpec()), IsOk());
}

// List (ListProcs reads the table the same way) walks the table in name order,
// and each proc shows its own fields only: every other one has labels, a restart
// policy and args the next one lacks.
TEST(HostTest, ListIsInNameOrderAndEachProcShowsOnlyItsOwnFields) {
  LocalHost h;
  const std::vector<std::string> names = {"m", "b", "z", "a", "k", "b2", "a-1", "B"};
  for (size_t i = 0; i < names.size(); ++i) {
    SpawnSpec spec = EchoSpec();
    Labels labels;
    Supervision sup;
    if (i % 2 == 0) {
      spec.args = {"--index", absl::StrCat(i)};
      labels = {{"index", absl::StrCat(i)}, {"even", "yes"}};
      sup.restart.mode = manager::RestartMode::kOnFailure;
    }
    ASSERT_THAT(h.host->Spawn(names[i], spec, labels, sup), IsOk()) << names[i];
  }
  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  std::vector<ProcInfo> list = h.host->List();
  ASSERT_EQ(list.size(), names.size());
  for (size_t k = 0; k < list.size(); ++k) {
    const ProcInfo& p = list[k];
    EXPECT_EQ(p.name, sorted[k]);
    EXPECT_EQ(p.id.ToString(), h.Dest(p.name));
    const size_t i = static_cast<size_t>(std::find(names.begin(), names.end(), p.name) - names.begin());
    if (i % 2 == 0) {
      EXPECT_EQ(p.labels, (Labels{{"even", "yes"}, {"index", absl::StrCat(i)}})) << p.name;
      EXPECT_EQ(p.args, (std::vector<std::string>{"--index", absl::StrCat(i)})) << p.name;
      EXPECT_EQ(p.supervision.restart.mode, manager::RestartMode::kOnFailure) << p.name;
    } else {
      EXPECT_TRUE(p.labels.empty()) << p.name;
      EXPECT_TRUE(p.args.empty()) << p.name;
      EXPECT_EQ(p.supervision.restart.mode, manager::RestartMode::kNever) << p.name;
    }
  }
}

TEST(HostTest, StopSpawnsRefusesNewSpawns) {
  LocalHost h;
  EXPECT_TRUE(h.host->StopSpawns("shutting down", HangGuard()));
  EXPECT_THAT(h.host->Spawn("late", EchoSpec()), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
}

TEST(HostTest, SendToProcReportsDeliveryRepliesAndBounces) {
  LocalHost h;
  ASSERT_THAT(h.host->Spawn("echo", EchoSpec()), IsOk());
  auto send = [&](std::string name, std::string port, absl::Duration reply_timeout) {
    absl::Notification done;
    absl::StatusOr<Host::Reply> out;
    h.host->SendToProc(name, port, "ping", absl::Seconds(30), reply_timeout, [&](absl::StatusOr<Host::Reply> r) {
      out = std::move(r);
      done.Notify();
    });
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(kHangGuard));
    return out;
  };
  absl::StatusOr<Host::Reply> r = send("echo", "echo", absl::Seconds(30));
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->replied);
  EXPECT_EQ(r->payload, "ping");
  EXPECT_EQ(r->port, "echo.reply");
  r = send("echo", "echo", absl::ZeroDuration());
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->replied);
  EXPECT_THAT(send("ghost", "echo", absl::ZeroDuration()), StatusIs(absl::StatusCode::kNotFound, HasSubstr("ghost")));
  EXPECT_THAT(send("echo", "nope", absl::Seconds(30)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("unknown port")));
}

TEST(HostTest, WatchersSeeASnapshotThenEveryEventInOrder) {
  LocalHost h;
  ASSERT_THAT(h.host->Spawn("first", EchoSpec()), IsOk());
  absl::Mutex mu;
  std::vector<HostEvent> seen;
  uint64_t id = h.host->Subscribe(
      [&](const HostEvent& e) {
        absl::MutexLock lock(&mu);
        seen.push_back(e);
      },
      /*snapshot=*/true);
  ASSERT_THAT(h.host->Spawn("second", EchoSpec()), IsOk());
  h.host->TerminateChildren(absl::Seconds(10), 4, "test");
  h.host->Unsubscribe(id);
  absl::MutexLock lock(&mu);
  ASSERT_GE(seen.size(), 4u);
  EXPECT_EQ(seen[0].kind, HostEvent::Kind::kSnapshot);
  EXPECT_EQ(seen[0].name, "first");
  EXPECT_EQ(seen[0].status.state, ProcState::kReady);
  EXPECT_EQ(seen[1].kind, HostEvent::Kind::kSpawned);
  EXPECT_EQ(seen[1].name, "second");
  for (size_t i = 2; i < seen.size(); ++i) EXPECT_EQ(seen[i].seq, seen[i - 1].seq + 1);
  int removed = 0;
  for (const HostEvent& e : seen) removed += e.kind == HostEvent::Kind::kRemoved;
  EXPECT_EQ(removed, 2);
}

// A proc that ends the moment it is ready still shows every status it went
// through, in order: the table watches each handle from its first status on.
TEST(HostTest, EveryTransitionIsPublishedEvenForProcsThatEndAtOnce) {
  LocalHost h;
  EventLog log(*h.host);
  constexpr int kProcs = 40;
  SpawnSpec spec;
  spec.local_main = [](proc::ProcRuntime&, const absl::Notification&) { return 3; };
  for (int i = 0; i < kProcs; ++i) {
    // The spawn may see it ready or already ended: both are fine here.
    (void)h.host->Spawn(absl::StrCat("quick-", i), spec);
  }
  for (int i = 0; i < kProcs; ++i) {
    std::string name = absl::StrCat("quick-", i);
    log.Await([&](const HostEvent& e) {
      return e.name == name && e.kind == HostEvent::Kind::kTransition && e.status.terminal();
    });
  }
  std::vector<HostEvent> events = log.All();
  for (int i = 0; i < kProcs; ++i) {
    std::string name = absl::StrCat("quick-", i);
    std::vector<ProcState> states;
    for (const HostEvent& e : events) {
      if (e.name == name && e.kind == HostEvent::Kind::kTransition) states.push_back(e.status.state);
    }
    ASSERT_GE(states.size(), 3u) << name;
    EXPECT_EQ(states[0], ProcState::kRunning) << name;
    EXPECT_EQ(states[1], ProcState::kReady) << name;
    EXPECT_EQ(states.back(), ProcState::kStopped) << name;
    for (size_t k = 2; k + 1 < states.size(); ++k) EXPECT_EQ(states[k], ProcState::kStopping) << name;
  }
}

// What a spawn asks for is checked in one place, the Host, for gRPC and
// embedders alike; nothing is left registered.
TEST(HostTest, BadSpawnInputIsRefusedOnceAtTheHost) {
  LocalHost h;
  Supervision bad;
  bad.restart.mode = manager::RestartMode::kOnFailure;
  bad.restart.backoff.multiplier = 0.5;
  EXPECT_THAT(h.host->Spawn("p", EchoSpec(), {}, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("restart.backoff.multiplier")));
  EXPECT_THAT(h.host->Spawn("bad name", EchoSpec()), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name: ")));
  Supervision bad_group;
  bad_group.group = "no/slash";
  EXPECT_THAT(h.host->Spawn("p", EchoSpec(), {}, bad_group),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("group: ")));
  EXPECT_THAT(h.host->Spawn("p", EchoSpec(), {{"", "v"}}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(h.host->List().empty());
}

// Monarch's host scenarios, with scripted spawn outcomes.
struct FakeHost {
  testing::FakeProcManager mgr;
  std::unique_ptr<Host> host = *Host::Start(mgr, mgr, {});
};

TEST(HostSpawnTest, ReadinessTimeoutFailsTheSpawnAndLeavesNothing) {
  FakeHost h;
  h.mgr.Script("slow", {.outcome = testing::FakeOutcome::kNeverReady});
  SpawnSpec spec;
  spec.ready_timeout = absl::Milliseconds(50);
  EXPECT_THAT(h.host->Spawn("slow", spec), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(h.host->Get("slow"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_TRUE(h.mgr.Procs().empty());
}

TEST(HostSpawnTest, TerminalErrorBeforeReadyFailsTheSpawn) {
  FakeHost h;
  h.mgr.Script("crash", {.outcome = testing::FakeOutcome::kEndsBeforeReady});
  EXPECT_THAT(h.host->Spawn("crash", {}), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(h.host->Get("crash"), StatusIs(absl::StatusCode::kNotFound));
}

TEST(HostSpawnTest, ReadyWithoutAnAddressFailsTheSpawnAndKillsIt) {
  FakeHost h;
  h.mgr.Script("mute", {.outcome = testing::FakeOutcome::kReadyWithoutAddress});
  EXPECT_THAT(h.host->Spawn("mute", {}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("without an address")));
  EXPECT_THAT(h.host->Get("mute"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_TRUE(h.mgr.Procs().empty());
}

TEST(HostSpawnTest, ZeroTimeoutDisablesTheDeadline) {
  FakeHost h;
  h.mgr.Script("patient", {.outcome = testing::FakeOutcome::kReadyAfter, .delay = absl::Milliseconds(200)});
  SpawnSpec spec;
  spec.ready_timeout = absl::ZeroDuration();
  absl::StatusOr<ProcInfo> p = h.host->Spawn("patient", spec);
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->status.state, ProcState::kReady);
}

}  // namespace
}  // namespace hostd::daemon
