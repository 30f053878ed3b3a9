// Lifecycle policies against the real binaries: ranks handed out by a bulk spawn,
// each name's record of its recent ends, exit codes no restart policy retries, and
// client leases.
#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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
  EXPECT_TRUE(AwaitGone(pid));
}

}  // namespace
}  // namespace hostd
