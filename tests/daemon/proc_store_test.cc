#include <sys/stat.h>
#include <unistd.h>

#include "daemon/proc_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/proc_identity.h"
#include "testing/temp_dir.h"

namespace hostd::daemon {
namespace {

std::string LogPath(const std::string& name, bool err) { return "/logs/" + name + (err ? ".stderr" : ".stdout"); }

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
  p.updated_at = absl::Now();
  return p;
}

TEST(ProcStoreTest, RowsSurviveAReopenWithTheIdentityOfTheirPid) {
  testing::TempDir dir;
  {
    absl::StatusOr<std::unique_ptr<ProcStore>> store = ProcStore::Open(dir.path(), LogPath);
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
  absl::StatusOr<std::unique_ptr<ProcStore>> store = ProcStore::Open(dir.path(), LogPath);
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
  absl::StatusOr<std::unique_ptr<ProcStore>> store = ProcStore::Open(dir.path(), LogPath);
  ASSERT_TRUE(store.ok());
  (*store)->Record(Row("a", getpid()));
  (*store)->Flush();
  StoredProc ended = Row("a", 0);
  ended.terminal = true;
  (*store)->Record(ended);
  store->reset();
  store = ProcStore::Open(dir.path(), LogPath);
  ASSERT_TRUE(store.ok());
  ASSERT_EQ((*store)->loaded().size(), 1u);
  EXPECT_EQ((*store)->loaded()[0].pid, getpid());
  EXPECT_TRUE((*store)->loaded()[0].terminal);
}

TEST(ProcStoreTest, ASymlinkAtTheDatabasePathIsRefused) {
  testing::TempDir dir;
  ASSERT_EQ(symlink("/tmp/elsewhere", dir.Join("procs.db").c_str()), 0);
  absl::StatusOr<std::unique_ptr<ProcStore>> store = ProcStore::Open(dir.path(), LogPath);
  EXPECT_FALSE(store.ok());
}

}  // namespace
}  // namespace hostd::daemon
