// Lifecycle policies against the real binaries: ranks handed out by a bulk spawn,
// each name's record of its recent ends, exit codes no restart policy retries,
// client leases, and liveness checks (heartbeats and exec probes).
#include <csignal>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/small_file.h"
#include "httplib.h"
#include "tests/integration/hostd_process.h"

namespace hostd {
namespace {

using ::testing::HasSubstr;

// A shell proc that prints its rank variables once and stays up.
v1::SpawnProcRequest RankPrinter(const std::string& name) {
  v1::SpawnProcRequest r;
  r.set_name(name);
  r.mutable_spec()->set_program("/bin/sh");
  r.mutable_spec()->add_args("-c");
  r.mutable_spec()->add_args("echo \"r=$RANK w=$WORLD_SIZE l=$LOCAL_RANK lw=$LOCAL_WORLD_SIZE\"; exec sleep 60");
  r.mutable_spec()->set_readiness(v1::READINESS_MODE_EXEC);
  return r;
}

// `name`'s stdout once it has a line; empty after the hang guard.
std::string FirstLine(const Hostd& h, const std::string& name) {
  std::string line;
  testing::Eventually([&] {
    auto [rc, out] = Hostctl(h, "logs " + name);
    if (rc != 0 || out.find('\n') == std::string::npos) return false;
    line = out.substr(0, out.find('\n'));
    return true;
  });
  return line;
}

TEST(RanksTest, HostctlHandsEachProcItsRankAndThisHostsPart) {
  Hostd h;
  auto [rc, out] = Hostctl(h,
                           "spawn job /bin/sh --count 3 --ranks --first-rank 4 --world-size 16 --readiness exec -- -c "
                           "'echo \"r=$RANK w=$WORLD_SIZE l=$LOCAL_RANK lw=$LOCAL_WORLD_SIZE\"; exec sleep 60'");
  ASSERT_EQ(rc, 0) << out;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(FirstLine(h, absl::StrCat("job-", i)), absl::StrFormat("r=%d w=16 l=%d lw=3", 4 + i, i));
  }
  std::tie(rc, out) = Hostctl(h, "spawn lone /bin/true --ranks");
  EXPECT_EQ(rc, 2) << out;
  EXPECT_THAT(out, HasSubstr("--ranks needs --count"));
}

TEST(RanksTest, TheRequestNamesTheVariablesAndBadRanksAreRefused) {
  Hostd h;
  v1::SpawnProcsRequest req;
  *req.add_procs() = RankPrinter("a");
  *req.add_procs() = RankPrinter("b");
  req.mutable_ranks()->set_rank_var("MY_RANK");
  v1::ProcSpec* b = req.mutable_procs(1)->mutable_spec();
  b->set_args(1, "echo \"r=$MY_RANK w=$WORLD_SIZE l=$LOCAL_RANK lw=$LOCAL_WORLD_SIZE\"; exec sleep 60");
  v1::SpawnProcsResponse resp;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(testing::kHangGuard));
    ASSERT_TRUE(h.api().SpawnProcs(&ctx, req, &resp).ok());
  }
  EXPECT_EQ(resp.ok(), 2);
  EXPECT_EQ(FirstLine(h, "a"), "r= w=2 l=0 lw=2");  // RANK is not set: MY_RANK is
  EXPECT_EQ(FirstLine(h, "b"), "r=1 w=2 l=1 lw=2");

  // A world too small for the entries: the whole request is refused.
  v1::SpawnProcsRequest small;
  *small.add_procs() = RankPrinter("c");
  *small.add_procs() = RankPrinter("d");
  small.mutable_ranks()->set_first_rank(3);
  small.mutable_ranks()->set_world_size(4);
  grpc::ClientContext ctx;
  ctx.set_deadline(In(testing::kHangGuard));
  grpc::Status s = h.api().SpawnProcs(&ctx, small, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("ranks.world_size: 4 is less than first_rank 3 plus the 2 entries"));

  // An entry that sets a rank variable itself fails alone, naming it.
  v1::SpawnProcsRequest clash;
  *clash.add_procs() = RankPrinter("e");
  *clash.add_procs() = RankPrinter("f");
  v1::EnvVar* e = clash.mutable_procs(1)->mutable_spec()->add_env();
  e->set_name("WORLD_SIZE");
  e->set_value("7");
  clash.mutable_ranks();
  grpc::ClientContext ctx2;
  ctx2.set_deadline(In(testing::kHangGuard));
  v1::SpawnProcsResponse clash_resp;
  ASSERT_TRUE(h.api().SpawnProcs(&ctx2, clash, &clash_resp).ok());
  EXPECT_EQ(clash_resp.ok(), 1);
  ASSERT_EQ(clash_resp.results_size(), 2);
  EXPECT_EQ(clash_resp.results(1).code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(clash_resp.results(1).error(), HasSubstr("procs[1].spec.env sets WORLD_SIZE"));
}

