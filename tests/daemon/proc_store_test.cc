#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/proc_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/proc_identity.h"
#include "testing/temp_dir.h"

namespace hostd::daemon {
namespace {

StoredProc Row(const std::string& name, pid_t pid) {
  StoredProc p;
  p.name = name;
  p.spec.program = "/bin/worker";
  p.spec.args = {"--a", "", "b c"};
  p.spec.env = {{"K", "v=1"}, {"EMPTY", ""}};
  p.spec.cwd = "/tmp";
  p.spec.readiness = manager::ReadinessMode::kExec;
  p.labels = {{"team", "infra"}};
  p.incarnation = 3;
  p.state = "live";
  p.status = "Ready";
  p.pid = pid;
  p.addr = "unix:@x";
  p.stdout_log = "/logs/" + name + ".stdout";
  p.stderr_log = "/logs/" + name + ".stderr";
  p.updated_at = absl::Now();
  return p;
}

TEST(ProcStoreTest, RowsSurviveAReopenWithTheIdentityOfTheirPid) {
  testing::TempDir dir;
  {
    absl::StatusOr<std::unique_ptr<ProcStore>> store = ProcStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_TRUE((*store)->loaded().empty());
    (*store)->Record(Row("a", getpid()));
    (*store)->Record(Row("b", getpid()));
    (*store)->Forget("b");
    (*store)->Flush();
  }
  struct stat st {};
  ASSERT_EQ(stat(dir.Join("procs.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  absl::StatusOr<std::unique_ptr<ProcStore>> store = ProcStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_EQ((*store)->loaded().size(), 1u);
  const StoredProc& a = (*store)->loaded()[0];
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.spec.args, (std::vector<std::string>{"--a", "", "b c"}));
  EXPECT_EQ(a.spec.env.size(), 2u);
  EXPECT_EQ(a.spec.env[0].second, "v=1");
  EXPECT_EQ(a.spec.readiness, manager::ReadinessMode::kExec);
  EXPECT_EQ(a.labels.at("team"), "infra");
  EXPECT_EQ(a.incarnation, 3);
  EXPECT_EQ(a.pid, getpid());
  EXPECT_EQ(a.start_time, *manager::ProcStartTime(getpid()));
  EXPECT_EQ(a.stderr_log, "/logs/a.stderr");
  EXPECT_EQ(a.addr, "unix:@x");
  EXPECT_EQ(::access(dir.Join("procs.db-wal").c_str(), F_OK), 0) << "not in WAL mode";
}

TEST(ProcStoreTest, ARowWithoutAPidKeepsTheLastOne) {
  testing::TempDir dir;
  absl::StatusOr<std::unique_ptr<ProcStore>> store = ProcStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  (*store)->Record(Row("a", getpid()));
  (*store)->Flush();
  StoredProc ended = Row("a", 0);
  ended.terminal = true;
  (*store)->Record(ended);
  store->reset();
  store = ProcStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  ASSERT_EQ((*store)->loaded().size(), 1u);
  EXPECT_EQ((*store)->loaded()[0].pid, getpid());
  EXPECT_TRUE((*store)->loaded()[0].terminal);
}

// What a re-adopted proc is run under again: its limits, restart policy, group
// and mark serial; and its groups with their specs, each after its parent.
TEST(ProcStoreTest, LimitsSupervisionMarkClientAndGroupsRoundTrip) {
  testing::TempDir dir;
  StoredProc a = Row("a", getpid());
  a.spec.limits.memory_max = 64 << 20;
  a.spec.limits.cpus = 1.5;
  a.spec.limits.pids_max = 32;
  a.spec.limits.cpuset_cpus = "0-1";
  a.supervision.restart.mode = manager::RestartMode::kOnFailure;
  a.supervision.restart.max_restarts = 7;
  a.supervision.restart.within = absl::Seconds(11);
  a.supervision.restart.backoff.initial = absl::Milliseconds(250);
  a.supervision.restart.permanent_exit_codes = {3, 4};
  a.supervision.group = "inner";
  a.mark_serial = 41;
  a.spec.client_identity = "ops";
  manager::GroupSpec outer;
  outer.strategy = manager::Strategy::kOneForAll;
  outer.max_restarts = 9;
  outer.within = absl::Seconds(2);
  manager::GroupSpec inner;
  inner.parent = "outer";
  inner.strategy = manager::Strategy::kRestForOne;
  inner.backoff.initial = absl::Milliseconds(20);
  {
    absl::StatusOr<std::unique_ptr<ProcStore>> store = ProcStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    (*store)->RecordGroup("outer", outer);
    (*store)->RecordGroup("inner", inner);
    (*store)->RecordGroup("gone", outer);
    (*store)->RecordGroup("gone", std::nullopt);
    (*store)->Record(a);
    (*store)->Record(Row("plain", getpid()));
  }
  absl::StatusOr<std::unique_ptr<ProcStore>> store = ProcStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_EQ((*store)->loaded().size(), 2u);
  const StoredProc& got = (*store)->loaded()[0];
  EXPECT_EQ(got.spec.limits, a.spec.limits);
  EXPECT_EQ(got.supervision.restart.mode, manager::RestartMode::kOnFailure);
  EXPECT_EQ(got.supervision.restart.max_restarts, 7);
  EXPECT_EQ(got.supervision.restart.within, absl::Seconds(11));
  EXPECT_EQ(got.supervision.restart.backoff.initial, absl::Milliseconds(250));
  EXPECT_EQ(got.supervision.restart.permanent_exit_codes, (std::vector<int>{3, 4}));
  EXPECT_EQ(got.supervision.group, "inner");
  EXPECT_EQ(got.mark_serial, 41u);
  EXPECT_EQ(got.spec.client_identity, "ops");
  const StoredProc& plain = (*store)->loaded()[1];
  EXPECT_TRUE(plain.spec.limits.empty());
  EXPECT_EQ(plain.supervision.restart.mode, manager::RestartMode::kNever);
  EXPECT_EQ(plain.supervision.group, "");
  EXPECT_FALSE(plain.spec.client_identity.has_value());
  ASSERT_EQ((*store)->loaded_groups().size(), 2u);
  EXPECT_EQ((*store)->loaded_groups()[0].name, "outer");
  EXPECT_EQ((*store)->loaded_groups()[0].spec.strategy, manager::Strategy::kOneForAll);
  EXPECT_EQ((*store)->loaded_groups()[0].spec.max_restarts, 9);
  EXPECT_EQ((*store)->loaded_groups()[0].spec.within, absl::Seconds(2));
  EXPECT_EQ((*store)->loaded_groups()[1].name, "inner");
  EXPECT_EQ((*store)->loaded_groups()[1].spec.parent, "outer");
  EXPECT_EQ((*store)->loaded_groups()[1].spec.strategy, manager::Strategy::kRestForOne);
  EXPECT_EQ((*store)->loaded_groups()[1].spec.backoff.initial, absl::Milliseconds(20));
}

// A table an older hostd created, before the limits, supervision, mark and lease
// columns: Open adds them, its rows load with none of them, and a row written
// from then on keeps them all.
TEST(ProcStoreTest, ATableWithoutTheLaterColumnsGainsThem) {
  testing::TempDir dir;
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir.Join("procs.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE procs (name TEXT PRIMARY KEY, program TEXT NOT NULL, args BLOB NOT NULL,"
                         " env BLOB NOT NULL, inherit_env BLOB NOT NULL, cwd TEXT NOT NULL, readiness INTEGER NOT NULL,"
                         " labels BLOB NOT NULL, incarnation INTEGER NOT NULL, state TEXT NOT NULL,"
                         " status TEXT NOT NULL, terminal INTEGER NOT NULL, pid INTEGER NOT NULL,"
                         " start_time INTEGER NOT NULL, cgroup TEXT NOT NULL, addr TEXT NOT NULL,"
                         " stdout_log TEXT NOT NULL, stderr_log TEXT NOT NULL, updated_at INTEGER NOT NULL);"
                         "INSERT INTO procs VALUES ('old', '/bin/w', x'', x'', x'', '', 0, x'', 2, 'live', 'Ready',"
                         " 0, 77, 5, '', '', '', '', 0)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  {
    absl::StatusOr<std::unique_ptr<ProcStore>> store = ProcStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_EQ((*store)->loaded().size(), 1u);
    const StoredProc& old = (*store)->loaded()[0];
    EXPECT_EQ(old.name, "old");
    EXPECT_EQ(old.pid, 77);
    EXPECT_EQ(old.incarnation, 2);
    EXPECT_TRUE(old.spec.limits.empty());
    EXPECT_EQ(old.mark_serial, 0u);
    EXPECT_EQ(old.lease_owner, "");
    EXPECT_FALSE(old.spec.client_identity.has_value()) << "a row from before identities were recorded";
    StoredProc leased = Row("leased", getpid());
    leased.lease_owner = "client";
    leased.lease_ttl = absl::Seconds(30);
    (*store)->Record(leased);
    (*store)->Flush();
  }
  absl::StatusOr<std::unique_ptr<ProcStore>> store = ProcStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_EQ((*store)->loaded().size(), 2u);
  const StoredProc& leased = (*store)->loaded()[0];
  EXPECT_EQ(leased.name, "leased");
  EXPECT_EQ(leased.lease_owner, "client");
  EXPECT_EQ(leased.lease_ttl, absl::Seconds(30));
}

TEST(ProcStoreTest, ASymlinkAtTheDatabasePathIsRefused) {
  testing::TempDir dir;
  ASSERT_EQ(symlink("/tmp/elsewhere", dir.Join("procs.db").c_str()), 0);
  absl::StatusOr<std::unique_ptr<ProcStore>> store = ProcStore::Open(dir.path());
  EXPECT_FALSE(store.ok());
}

}  // namespace
}  // namespace hostd::daemon
