// hostd --keep-procs against the real binaries: a proc that ended meanwhile is
// reported so and goes under its restart policy and group; a group member caught
// restarting is restarted; an adopted proc keeps its limits, restart policy and
// group, and launches only what the adopting hostd's exec policy allows; one
// proc's stream of messages to another crosses every kind of restart. Which
// processes the adopting hostd kills or spares is keep_procs_family_test.cc; the
// restarts of every kind at scale are restart_test.cc.
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/small_file.h"
#include "tests/integration/hostd_process.h"
#include "tests/integration/keep_procs_util.h"

namespace hostd {
namespace {

using ::testing::HasSubstr;

// A proc that ended while hostd was down is reported so.
TEST(KeepProcsTest, ProcEndedWhileHostdWasDown) {
  testing::TempDir root;
  auto h = std::make_unique<Hostd>(kKeep, root);
  const pid_t pid = EchoPid(*h, "gone");
  ASSERT_GT(pid, 0);
  h->Signal(SIGKILL);
  kill(pid, SIGKILL);
  ASSERT_TRUE(AwaitGone(pid));
  h = std::make_unique<Hostd>(kKeep, root);
  v1::GetProcRequest req;
  req.set_name("gone");
  v1::Proc p;
  grpc::ClientContext ctx;
  ASSERT_TRUE(h->api().GetProc(&ctx, req, &p).ok());
  EXPECT_EQ(p.status().state(), v1::PROC_STATE_FAILED);
  EXPECT_EQ(p.status().reason(), "ended while hostd was down");
  // The name is free again.
  v1::SpawnProcResponse resp;
  grpc::Status again = h->Spawn(h->EchoRequest("gone"), &resp);
  ASSERT_TRUE(again.ok()) << again.error_code() << ": " << again.error_message();
}

// The end of a proc that no hostd saw is applied by the next one, as if just seen:
// a proc with a restart policy is restarted, keeping its lease; in a one-for-all
// group the sibling that was adopted alive is restarted with it; a group whose
// members all died is restarted once (its max_restarts of 1 is not spent twice);
// a proc without a policy stays ended.
TEST(KeepProcsTest, AProcThatEndedWhileHostdWasDownIsRestartedUnderItsPolicyAndGroup) {
  testing::TempDir root;
  auto h = std::make_unique<Hostd>(kKeep, root);
  for (const char* group : {"pool --strategy one-for-all --max-restarts 4 --within 9",
                            "duo --strategy one-for-all --max-restarts 1 --within 60"}) {
    auto [code, out] = Hostctl(*h, absl::StrCat("group create ", group));
    ASSERT_EQ(code, 0) << out;
  }
  std::map<std::string, pid_t> pids;
  // a and b in pool, d1 and d2 in duo; all but b die. c holds a lease (spawned
  // last, renewed before the stop) that nobody renews after.
  for (const std::string name : {"a", "b", "d1", "d2", "plain", "c"}) {
    v1::SpawnProcRequest req = h->EchoRequest(name);
    if (name != "plain") req.mutable_restart()->set_mode(v1::RESTART_MODE_ON_FAILURE);
    if (name == "a" || name == "b") req.set_group("pool");
    if (name == "d1" || name == "d2") req.set_group("duo");
    if (name == "c") {
      req.mutable_lease()->set_owner("holder");
      req.mutable_lease()->mutable_ttl()->set_seconds(5);
    }
    v1::SpawnProcResponse resp;
    grpc::Status s = h->Spawn(req, &resp);
    ASSERT_TRUE(s.ok()) << name << ": " << s.error_message();
    pids[name] = resp.proc().status().pid();
  }
  {
    v1::RenewLeaseRequest renew;
    renew.set_owner("holder");
    v1::RenewLeaseResponse renewed;
    grpc::ClientContext ctx;
    ASSERT_TRUE(h->api().RenewLease(&ctx, renew, &renewed).ok());
    ASSERT_EQ(renewed.procs(), 1);
  }
  // A stop, not SIGKILL: the table has every proc live (a SIGKILLed hostd's last
  // commits may lag its replies, leaving a row "starting", which is not restarted).
  EXPECT_EQ(h->Signal(SIGTERM), 0);
  for (const std::string name : {"a", "c", "d1", "d2", "plain"}) {
    kill(pids[name], SIGKILL);
    ASSERT_TRUE(AwaitGone(pids[name]));
  }
  h = std::make_unique<Hostd>(kKeep, root);
  std::map<std::string, v1::Proc> l;
  EXPECT_TRUE(testing::Eventually([&] {
    l = ListByName(*h);
    for (const std::string name : {"a", "b", "d1", "d2"}) {
      if (l[name].incarnation() != 2 || l[name].status().state() != v1::PROC_STATE_READY) return false;
    }
    return true;
  })) << "a: " << l["a"].DebugString() << "b: " << l["b"].DebugString() << "d1: " << l["d1"].DebugString()
      << "d2: " << l["d2"].DebugString();
  // c was restarted, and its lease, not renewed, ended it.
  EXPECT_TRUE(testing::Eventually([&] {
    v1::Proc c = ListByName(*h)["c"];
    return c.incarnation() == 2 && c.status().state() >= v1::PROC_STATE_STOPPED &&
           absl::StrContains(c.status().reason(), "lease expired");
  })) << ListByName(*h)["c"].DebugString();
  EXPECT_NE(l["b"].status().pid(), pids["b"]) << "the live sibling was not restarted with its group";
  EXPECT_TRUE(AwaitGone(pids["b"]));
  EXPECT_EQ(l["plain"].status().state(), v1::PROC_STATE_FAILED);
  EXPECT_EQ(l["plain"].status().reason(), "ended while hostd was down");
  EXPECT_EQ(l["plain"].incarnation(), 1);
}

// A member its group stopped for a restart that then waits out its backoff is
// restarting, in the durable table as in memory: a hostd handing over meanwhile
// leaves it to the next, which restarts it with the member that failed.
TEST(KeepProcsTest, AGroupMemberStoppedForItsGroupsRestartIsRestartedByTheNextHostd) {
  testing::TempDir root;
  auto h = std::make_unique<Hostd>(kKeep, root);
  auto [code, out] = Hostctl(*h, "group create slow --strategy one-for-all --backoff-initial 60 --backoff-max 60");
  ASSERT_EQ(code, 0) << out;
  std::map<std::string, pid_t> pids;
  for (const std::string name : {"x", "y"}) {
    v1::SpawnProcRequest req = h->EchoRequest(name);
    req.mutable_restart()->set_mode(v1::RESTART_MODE_ON_FAILURE);
    req.set_group("slow");
    v1::SpawnProcResponse resp;
    grpc::Status s = h->Spawn(req, &resp);
    ASSERT_TRUE(s.ok()) << name << ": " << s.error_message();
    pids[name] = resp.proc().status().pid();
  }
  kill(pids["x"], SIGKILL);
  ASSERT_TRUE(AwaitGone(pids["y"])) << "the group did not stop its other member";
  std::map<std::string, v1::Proc> l;
  ASSERT_TRUE(testing::Eventually([&] {
    l = ListByName(*h);
    return l["x"].restarting() && l["y"].restarting();
  })) << "x: " << l["x"].DebugString() << "y: " << l["y"].DebugString();
  EXPECT_EQ(h->Signal(SIGTERM), 0);

  h = std::make_unique<Hostd>(kKeep, root);
  EXPECT_TRUE(testing::Eventually([&] {
    l = ListByName(*h);
    return l["x"].incarnation() == 2 && l["x"].status().state() == v1::PROC_STATE_READY &&
           l["y"].incarnation() == 2 && l["y"].status().state() == v1::PROC_STATE_READY;
  })) << "x: " << l["x"].DebugString() << "y: " << l["y"].DebugString();
}

// Without --keep-procs nothing changes: the procs die with hostd, and upgrade is refused.
TEST(KeepProcsTest, WithoutKeepProcsProcsDieWithHostd) {
  Hostd h;
  v1::SpawnProcResponse resp;
  ASSERT_TRUE(h.Spawn(h.EchoRequest("d"), &resp).ok());
  v1::UpgradeRequest req;
  req.set_path(kHostd);
  v1::UpgradeResponse up;
  grpc::ClientContext ctx;
  EXPECT_EQ(h.api().Upgrade(&ctx, req, &up).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  h.Signal(SIGKILL);
  EXPECT_TRUE(AwaitGone(resp.proc().status().pid()));
}

// Limits, restart policy and group come back with an adopted proc. cgroups cannot
// enforce limits everywhere (hostd refuses them then), so the limits are written
// into the proc's row while hostd is down: what is checked is that the next hostd
// reads them back and reports them.
TEST(KeepProcsTest, AnAdoptedProcKeepsItsLimitsRestartPolicyAndGroup) {
  testing::TempDir root;
  auto h = std::make_unique<Hostd>(kKeep, root);
  auto [code, out] = Hostctl(*h, "group create pool --strategy one-for-all --max-restarts 4 --within 9");
  ASSERT_EQ(code, 0) << out;
  v1::SpawnProcRequest req = h->EchoRequest("w");
  req.mutable_restart()->set_mode(v1::RESTART_MODE_ON_FAILURE);
  req.mutable_restart()->set_max_restarts(6);
  req.set_group("pool");
  v1::SpawnProcResponse resp;
  ASSERT_TRUE(h->Spawn(req, &resp).ok());
  req.set_name("v");  // the same policy, no limits, no group: a restart of it can start here
  req.clear_group();
  v1::SpawnProcResponse v_resp;
  ASSERT_TRUE(h->Spawn(req, &v_resp).ok());
  EXPECT_EQ(h->Signal(SIGTERM), 0);
  ChangeOneRow(*h, "UPDATE procs SET memory_max = 33554432, cpus = 1.5, pids_max = 64, cpuset = '0' WHERE name = 'w'");
  h = std::make_unique<Hostd>(kKeep, root);
  v1::GetProcRequest get;
  get.set_name("w");
  v1::Proc p;
  grpc::ClientContext ctx;
  ASSERT_TRUE(h->api().GetProc(&ctx, get, &p).ok());
  EXPECT_EQ(p.status().state(), v1::PROC_STATE_READY);
  EXPECT_EQ(p.status().pid(), resp.proc().status().pid());
  EXPECT_EQ(p.limits().memory_max_bytes(), 33554432);
  EXPECT_EQ(p.limits().cpus(), 1.5);
  EXPECT_EQ(p.limits().pids_max(), 64);
  EXPECT_EQ(p.limits().cpuset_cpus(), "0");
  EXPECT_EQ(p.restart().mode(), v1::RESTART_MODE_ON_FAILURE);
  EXPECT_EQ(p.restart().max_restarts(), 6);
  EXPECT_THAT(p.groups(), ::testing::ElementsAre("pool"));
  auto [gcode, gout] = Hostctl(*h, "get w");
  EXPECT_EQ(gcode, 0) << gout;
  EXPECT_THAT(gout, HasSubstr("limits:   memory.max 33554432, cpus 1.5, pids.max 64, cpuset.cpus 0"));
  auto [tcode, tree] = Hostctl(*h, "tree");
  EXPECT_EQ(tcode, 0) << tree;
  EXPECT_THAT(tree, HasSubstr("pool"));
  // Its policy applies again: a crash is restarted. (A restart of "w" would be
  // refused where cgroups cannot enforce its limits: limits are never ignored.)
  kill(v_resp.proc().status().pid(), SIGKILL);
  EXPECT_TRUE(testing::Eventually([&] {
    std::map<std::string, v1::Proc> l = ListByName(*h);
    return l["v"].incarnation() == 2 && l["v"].status().state() == v1::PROC_STATE_READY;
  })) << "the adopted proc was not restarted under its policy";
}

// What an adopted proc launches from then on must pass the exec policy of the
// hostd that adopted it, even if the one that spawned it allowed everything: an
// exec probe no longer allowed is not run (the check stays configured), and a
// restart of a program no longer allowed is refused, naming the rules. The proc
// that runs is not ended by the stricter policy. A policy that allows the program
// but not its probe restarts it, without the probe.
TEST(KeepProcsTest, AnAdoptedProcLaunchesOnlyWhatTheAdoptingHostdsExecPolicyAllows) {
  testing::TempDir root;
  const std::string probed = root.Join("probed");
  auto h = std::make_unique<Hostd>(kKeep, root);  // no --allow-exec: every program is allowed
  v1::SpawnProcRequest req = h->EchoRequest("r");
  req.mutable_restart()->set_mode(v1::RESTART_MODE_ON_FAILURE);
  req.mutable_restart()->set_max_restarts(3);
  v1::LivenessCheck* live = req.mutable_spec()->mutable_liveness();
  for (const std::string& arg : {std::string("/bin/sh"), std::string("-c"), "echo probe >> " + probed}) {
    live->mutable_exec()->add_command(arg);
  }
  live->mutable_period()->set_nanos(100'000'000);
  v1::SpawnProcResponse resp;
  grpc::Status spawned = h->Spawn(req, &resp);
  ASSERT_TRUE(spawned.ok()) << spawned.error_message();
  const pid_t pid = resp.proc().status().pid();
  req.set_name("q");
  v1::SpawnProcResponse q_resp;
  spawned = h->Spawn(req, &q_resp);
  ASSERT_TRUE(spawned.ok()) << spawned.error_message();
  auto probes = [&] { return base::ReadSmallFile(probed).value_or("").size(); };
  ASSERT_TRUE(testing::Eventually([&] { return probes() > 0; })) << "the probe never ran";
  EXPECT_EQ(h->Signal(SIGTERM), 0);

  std::vector<std::string> strict = kKeep;
  strict.insert(strict.end(), {"--allow-exec", "/nonexistent/*"});
  h = std::make_unique<Hostd>(strict, root);
  v1::Proc p = ListByName(*h)["r"];
  EXPECT_EQ(p.status().state(), v1::PROC_STATE_READY);
  EXPECT_EQ(p.status().pid(), pid) << "the running proc was not adopted";
  EXPECT_TRUE(p.has_liveness()) << "the check is kept as configured, for a later hostd that allows it";
  // Ten periods with no probe run (one already on its way at the restart may land).
  const size_t after_adoption = probes();
  absl::SleepFor(absl::Seconds(1));
  EXPECT_LE(probes(), after_adoption + std::string("probe\n").size()) << "the refused probe ran";

  kill(pid, SIGKILL);
  ASSERT_TRUE(testing::Eventually([&] {
    p = ListByName(*h)["r"];
    return p.status().state() == v1::PROC_STATE_FAILED && !p.restarting();
  })) << p.DebugString();
  // Every restart (max_restarts 3) was refused before its launch: it never ran.
  EXPECT_EQ(p.incarnation(), 4);
  EXPECT_EQ(p.status().pid(), 0) << "a refused program was launched";
  EXPECT_THAT(p.status().reason(), HasSubstr("no --allow-exec rule matches it"));

  EXPECT_EQ(h->Signal(SIGTERM), 0);
  std::vector<std::string> programs_only = kKeep;
  programs_only.insert(programs_only.end(),
                       {"--allow-exec", std::filesystem::path(kTestProc).parent_path().string() + "/*"});
  h = std::make_unique<Hostd>(programs_only, root);
  kill(q_resp.proc().status().pid(), SIGKILL);
  EXPECT_TRUE(testing::Eventually([&] {
    p = ListByName(*h)["q"];
    return p.incarnation() == 2 && p.status().state() == v1::PROC_STATE_READY;
  })) << "a refused probe stopped the restart: " << p.DebugString();
}

// One proc streams numbered messages to another through the host: with no restart,
// then across a restart of each kind while the stream runs. The streamer's link to
// the backend holds what the host has not acknowledged and hands it to the next
// hostd; the host's link to the receiver is dialled again from its recorded address.
// Nothing comes back, and nothing is lost but what a SIGKILLed hostd had
// acknowledged and not yet handed on (hop by hop): at most one run of consecutive
// seqs, the ones it held when it died.
TEST(KeepProcsTest, AProcsStreamToAnotherProcCrossesEveryKindOfRestart) {
  testing::TempDir root;
  auto h = std::make_unique<Hostd>(kKeep, root);
  const std::string fe = "unix:" + h->Path("fe.sock");
  constexpr int kCount = 200;
  struct Phase {
    const char* name;
    std::optional<RestartKind> restart;
  };
  const std::vector<Phase> phases = {{"none", std::nullopt},
                                     {"sigterm", RestartKind::kSigterm},
                                     {"sigkill", RestartKind::kSigkill},
                                     {"upgrade", RestartKind::kUpgrade}};
  for (const Phase& phase : phases) {
    SCOPED_TRACE(phase.name);
    const std::string sink = absl::StrCat("sink-", phase.name), src = absl::StrCat("src-", phase.name);
    const std::string sink_log = h->Path(absl::StrCat("state/logs/", sink, ".stdout"));
    const std::string src_log = h->Path(absl::StrCat("state/logs/", src, ".stdout"));
    v1::SpawnProcResponse resp;
    ASSERT_TRUE(h->Spawn(h->EchoRequest(sink, {"--sink"}), &resp).ok());
    ASSERT_TRUE(h->Spawn(h->EchoRequest(src, {"--sink", absl::StrCat("--stream-to=", fe, ",", sink),
                                              absl::StrCat("--stream-tag=", phase.name),
                                              absl::StrCat("--stream-count=", kCount), "--stream-gap-ms=5"}),
                         &resp)
                    .ok());
    if (phase.restart.has_value()) {
      // Mid-stream: some delivered, most still to send.
      ASSERT_TRUE(testing::Eventually([&] { return LinesWith(sink_log, "got").size() >= 20; }));
      RestartHostd(h, *phase.restart, kKeep, root);
    }
    // Settled once the stream is done and its last message arrived or came back:
    // the links keep the stream's order, so nothing before it is still on the way.
    const std::string last = absl::StrCat(phase.name, ":0:", kCount);
    auto settled = [&] {
      std::vector<std::string> got = LinesWith(sink_log, "got"), back = LinesWith(src_log, "ret");
      std::vector<std::string> lines = absl::StrSplit(base::ReadSmallFile(src_log).value_or(""), '\n');
      return std::find(lines.begin(), lines.end(), "done") != lines.end() &&
             (std::find(got.begin(), got.end(), last) != got.end() ||
              std::any_of(back.begin(), back.end(),
                          [&](const std::string& r) { return absl::StartsWith(r, last + " "); }));
    };
    ASSERT_TRUE(testing::Eventually(settled)) << "the stream did not finish";
    std::vector<int> times(kCount + 1, 0);
    for (const std::string& p : LinesWith(sink_log, "got")) ++times[SeqOf(p, kCount)];
    // A message in flight when a stopping hostd closed its backend comes back to
    // its sender ("listener closed"): returned, not lost, and never also delivered.
    std::vector<std::string> returned = LinesWith(src_log, "ret");
    std::vector<int> back(kCount + 1, 0);
    for (const std::string& r : returned) ++back[SeqOf(absl::string_view(r).substr(0, r.find(' ')), kCount)];
    std::vector<int> lost;
    int duplicated = 0;
    for (int seq = 1; seq <= kCount; ++seq) {
      if (times[seq] == 0 && back[seq] == 0) lost.push_back(seq);
      duplicated += std::max(times[seq] + back[seq] - 1, 0);
    }
    EXPECT_EQ(LinesWith(src_log, "sent").size(), static_cast<size_t>(kCount));
    EXPECT_EQ(times[0], 0) << "a message that is not the stream's";
    EXPECT_EQ(back[0], 0) << "a return that is not the stream's";
    if (!phase.restart.has_value()) {
      EXPECT_THAT(returned, ::testing::IsEmpty());
    }
    if (phase.restart == RestartKind::kSigkill) {
      // One run of consecutive seqs at most: what the killed hostd held.
      EXPECT_TRUE(lost.empty() || lost.back() - lost.front() + 1 == static_cast<int>(lost.size()))
          << lost.size() << " lost, from " << lost.front() << " to " << lost.back();
    } else {
      EXPECT_THAT(lost, ::testing::IsEmpty());
      EXPECT_EQ(duplicated, 0);
    }
    std::printf("%s: sent %d, delivered %d, duplicated %d, returned %zu, lost %zu\n", phase.name, kCount,
                kCount - static_cast<int>(lost.size()), duplicated, returned.size(), lost.size());
  }
}

}  // namespace
}  // namespace hostd