// A program that writes a line to stderr and exits with `code`, restarted always.
v1::SpawnProcRequest Crasher(const std::string& name, int code) {
  v1::SpawnProcRequest r;
  r.set_name(name);
  r.mutable_spec()->set_program("/bin/sh");
  r.mutable_spec()->add_args("-c");
  r.mutable_spec()->add_args(absl::StrCat("echo \"failing with ", code, "\" >&2; exit ", code));
  r.mutable_spec()->set_readiness(v1::READINESS_MODE_EXEC);
  v1::RestartPolicy* p = r.mutable_restart();
  p->set_mode(v1::RESTART_MODE_ALWAYS);
  p->set_max_restarts(2);
  *p->mutable_within() = Secs(600);
  p->mutable_backoff()->mutable_initial()->set_nanos(10'000'000);
  return r;
}

// A WatchProcs stream on one name, opened before the test acts.
class Watch {
 public:
  Watch(Hostd& h, const std::string& name) : name_(name) {
    ctx_.set_deadline(In(testing::kHangGuard));
    v1::WatchProcsRequest req;
    req.add_names(name);
    stream_ = h.api().WatchProcs(&ctx_, req);
  }
  // The detail of the name's next gave_up event ("-" if it has none; "" if none
  // came within the hang guard).
  std::string AwaitGaveUp() {
    v1::ProcEvent e;
    while (stream_->Read(&e)) {
      if (e.name() == name_ && e.kind() == v1::ProcEvent::KIND_GAVE_UP) return e.detail().empty() ? "-" : e.detail();
    }
    return "";
  }

 private:
  std::string name_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::ProcEvent>> stream_;
};

v1::Proc GetProc(Hostd& h, const std::string& name) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(testing::kHangGuard));
  v1::GetProcRequest get;
  get.set_name(name);
  v1::Proc p;
  grpc::Status s = h.api().GetProc(&ctx, get, &p);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return p;
}

// Spawns a Crasher and returns the proc once it gave up.
v1::Proc CrashUntilGaveUp(Hostd& h, const std::string& name, int code) {
  Watch watch(h, name);
  v1::SpawnProcResponse spawned;
  // The spawn itself may fail (the proc can end before it is seen ready): the
  // history is what counts.
  (void)h.Spawn(Crasher(name, code), &spawned);
  EXPECT_NE(watch.AwaitGaveUp(), "");
  return GetProc(h, name);
}

TEST(DeathHistoryTest, GetShowsEachEndNewestFirstWithItsStderr) {
  Hostd h;
  v1::Proc p = CrashUntilGaveUp(h, "crasher", 3);
  ASSERT_EQ(p.recent_ends_size(), 3);
  for (int i = 0; i < 3; ++i) {
    const v1::ProcEnd& e = p.recent_ends(i);
    EXPECT_EQ(e.incarnation(), 3 - i);
    EXPECT_EQ(e.status().state(), v1::PROC_STATE_STOPPED);
    EXPECT_EQ(e.status().exit_code(), 3);
    EXPECT_THAT(e.status().stderr_tail(), HasSubstr("failing with 3"));
    if (i > 0) {
      EXPECT_GE(p.recent_ends(i - 1).at().seconds(), e.at().seconds());
    }
  }
  auto [rc, out] = Hostctl(h, "get crasher");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("recent ends (newest first):"));
  EXPECT_THAT(out, HasSubstr("incarnation 3"));
  EXPECT_THAT(out, HasSubstr("| failing with 3"));
}

TEST(DeathHistoryTest, HistoryIsBoundedPerName) {
  Hostd h({"--death-history", "2"});
  v1::Proc p = CrashUntilGaveUp(h, "crasher", 4);
  ASSERT_EQ(p.recent_ends_size(), 2);
  EXPECT_EQ(p.recent_ends(0).incarnation(), 3);
  EXPECT_EQ(p.recent_ends(1).incarnation(), 2);
}

