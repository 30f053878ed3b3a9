// hostd --keep-procs and the processes around its procs, against the real
// binaries: which the adopting hostd kills and which it leaves running. A
// stranger that has a recorded pid is not adopted nor signalled; a process with
// the state directory's mark that no row accounts for is killed; a proc left
// alone stays alone across later hostds; an adopted proc's escaped grandchild dies
// with it; with no hostd coming back the janitor kills every proc.
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/small_file.h"
#include "tests/integration/hostd_process.h"
#include "tests/integration/keep_procs_util.h"

namespace hostd {
namespace {

using ::testing::HasSubstr;

// A recorded pid that is another process's now (its start time is not the
// recorded one) is not adopted, not signalled, and the proc is recorded as ended.
// The process the row named before carries the mark of a launch no row accounts
// for any more: the adopting hostd kills it.
TEST(KeepProcsTest, StrangerWithTheRecordedPidIsNotAdopted) {
  testing::TempDir root;
  auto h = std::make_unique<Hostd>(kKeep, root);
  const pid_t pid = EchoPid(*h, "s");
  ASSERT_GT(pid, 0);
  h->Signal(SIGTERM);
  // The stranger: a process of the test's own, without hostd's mark, that the row names now.
  const pid_t stranger = SpawnSleep();
  ASSERT_GT(stranger, 0);
  ChangeOneRow(*h, absl::StrCat("UPDATE procs SET pid = ", stranger, " WHERE name = 's'"));
  h = std::make_unique<Hostd>(kKeep, root);
  v1::GetProcRequest req;
  req.set_name("s");
  v1::Proc p;
  grpc::ClientContext ctx;
  ASSERT_TRUE(h->api().GetProc(&ctx, req, &p).ok());
  EXPECT_EQ(p.status().state(), v1::PROC_STATE_FAILED);
  EXPECT_THAT(p.status().reason(), HasSubstr("ended while hostd was down"));
  EXPECT_THAT(p.status().reason(), HasSubstr("another process"));
  int status = 0;
  EXPECT_EQ(waitpid(stranger, &status, WNOHANG), 0) << "the stranger was signalled: " << status;
  kill(stranger, SIGKILL);
  EXPECT_EQ(waitpid(stranger, &status, 0), stranger);
  EXPECT_TRUE(AwaitGone(pid)) << "the process no row accounts for was left running";
}

// A process carrying the state directory's mark under a serial no row has (a
// launch the previous hostd began but never recorded) is killed by the hostd that
// adopts; the proc it adopts, and what it launches itself, live on.
TEST(KeepProcsTest, AMarkedProcessNoRowAccountsForIsKilledByTheAdoptingHostd) {
  testing::TempDir root;
  auto h = std::make_unique<Hostd>(kKeep, root);
  const pid_t kept = EchoPid(*h, "kept");
  ASSERT_GT(kept, 0);
  EXPECT_EQ(h->Signal(SIGTERM), 0);

  absl::StatusOr<std::string> token = base::ReadSmallFile(root.Join("state/proc-mark"));
  ASSERT_TRUE(token.ok()) << token.status();
  const std::string mark = absl::StrCat("HOSTD_PROC_MARK=", absl::StripAsciiWhitespace(*token), ".1000000");
  const pid_t stray = SpawnSleep(mark);
  ASSERT_GT(stray, 0);

  h = std::make_unique<Hostd>(kKeep, root);
  ASSERT_TRUE(AwaitGone(stray)) << "the unrecorded launch was left running";
  int status = 0;
  ASSERT_EQ(waitpid(stray, &status, 0), stray);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  EXPECT_EQ(ListByName(*h)["kept"].status().pid(), kept);
  EXPECT_TRUE(Alive(kept)) << "the adopted proc was killed";
  const pid_t fresh = EchoPid(*h, "new");
  ASSERT_GT(fresh, 0);
  EXPECT_TRUE(Alive(fresh));
}

// A proc hostd cannot check (its row has no start time, say) may still run: the
// adopting hostd leaves it alone, and so does the one after it, which finds the
// row as it was and spares the proc's family from its sweep of marked processes.
TEST(KeepProcsTest, AProcLeftAloneIsLeftAloneByEveryLaterHostdToo) {
  testing::TempDir root;
  auto h = std::make_unique<Hostd>(kKeep, root);
  const pid_t pid = EchoPid(*h, "lone");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(AwaitLiveRows(*h, 1));
  EXPECT_EQ(h->Signal(SIGTERM), 0);
  ChangeOneRow(*h, "UPDATE procs SET start_time = 0 WHERE name = 'lone'");
  for (int next = 2; next <= 3; ++next) {
    h = std::make_unique<Hostd>(kKeep, root);
    v1::Proc p = ListByName(*h)["lone"];
    EXPECT_THAT(p.status().reason(), HasSubstr("left as it is")) << "hostd " << next << ": " << p.DebugString();
    EXPECT_TRUE(Alive(pid)) << "hostd " << next << " killed a proc it left alone";
    EXPECT_EQ(h->Signal(SIGTERM), 0);
  }
  kill(pid, SIGKILL);
  EXPECT_TRUE(AwaitGone(pid));
}

// No hostd comes back: the janitor kills every proc (grandchildren too) after
// --reattach-timeout.
TEST(KeepProcsTest, NoHostdComingBackMeansNoOrphans) {
  testing::TempDir root;
  auto h = std::make_unique<Hostd>(std::vector<std::string>{"--keep-procs", "--reattach-timeout", "1"}, root);
  std::vector<pid_t> pids;
  for (int i = 0; i < 3; ++i) {
    v1::SpawnProcResponse resp;
    ASSERT_TRUE(h->Spawn(h->EchoRequest(absl::StrCat("o", i), {"--grandchild"}), &resp).ok());
    pids.push_back(resp.proc().status().pid());
  }
  h->Signal(SIGKILL);
  for (pid_t pid : pids) EXPECT_TRUE(Alive(pid)) << "killed at once, not after the reattach timeout";
  for (pid_t pid : pids) EXPECT_TRUE(AwaitGone(pid));
  EXPECT_TRUE(testing::Eventually([&] { return LiveMembersOf(pids) == 0; })) << "a grandchild was left";
}

// Without cgroups a proc's setsid() grandchild is outside its process group, found
// only by the proc's mark; the mark outlives the hostd that launched it, so the
// hostd that adopted the proc still kills that grandchild with it.
TEST(KeepProcsTest, AnAdoptedProcsEscapedGrandchildDiesWithIt) {
  testing::TempDir root;
  auto h = std::make_unique<Hostd>(kKeep, root);
  std::map<std::string, std::pair<pid_t, pid_t>> procs;  // name -> pid, escaped grandchild
  for (const std::string name : {"e", "f"}) {
    v1::SpawnProcResponse resp;
    ASSERT_TRUE(h->Spawn(h->EchoRequest(name, {"--grandchild-setsid"}), &resp).ok());
    pid_t grandchild = 0;
    ASSERT_TRUE(testing::Eventually([&] {
      absl::StatusOr<std::string> log = base::ReadSmallFile(h->Path(absl::StrCat("state/logs/", name, ".stdout")));
      size_t at = log.ok() ? log->find("grandchild ") : std::string::npos;
      return at != std::string::npos && absl::SimpleAtoi(absl::StripAsciiWhitespace(log->substr(at + 11, 12)),
                                                         &grandchild);
    }));
    procs[name] = {resp.proc().status().pid(), grandchild};
  }
  ASSERT_TRUE(AwaitLiveRows(*h, 2));
  h->Signal(SIGKILL);
  h = std::make_unique<Hostd>(kKeep, root);
  v1::TerminateProcRequest term;
  term.set_name("e");
  *term.mutable_grace() = Secs(5);
  v1::Proc ended;
  grpc::ClientContext tctx;
  ASSERT_TRUE(h->api().TerminateProc(&tctx, term, &ended).ok());
  EXPECT_TRUE(AwaitGone(procs["e"].first));
  EXPECT_TRUE(AwaitGone(procs["e"].second)) << "the adopted proc's escaped grandchild outlived it";
  EXPECT_TRUE(Alive(procs["f"].second)) << "another proc's grandchild was killed";
  // With no hostd coming back, the janitor kills the other one's too.
  h->Signal(SIGKILL);
  EXPECT_TRUE(AwaitGone(procs["f"].first));
  EXPECT_TRUE(AwaitGone(procs["f"].second));
}

}  // namespace
}  // namespace hostd
