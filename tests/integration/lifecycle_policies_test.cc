// Lifecycle policies against the real binaries: ranks handed out by a bulk spawn,
// each name's record of its recent ends, and exit codes no restart policy retries.
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

}  // namespace
}  // namespace hostd