TEST(PermanentExitCodesTest, AListedExitCodeIsNotRestartedAndSaysWhy) {
  Hostd h;
  Watch watch(h, "config-error");
  auto [rc, out] = Hostctl(h,
                           "spawn config-error /bin/sh --readiness exec --restart always --max-restarts 5 "
                           "--backoff-initial 0.01 --permanent-exit-code 78 -- -c 'exit 78'");
  EXPECT_THAT(watch.AwaitGaveUp(), HasSubstr("exit code 78 is listed as permanent")) << out;
  v1::Proc p = GetProc(h, "config-error");
  EXPECT_EQ(p.incarnation(), 1);
  EXPECT_FALSE(p.restarting());
  EXPECT_EQ(p.recent_ends_size(), 1);
  EXPECT_EQ(p.restart().permanent_exit_codes_size(), 1);

  // Out of range: refused by hostctl (usage, 2) and by hostd (INVALID_ARGUMENT).
  std::tie(rc, out) = Hostctl(h, "spawn x /bin/true --permanent-exit-code 300");
  EXPECT_EQ(rc, 2) << out;
  v1::SpawnProcRequest bad = Crasher("bad", 1);
  bad.mutable_restart()->add_permanent_exit_codes(-1);
  v1::SpawnProcResponse resp;
  grpc::Status s = h.Spawn(bad, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("restart.permanent_exit_codes: -1 is not an exit code"));
}

// A `sleep 600` held under `owner`'s lease for `ttl_s` seconds, restarted always:
// only the lease can end it for good.
v1::SpawnProcRequest Leased(const std::string& name, const std::string& owner, int64_t ttl_s) {
  v1::SpawnProcRequest r;
  r.set_name(name);
  r.mutable_spec()->set_program("/bin/sleep");
  r.mutable_spec()->add_args("600");
  r.mutable_spec()->set_readiness(v1::READINESS_MODE_EXEC);
  r.mutable_restart()->set_mode(v1::RESTART_MODE_ALWAYS);
  r.mutable_lease()->set_owner(owner);
  *r.mutable_lease()->mutable_ttl() = Secs(ttl_s);
  return r;
}

// `name` once it has ended for good (the hang guard bounds the wait).
v1::Proc AwaitEndedForGood(Hostd& h, const std::string& name) {
  v1::WaitProcRequest req;
  req.set_name(name);
  req.set_for_good(true);
  v1::Proc p;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(testing::kHangGuard));
  grpc::Status s = h.api().WaitProc(&ctx, req, &p);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return p;
}

grpc::Status Renew(Hostd& h, const std::string& owner, v1::RenewLeaseResponse* resp) {
  v1::RenewLeaseRequest req;
  req.set_owner(owner);
  grpc::ClientContext ctx;
  ctx.set_deadline(In(testing::kHangGuard));
  return h.api().RenewLease(&ctx, req, resp);
}

// Runs `fn` every 100 ms for `d`; the lease tests keep a 1 s TTL renewed this way.
void Every100msFor(absl::Duration d, const std::function<void()>& fn) {
  for (absl::Time end = absl::Now() + d; absl::Now() < end;) {
    fn();
    absl::SleepFor(absl::Milliseconds(100));
  }
}

void ExpectEndedByItsLease(const v1::Proc& p) {
  EXPECT_EQ(p.status().state(), v1::PROC_STATE_KILLED) << p.status().display();
  EXPECT_EQ(p.status().signal(), SIGTERM);
  EXPECT_EQ(p.status().reason(), "lease expired");
  EXPECT_EQ(p.status().display(), "Killed(SIGTERM, lease expired)");
  EXPECT_TRUE(p.lease().expired());
  EXPECT_EQ(p.incarnation(), 1) << "restarted after its lease expired";
  EXPECT_FALSE(p.restarting());
}

