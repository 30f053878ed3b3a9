// hostd --keep-procs against the real binaries: procs outlive a hostd stopped by
// SIGTERM, killed by SIGKILL, or re-executed by `hostctl upgrade`, and the next
// hostd on the same state directory re-adopts them; a stranger that has a
// recorded pid is not adopted; with no hostd coming back the procs are killed.
#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/small_file.h"
#include "tests/integration/hostd_process.h"

namespace hostd {
namespace {

using ::testing::HasSubstr;

const std::vector<std::string> kKeep = {"--keep-procs", "--reattach-timeout", "5"};

std::map<std::string, v1::Proc> ListByName(Hostd& h) {
  v1::ListProcsRequest req;
  v1::ListProcsResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(testing::kHangGuard));
  grpc::Status s = h.api().ListProcs(&ctx, req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  std::map<std::string, v1::Proc> out;
  for (const v1::Proc& p : resp.procs()) out[p.name()] = p;
  return out;
}

// Sends `payload` to `name`'s port "data" (the test proc's --log-data prints it).
grpc::Status SendData(v1::HostService::Stub& api, const std::string& name, const std::string& payload) {
  v1::SendMessageRequest req;
  req.set_name(name);
  req.set_port("data");
  req.set_payload(payload);
  v1::SendMessageResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(10)));
  return api.SendMessage(&ctx, req, &resp);
}

// The next READY=1 hostd sends (an upgrade sends RELOADING=1 first).
bool AwaitReady(Hostd& h) {
  for (int i = 0; i < 4; ++i) {
    if (absl::StrContains(h.AwaitNotify(), "READY=1")) return true;
  }
  return false;
}

bool Alive(pid_t pid) { return kill(pid, 0) == 0; }

// Processes (zombies aside) whose process group is one of `groups`.
int LiveMembersOf(const std::vector<pid_t>& groups) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    absl::StatusOr<std::string> stat = base::ReadSmallFile(entry.path().string() + "/stat", 4096);
    if (!stat.ok()) continue;
    size_t close = stat->rfind(')');
    if (close == std::string::npos) continue;
    std::vector<std::string> f = absl::StrSplit(stat->substr(close + 2), ' ');
    pid_t pgrp = 0;
    if (f.size() < 3 || f[0] == "Z" || !absl::SimpleAtoi(f[2], &pgrp)) continue;
    for (pid_t g : groups) n += pgrp == g;
  }
  return n;
}