TEST(LeaseTest, AnUnrenewedLeaseEndsTheProcForGoodDespiteRestartAlways) {
  Hostd h;
  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(In(testing::kHangGuard));
  v1::WatchProcsRequest watch_req;
  watch_req.add_names("orphan");
  std::unique_ptr<grpc::ClientReader<v1::ProcEvent>> watch = h.api().WatchProcs(&watch_ctx, watch_req);
  v1::SpawnProcResponse spawned;
  ASSERT_TRUE(h.Spawn(Leased("orphan", "client-a", 1), &spawned).ok());
  EXPECT_EQ(spawned.proc().lease().owner(), "client-a");
  EXPECT_EQ(spawned.proc().lease().ttl().seconds(), 1);
  EXPECT_FALSE(spawned.proc().lease().expired());

  v1::Proc p = AwaitEndedForGood(h, "orphan");
  ExpectEndedByItsLease(p);
  EXPECT_TRUE(AwaitGone(spawned.proc().status().pid()));
  // The event stream says it was terminated, with the reason in its status.
  v1::ProcEvent e;
  bool terminated = false;
  while (!terminated && watch->Read(&e)) {
    terminated = e.kind() == v1::ProcEvent::KIND_TERMINATED && e.status().reason() == "lease expired";
  }
  EXPECT_TRUE(terminated);
  watch_ctx.TryCancel();
  // Its owner is gone, and so is the lease: nothing is left to renew.
  v1::RenewLeaseResponse renewed;
  EXPECT_EQ(Renew(h, "client-a", &renewed).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(LeaseTest, RenewingKeepsTheProcAlivePastSeveralTtls) {
  Hostd h;
  v1::SpawnProcResponse spawned;
  ASSERT_TRUE(h.Spawn(Leased("kept", "client-b", 1), &spawned).ok());
  v1::RenewLeaseResponse renewed;
  Every100msFor(absl::Seconds(3), [&] { ASSERT_TRUE(Renew(h, "client-b", &renewed).ok()); });
  EXPECT_EQ(renewed.procs(), 1);
  EXPECT_GT(renewed.expires_at().seconds(), absl::ToUnixSeconds(absl::Now()) - 1);
  v1::Proc p = GetProc(h, "kept");
  EXPECT_EQ(p.status().state(), v1::PROC_STATE_READY) << "ended after 3 TTLs of renewals: " << p.status().display();
  EXPECT_EQ(p.status().pid(), spawned.proc().status().pid());
  // Renewals stop: it ends.
  ExpectEndedByItsLease(AwaitEndedForGood(h, "kept"));
}

TEST(LeaseTest, AnOpenStreamNamingTheOwnerKeepsTheLeaseUntilItCloses) {
  Hostd h;
  auto stream_ctx = std::make_unique<grpc::ClientContext>();
  stream_ctx->set_deadline(In(testing::kHangGuard));
  v1::WatchProcsRequest req;
  req.set_lease_owner("client-c");
  std::unique_ptr<grpc::ClientReader<v1::ProcEvent>> stream = h.api().WatchProcs(stream_ctx.get(), req);
  v1::SpawnProcResponse spawned;
  ASSERT_TRUE(h.Spawn(Leased("held", "client-c", 1), &spawned).ok());
  absl::SleepFor(absl::Seconds(3));  // three TTLs with no RenewLease call
  EXPECT_EQ(GetProc(h, "held").status().state(), v1::PROC_STATE_READY);
  stream_ctx->TryCancel();
  (void)stream->Finish();
  ExpectEndedByItsLease(AwaitEndedForGood(h, "held"));
}

TEST(LeaseTest, BadLeasesAreRefusedNamingTheField) {
  Hostd h;
  struct Case {
    std::string owner;
    google::protobuf::Duration ttl;
    std::string error;
  };
  google::protobuf::Duration half;
  half.set_nanos(500'000'000);
  for (const Case& c : std::vector<Case>{{"o", half, "lease.ttl: 500ms is not within 1s to 24h"},
                                         {"o", Secs(25 * 3600), "lease.ttl: 25h is longer than the limit of 24h"},
                                         {"o", Secs(-1), "lease.ttl"},
                                         {"", Secs(5), "lease.owner"},
                                         {"a/b", Secs(5), "lease.owner"}}) {
    v1::SpawnProcRequest r = Leased("x", c.owner, 1);
    *r.mutable_lease()->mutable_ttl() = c.ttl;
    v1::SpawnProcResponse resp;
    grpc::Status s = h.Spawn(r, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.error;
    EXPECT_THAT(s.error_message(), HasSubstr(c.error));
  }
  v1::RenewLeaseResponse renewed;
  grpc::Status s = Renew(h, "nobody", &renewed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("lease owner \"nobody\" holds no live proc"));
  EXPECT_EQ(Renew(h, "bad owner", &renewed).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext ctx;
  ctx.set_deadline(In(testing::kHangGuard));
  v1::WatchProcsRequest req;
  req.set_lease_owner("bad owner");
  v1::ProcEvent e;
  std::unique_ptr<grpc::ClientReader<v1::ProcEvent>> stream = h.api().WatchProcs(&ctx, req);
  EXPECT_FALSE(stream->Read(&e));
  s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("lease.owner"));
}

TEST(LeaseTest, HostctlSpawnsUnderALeaseShowsItAndRenewsIt) {
  Hostd h;
  auto [rc, out] =
      Hostctl(h, "spawn leased /bin/sleep --readiness exec --lease-owner cli --lease-ttl 600 -- 600");
  ASSERT_EQ(rc, 0) << out;
  std::tie(rc, out) = Hostctl(h, "lease renew cli");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("renewed 1 procs of cli; the first expires at "));
  std::tie(rc, out) = Hostctl(h, "--json lease renew cli");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("\"procs\":1"));
  std::tie(rc, out) = Hostctl(h, "get leased");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("lease:    cli ("));
  EXPECT_THAT(out, HasSubstr("ttl 10m"));
  std::tie(rc, out) = Hostctl(h, "list");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("LEASE"));
  EXPECT_THAT(out, HasSubstr("cli ("));
  std::tie(rc, out) = Hostctl(h, "lease renew nobody");
  EXPECT_EQ(rc, 3) << out;  // NOT_FOUND
  std::tie(rc, out) = Hostctl(h, "spawn x /bin/true --lease-owner cli");
  EXPECT_EQ(rc, 2) << out;  // --lease-owner needs --lease-ttl
  std::tie(rc, out) = Hostctl(h, "spawn x /bin/true --lease-owner cli --lease-ttl 0.2");
  EXPECT_EQ(rc, 8) << out;  // INVALID_ARGUMENT
  EXPECT_THAT(out, HasSubstr("lease.ttl"));
}

// hostd --keep-procs restarted under a leased proc: the next hostd adopts it with
// its lease (owner and TTL, re-armed), and the lease still ends it.
TEST(LeaseTest, AnAdoptedProcKeepsItsLease) {
  testing::TempDir root;
  const std::vector<std::string> keep = {"--keep-procs", "--reattach-timeout", "30"};
  auto h = std::make_unique<Hostd>(keep, root);
  v1::SpawnProcResponse spawned;
  ASSERT_TRUE(h->Spawn(Leased("adopted", "client-d", 2), &spawned).ok());
  const pid_t pid = spawned.proc().status().pid();
  v1::RenewLeaseResponse renewed;
  ASSERT_TRUE(Renew(*h, "client-d", &renewed).ok());
  h->Signal(SIGTERM);
  h = std::make_unique<Hostd>(keep, root);
  v1::Proc p = GetProc(*h, "adopted");
  EXPECT_EQ(p.status().pid(), pid);
  EXPECT_EQ(p.lease().owner(), "client-d");
  EXPECT_EQ(p.lease().ttl().seconds(), 2);
  EXPECT_FALSE(p.lease().expired());
  // Its exit status is its parent's, the previous hostd: the end is known, not how.
  p = AwaitEndedForGood(*h, "adopted");
  EXPECT_TRUE(p.lease().expired());
  EXPECT_THAT(p.status().reason(), HasSubstr("lease expired"));
  EXPECT_FALSE(p.restarting());
}

// ---- Liveness ------------------------------------------------------------------

google::protobuf::Duration Millis(int ms) {
  google::protobuf::Duration d;
  d.set_seconds(ms / 1000);
  d.set_nanos((ms % 1000) * 1'000'000);
  return d;
}

// A heartbeat check of `period_ms`, failing after `failures` empty periods.
v1::LivenessCheck HeartbeatCheck(int period_ms, int failures) {
  v1::LivenessCheck l;
  l.mutable_heartbeat();
  *l.mutable_period() = Millis(period_ms);
  l.set_failure_threshold(failures);
  return l;
}

// An exec probe running `script` with /bin/sh every `period_ms`.
v1::LivenessCheck ShellProbe(const std::string& script, int period_ms, int failures) {
  v1::LivenessCheck l;
  for (const char* arg : {"/bin/sh", "-c"}) l.mutable_exec()->add_command(arg);
  l.mutable_exec()->add_command(script);
  *l.mutable_period() = Millis(period_ms);
  l.set_failure_threshold(failures);
  return l;
}

// `name`'s stdout log now (every incarnation's).
std::string Stdout(Hostd& h, const std::string& name) {
  absl::StatusOr<std::string> log = base::ReadSmallFile(h.Path(absl::StrCat("state/logs/", name, ".stdout")), 1 << 20);
  return log.ok() ? *log : "";
}