// 20 procs (some with a grandchild in their process group, all logging the
// messages they get) through two restarts of each kind: SIGTERM with
// --keep-procs, SIGKILL of hostd, `hostctl upgrade`. Meanwhile a client keeps
// sending messages; each one hostd acknowledged must be in its proc's log.
TEST(KeepProcsTest, ProcsSurviveEveryKindOfRestart) {
  testing::TempDir root;
  constexpr int kProcs = 20;
  auto h = std::make_unique<Hostd>(kKeep, root);
  std::map<std::string, pid_t> pids;
  for (int i = 0; i < kProcs; ++i) {
    std::string name = absl::StrCat("p", i);
    std::vector<std::string> args = {"--log-data"};
    if (i % 4 == 0) args.push_back("--grandchild");
    v1::SpawnProcResponse resp;
    ASSERT_TRUE(h->Spawn(h->EchoRequest(name, args), &resp).ok());
    pids[name] = resp.proc().status().pid();
  }
  // The durable table: private to hostd's user, in WAL mode.
  struct stat st {};
  ASSERT_EQ(stat(h->Path("state/procs.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);

  // The client, on its own connection to hostd's control socket (the same path
  // across restarts): one message after another, round robin; each acknowledged
  // one is remembered, each refused one (hostd down, or handing over) is not lost.
  auto client_api = v1::HostService::NewStub(grpc::CreateChannel(h->grpc_addr(), grpc::InsecureChannelCredentials()));
  std::map<std::string, std::vector<std::string>> acked;  // proc -> payloads
  int refused = 0;
  std::atomic<bool> stop{false};
  std::thread client([&] {
    for (int n = 0; !stop.load(); ++n) {
      std::string name = absl::StrCat("p", n % kProcs);
      std::string payload = absl::StrCat("m", n);
      if (SendData(*client_api, name, payload).ok()) {
        acked[name].push_back(payload);
      } else {
        ++refused;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
  });

  struct Row {
    std::string kind;
    int procs = 0, readopted = 0, same_pid = 0;
  };
  std::vector<Row> rows;
  for (const std::string kind : {"sigterm", "sigkill", "upgrade", "sigterm", "sigkill", "upgrade"}) {
    absl::SleepFor(absl::Milliseconds(200));  // some messages before each restart
    if (kind == "upgrade") {
      auto [code, out] = Hostctl(*h, absl::StrCat("upgrade ", kHostd));
      EXPECT_EQ(code, 0) << out;
      EXPECT_TRUE(AwaitReady(*h)) << "the new image did not announce readiness";
    } else {
      int status = h->Signal(kind == "sigterm" ? SIGTERM : SIGKILL);
      if (kind == "sigterm") {
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
      }
      h = std::make_unique<Hostd>(kKeep, root);
    }
    Row row{kind};
    std::map<std::string, v1::Proc> now = ListByName(*h);
    for (const auto& [name, pid] : pids) {
      ++row.procs;
      auto it = now.find(name);
      if (it == now.end() || it->second.status().state() != v1::PROC_STATE_READY) {
        ADD_FAILURE() << kind << ": " << name << " not re-adopted";
        continue;
      }
      ++row.readopted;
      row.same_pid += it->second.status().pid() == pid;
    }
    EXPECT_EQ(row.readopted, kProcs) << kind;
    EXPECT_EQ(row.same_pid, kProcs) << kind;
    rows.push_back(row);
  }
  absl::SleepFor(absl::Milliseconds(200));
  stop.store(true);
  client.join();

  // Every acknowledged message reached its proc: its log has it (the logs are
  // appended to across restarts).
  int acked_total = 0, lost = 0;
  for (const auto& [name, payloads] : acked) {
    absl::StatusOr<std::string> log = base::ReadSmallFile(h->Path(absl::StrCat("state/logs/", name, ".stdout")));
    ASSERT_TRUE(log.ok()) << log.status();
    for (const std::string& p : payloads) {
      ++acked_total;
      if (!absl::StrContains(*log, absl::StrCat("data ", p, "\n"))) ++lost;
    }
  }
  EXPECT_EQ(lost, 0);
  EXPECT_GT(acked_total, 0);

  // Terminate works on adopted procs; then nothing of any proc is left.
  v1::TerminateProcRequest term;
  term.set_name("p1");
  *term.mutable_grace() = Secs(5);
  v1::Proc ended;
  grpc::ClientContext tctx;
  ASSERT_TRUE(h->api().TerminateProc(&tctx, term, &ended).ok());
  EXPECT_EQ(ended.status().state(), v1::PROC_STATE_FAILED);  // not hostd's child: its exit status is unknown
  EXPECT_THAT(ended.status().reason(), HasSubstr("exit status is unknown"));
  EXPECT_TRUE(AwaitGone(pids["p1"]));
  v1::TerminateAllRequest all;
  *all.mutable_grace() = Secs(5);
  v1::TerminateAllResponse all_resp;
  grpc::ClientContext actx;
  ASSERT_TRUE(h->api().TerminateAll(&actx, all, &all_resp).ok());
  std::vector<pid_t> groups;
  for (const auto& [name, pid] : pids) {
    EXPECT_TRUE(AwaitGone(pid)) << name;
    groups.push_back(pid);
  }
  // Grandchildren included: nothing is left in any proc's process group.
  int orphans = 0;
  testing::Eventually([&] { return (orphans = LiveMembersOf(groups)) == 0; });
  EXPECT_EQ(orphans, 0);

  std::printf("| restart | procs | re-adopted | pids unchanged |\n|---|---|---|---|\n");
  for (const Row& r : rows) std::printf("| %s | %d | %d | %d |\n", r.kind.c_str(), r.procs, r.readopted, r.same_pid);
  std::printf("messages acknowledged %d, refused while hostd was away %d, silently lost %d; orphans %d\n", acked_total,
              refused, lost, orphans);
}

// A recorded pid whose start time does not match is someone else's: not adopted,
// not signalled, recorded as ended.
TEST(KeepProcsTest, StrangerWithTheRecordedPidIsNotAdopted) {
  testing::TempDir root;
  auto h = std::make_unique<Hostd>(kKeep, root);
  v1::SpawnProcResponse resp;
  ASSERT_TRUE(h->Spawn(h->EchoRequest("s"), &resp).ok());
  const pid_t pid = resp.proc().status().pid();
  h->Signal(SIGTERM);
  // Make the row name another process: its start time one tick off.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(h->Path("state/procs.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "UPDATE procs SET start_time = start_time + 1 WHERE name = 's'", nullptr, nullptr, nullptr),
      SQLITE_OK);
  EXPECT_EQ(sqlite3_changes(db), 1);
  sqlite3_close(db);
  h = std::make_unique<Hostd>(kKeep, root);
  v1::GetProcRequest req;
  req.set_name("s");
  v1::Proc p;
  grpc::ClientContext ctx;
  ASSERT_TRUE(h->api().GetProc(&ctx, req, &p).ok());
  EXPECT_EQ(p.status().state(), v1::PROC_STATE_FAILED);
  EXPECT_THAT(p.status().reason(), HasSubstr("ended while hostd was down"));
  EXPECT_THAT(p.status().reason(), HasSubstr("another process"));
  EXPECT_TRUE(Alive(pid)) << "the stranger was signalled";
  kill(pid, SIGKILL);  // the test's own proc, left alone by hostd as a stranger
  EXPECT_TRUE(AwaitGone(pid));
}

// A proc that ended while hostd was down is reported so.
TEST(KeepProcsTest, ProcEndedWhileHostdWasDown) {
  testing::TempDir root;
  auto h = std::make_unique<Hostd>(kKeep, root);
  v1::SpawnProcResponse resp;
  ASSERT_TRUE(h->Spawn(h->EchoRequest("gone"), &resp).ok());
  const pid_t pid = resp.proc().status().pid();
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
  ASSERT_TRUE(h->Spawn(h->EchoRequest("gone"), &resp).ok());
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

}  // namespace
}  // namespace hostd