// One proc keeps beating; another beats ten times, then stays alive without beating:
// it gets the dump signal, then SIGKILL, ends with the liveness reason, and its
// on-failure policy starts it again. The first is untouched all along.
TEST(LivenessTest, AProcThatStopsBeatingIsDumpedKilledAndRestartedWhileOneThatBeatsRuns) {
  const int port = FreePort();
  Hostd h({"--log-level", "info", "--http", absl::StrCat("127.0.0.1:", port)}, {}, /*log_to_file=*/true);
  v1::SpawnProcResponse resp;
  // Beats every 20 ms against a 2 s allowance (10 periods of 200 ms): a busy machine
  // does not make it miss.
  v1::SpawnProcRequest steady = h.EchoRequest("steady", {"--heartbeat-ms=20"});
  *steady.mutable_spec()->mutable_liveness() = HeartbeatCheck(200, 10);
  ASSERT_TRUE(h.Spawn(steady, &resp).ok());
  const int steady_pid = resp.proc().status().pid();

  v1::SpawnProcRequest stalls =
      h.EchoRequest("stalls", {"--heartbeat-ms=20", "--heartbeat-count=10", "--dump-signal=3"});
  // 20 ms beats against 500 ms (5 periods of 100 ms) while it beats.
  v1::LivenessCheck check = HeartbeatCheck(100, 5);
  check.set_dump_signal(SIGQUIT);
  *check.mutable_dump_grace() = Millis(500);
  *stalls.mutable_spec()->mutable_liveness() = check;
  v1::RestartPolicy* restart = stalls.mutable_restart();
  restart->set_mode(v1::RESTART_MODE_ON_FAILURE);
  restart->set_max_restarts(5);
  *restart->mutable_within() = Secs(600);
  restart->mutable_backoff()->mutable_initial()->set_nanos(10'000'000);
  grpc::Status s = h.Spawn(stalls, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();

  v1::Proc p;
  ASSERT_TRUE(testing::Eventually([&] {
    p = GetProc(h, "stalls");
    return p.recent_ends_size() >= 1 && p.incarnation() >= 2;
  }));
  const v1::ProcStatus& end = p.recent_ends(p.recent_ends_size() - 1).status();
  EXPECT_EQ(end.state(), v1::PROC_STATE_KILLED);
  EXPECT_EQ(end.signal(), SIGKILL);
  EXPECT_EQ(end.reason(), "liveness failed: no heartbeat for 5 period(s) of 100ms");
  EXPECT_EQ(end.display(), "Killed(SIGKILL, liveness failed: no heartbeat for 5 period(s) of 100ms)");
  // The first incarnation stopped beating, then was asked for its stacks, before its end.
  std::string out = Stdout(h, "stalls");
  size_t stopped = out.find("heartbeats stopped");
  ASSERT_NE(stopped, std::string::npos) << out;
  EXPECT_NE(out.find("dump signal 03", stopped), std::string::npos) << out;
  EXPECT_EQ(p.liveness().failure_threshold(), 5);
  EXPECT_EQ(p.liveness().dump_signal(), SIGQUIT);

  // The steady one ran through all of it: same incarnation and pid, still ready.
  v1::Proc q = GetProc(h, "steady");
  EXPECT_EQ(q.incarnation(), 1);
  EXPECT_EQ(q.status().state(), v1::PROC_STATE_READY);
  EXPECT_EQ(q.status().pid(), steady_pid);
  EXPECT_TRUE(q.has_liveness() && q.liveness().has_heartbeat());

  // The lifecycle log and the metrics say it too.
  std::ifstream log(h.log_path());
  std::string all((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_THAT(all, HasSubstr("proc killed proc=stalls"));
  EXPECT_THAT(all, HasSubstr("reason=\"liveness failed: no heartbeat"));
  EXPECT_THAT(all, HasSubstr("proc=stalls failed its liveness check: no heartbeat"));
  httplib::Client http("127.0.0.1", port);
  http.set_read_timeout(30);
  httplib::Result metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  std::vector<std::string> lines = absl::StrSplit(metrics->body, '\n');
  auto value_of = [&](absl::string_view key) -> double {
    for (const std::string& line : lines) {
      double v = 0;
      if (absl::StartsWith(line, absl::StrCat(key, " ")) && absl::SimpleAtod(line.substr(key.size() + 1), &v)) return v;
    }
    return -1;
  };
  EXPECT_GE(value_of("hostd_liveness_failures_total"), 1) << metrics->body;
  EXPECT_GE(value_of("hostd_proc_exits_total{kind=\"liveness\"}"), 1) << metrics->body;
}

// An exec probe runs in the proc's working directory: while it passes the proc runs
// on; once it exits non-zero twice in a row the proc is killed, saying which probe
// and how it failed. A probe that hangs is cut at its timeout.
TEST(LivenessTest, ExecProbesKeepAPassingProcAndKillOneThatFailsOrHangs) {
  Hostd h;
  testing::TempDir cwd;
  v1::SpawnProcRequest req = ExecRequest("probed", {"--plain"});
  req.mutable_spec()->set_cwd(cwd.path());
  *req.mutable_spec()->mutable_liveness() = ShellProbe("echo x >> probes; test ! -e stop", 200, 3);
  v1::SpawnProcResponse resp;
  grpc::Status s = h.Spawn(req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  // Five probes passed, and it still runs.
  ASSERT_TRUE(testing::Eventually([&] {
    absl::StatusOr<std::string> probes = base::ReadSmallFile(cwd.Join("probes"), 4096);
    return probes.ok() && std::count(probes->begin(), probes->end(), '\n') >= 5;
  }));
  EXPECT_EQ(GetProc(h, "probed").status().state(), v1::PROC_STATE_READY);
  std::ofstream(cwd.Join("stop")) << "";
  v1::Proc p;
  ASSERT_TRUE(testing::Eventually([&] {
    p = GetProc(h, "probed");
    return p.status().state() == v1::PROC_STATE_KILLED;
  }));
  EXPECT_EQ(p.status().reason(),
            "liveness failed: probe \"/bin/sh -c echo x >> probes; test ! -e stop\" exited 1 (3 misses in a row)");

  v1::SpawnProcRequest hang = ExecRequest("hangs", {"--plain"});
  hang.mutable_spec()->set_cwd(cwd.path());
  v1::LivenessCheck check = ShellProbe("echo $$ > probe.pid; exec sleep 60", 200, 1);
  *check.mutable_timeout() = Millis(100);
  *hang.mutable_spec()->mutable_liveness() = check;
  s = h.Spawn(hang, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(testing::Eventually([&] {
    p = GetProc(h, "hangs");
    return p.status().state() == v1::PROC_STATE_KILLED;
  }));
  EXPECT_EQ(p.status().reason(),
            "liveness failed: probe \"/bin/sh -c echo $$ > probe.pid; exec sleep 60\" ran past its timeout of 100ms");
  // The hung probe went with it.
  absl::StatusOr<std::string> probe_pid = base::ReadSmallFile(cwd.Join("probe.pid"), 64);
  int pid = 0;
  ASSERT_TRUE(probe_pid.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*probe_pid), &pid)) << probe_pid.status();
  EXPECT_TRUE(AwaitGone(pid));
}

TEST(LivenessTest, ChecksOutOfBoundsAreRefusedNamingTheField) {
  Hostd h;
  struct Case {
    v1::LivenessCheck check;
    v1::ReadinessMode readiness;
    std::string error;
  };
  std::vector<Case> cases;
  cases.push_back(
      {HeartbeatCheck(1, 3), v1::READINESS_MODE_HANDSHAKE, "spec.liveness.period: 1ms; must be 10ms to 1h"});
  cases.push_back({HeartbeatCheck(200, 101), v1::READINESS_MODE_HANDSHAKE,
                   "spec.liveness.failure_threshold: 101; must be 1 to 100"});
  cases.push_back({HeartbeatCheck(200, 3), v1::READINESS_MODE_EXEC, "a heartbeat check needs the proc runtime"});
  v1::LivenessCheck kill = HeartbeatCheck(200, 3);
  kill.set_dump_signal(SIGKILL);
  cases.push_back({kill, v1::READINESS_MODE_HANDSHAKE, "spec.liveness.dump_signal: 9"});
  v1::LivenessCheck grace = HeartbeatCheck(200, 3);
  *grace.mutable_dump_grace() = Secs(61);
  cases.push_back({grace, v1::READINESS_MODE_HANDSHAKE, "spec.liveness.dump_grace: 1m1s; must be 0 to 1m"});
  v1::LivenessCheck empty;
  empty.mutable_exec();
  cases.push_back({empty, v1::READINESS_MODE_EXEC, "spec.liveness.command: an exec probe needs a program"});
  v1::LivenessCheck slow = ShellProbe("true", 100, 3);
  *slow.mutable_timeout() = Millis(200);
  cases.push_back(
      {slow, v1::READINESS_MODE_EXEC, "spec.liveness.timeout: 200ms; must be 0 (the period) up to the period"});
  cases.push_back({v1::LivenessCheck(), v1::READINESS_MODE_EXEC, "spec.liveness: set heartbeat or exec"});
  v1::LivenessCheck missing;
  missing.mutable_exec()->add_command("/no/such/probe");
  cases.push_back({missing, v1::READINESS_MODE_EXEC,
                   "liveness probe: program \"/no/such/probe\": No such file or directory (ENOENT)"});
  for (const Case& c : cases) {
    v1::SpawnProcRequest req = ExecRequest("checked", {"--plain"});
    req.mutable_spec()->set_readiness(c.readiness);
    *req.mutable_spec()->mutable_liveness() = c.check;
    v1::SpawnProcResponse resp;
    grpc::Status s = h.Spawn(req, &resp);
    EXPECT_NE(s.error_code(), grpc::StatusCode::OK) << c.error;
    EXPECT_THAT(s.error_message(), HasSubstr(c.error));
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(testing::kHangGuard));
    v1::GetProcRequest get;
    get.set_name("checked");
    v1::Proc none;
    EXPECT_EQ(h.api().GetProc(&ctx, get, &none).error_code(), grpc::StatusCode::NOT_FOUND);  // nothing was started
  }
  auto [rc, out] = Hostctl(h, "spawn x /bin/true --liveness-period 1");
  EXPECT_EQ(rc, 2) << out;
  EXPECT_THAT(out, HasSubstr("--liveness-* options need --liveness-heartbeat or --liveness-exec"));
  std::tie(rc, out) = Hostctl(h, "spawn x /bin/true --liveness-heartbeat --liveness-dump-signal SIGNOPE");
  EXPECT_EQ(rc, 2) << out;
  EXPECT_THAT(out, HasSubstr("\"SIGNOPE\" is not a signal"));
}

TEST(LivenessTest, HostctlSpawnsWithEitherCheckAndGetShowsIt) {
  Hostd h;
  auto [rc, out] =
      Hostctl(h, absl::StrCat("spawn hb ", kTestProc,
                              " --liveness-heartbeat --liveness-period 0.2 --liveness-failures 20"
                              " --liveness-dump-signal QUIT --liveness-dump-grace 1 -- --heartbeat-ms=20"));
  ASSERT_EQ(rc, 0) << out;
  std::tie(rc, out) = Hostctl(h, "get hb");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("liveness: heartbeat every 200ms, 20 misses, SIGQUIT then 1s before SIGKILL"));
  std::tie(rc, out) = Hostctl(h, absl::StrCat("spawn pr ", kTestProc,
                                              " --readiness exec --liveness-exec '/bin/test -d /'"
                                              " --liveness-period 0.5 --liveness-timeout 0.25 --liveness-delay 2"
                                              " -- --plain"));
  ASSERT_EQ(rc, 0) << out;
  std::tie(rc, out) = Hostctl(h, "get pr");
  EXPECT_THAT(out, HasSubstr("liveness: exec \"/bin/test -d /\" every 500ms, timeout 250ms, 3 misses, after 2s"));
  std::tie(rc, out) = Hostctl(h, "get pr --json");
  EXPECT_THAT(out, HasSubstr("\"exec\":{\"command\":[\"/bin/test\",\"-d\",\"/\"]}"));
}

// The check is part of the spec in the durable table: a proc re-adopted by the next
// hostd is checked again, and killed when its probe starts failing.
TEST(LivenessTest, AReadoptedProcIsCheckedAgain) {
  testing::TempDir root;
  testing::TempDir cwd;
  const std::vector<std::string> keep = {"--keep-procs", "--reattach-timeout", "5"};
  auto h = std::make_unique<Hostd>(keep, root);
  v1::SpawnProcRequest req = ExecRequest("kept", {"--plain"});
  req.mutable_spec()->set_cwd(cwd.path());
  *req.mutable_spec()->mutable_liveness() = ShellProbe("echo x >> probes; test ! -e stop", 200, 2);
  v1::SpawnProcResponse resp;
  ASSERT_TRUE(h->Spawn(req, &resp).ok());
  const int pid = resp.proc().status().pid();
  h->Signal(SIGTERM);
  h = std::make_unique<Hostd>(keep, root);
  v1::Proc p = GetProc(*h, "kept");
  EXPECT_EQ(p.status().pid(), pid);
  EXPECT_EQ(p.status().state(), v1::PROC_STATE_READY);
  EXPECT_TRUE(p.liveness().has_exec());
  // Probes of the new hostd pass...
  auto probes_now = [&] {
    absl::StatusOr<std::string> probes = base::ReadSmallFile(cwd.Join("probes"), 1 << 16);
    return probes.ok() ? std::count(probes->begin(), probes->end(), '\n') : 0;
  };
  const auto before = probes_now();
  ASSERT_TRUE(testing::Eventually([&] { return probes_now() >= before + 3; }));
  EXPECT_EQ(GetProc(*h, "kept").status().state(), v1::PROC_STATE_READY);
  // ...until one fails.
  std::ofstream(cwd.Join("stop")) << "";
  ASSERT_TRUE(testing::Eventually([&] {
    p = GetProc(*h, "kept");
    return p.status().state() == v1::PROC_STATE_FAILED || p.status().state() == v1::PROC_STATE_KILLED;
  }));
  EXPECT_THAT(p.status().reason(), HasSubstr("liveness failed: probe"));
  EXPECT_TRUE(AwaitGone(pid));
}

}  // namespace
}  // namespace hostd
