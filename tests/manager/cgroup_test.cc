#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/cgroup.h"
#include "testing/status_matchers.h"

namespace hostd::manager {
namespace {

using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// A CgroupTree under this process's own cgroup, or a skip saying why there is none.
class CgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<CgroupTree>> tree = CgroupTree::Create();
    if (!tree.ok()) GTEST_SKIP() << "cgroup v2 is not usable here: " << tree.status();
    tree_ = *std::move(tree);
  }

  std::unique_ptr<CgroupTree> tree_;
};

// `sleep 300`, started without any cgroup setup.
pid_t StartSleeper() {
  pid_t pid = 0;
  char arg0[] = "sleep", arg1[] = "300";
  char* argv[] = {arg0, arg1, nullptr};
  char* envp[] = {nullptr};
  EXPECT_EQ(::posix_spawn(&pid, "/bin/sleep", nullptr, nullptr, argv, envp), 0);
  return pid;
}

TEST_F(CgroupTest, TreeLivesUnderTheMountAndIsRemovedWithIt) {
  std::string parent = tree_->parent();
  EXPECT_THAT(parent, HasSubstr(CgroupTree::MountPoint()));
  EXPECT_THAT(parent, HasSubstr(absl::StrCat("/hostd-", ::getpid(), "-")));
  EXPECT_TRUE(std::filesystem::exists(parent + "/cgroup.procs"));
  tree_.reset();
  EXPECT_FALSE(std::filesystem::exists(parent)) << "the destructor removes the empty parent";
}

TEST_F(CgroupTest, ChildGetsAProcessKilledThroughItAndIsRemoved) {
  absl::StatusOr<std::string> dir = tree_->CreateChild("worker");
  ASSERT_THAT(dir, IsOk());
  EXPECT_THAT(*dir, HasSubstr(tree_->parent() + "/worker-"));
  EXPECT_TRUE(CgroupTree::Pids(*dir).empty()) << "a new cgroup is empty";

  pid_t child = StartSleeper();
  ASSERT_GT(child, 0);
  { std::ofstream(*dir + "/cgroup.procs") << child << "\n"; }
  EXPECT_THAT(CgroupTree::Pids(*dir), Contains(child));

  CgroupTree::KillAll(*dir);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGKILL);

  ASSERT_THAT(CgroupTree::Remove(*dir), IsOk());
  EXPECT_FALSE(std::filesystem::exists(*dir));
  EXPECT_THAT(CgroupTree::Remove(*dir), IsOk()) << "removing a removed cgroup is done already";
}

TEST_F(CgroupTest, EachChildIsANewCgroup) {
  absl::StatusOr<std::string> a = tree_->CreateChild("same");
  absl::StatusOr<std::string> b = tree_->CreateChild("same");
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_NE(*a, *b);
  EXPECT_THAT(CgroupTree::Remove(*a), IsOk());
  EXPECT_THAT(CgroupTree::Remove(*b), IsOk());
}

TEST_F(CgroupTest, ChildThatCannotBeCreatedIsUnavailableNamingIt) {
  absl::StatusOr<std::string> bad = tree_->CreateChild("no/such/dir");
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kUnavailable,
                            AllOf(HasSubstr("cannot create cgroup " + tree_->parent() + "/no/such/dir"),
                                  HasSubstr("No such file or directory"))));
}

TEST_F(CgroupTest, PidsOfAMissingOrEmptyCgroupAreNone) {
  EXPECT_THAT(CgroupTree::Pids(tree_->parent() + "/missing"), IsEmpty());
  absl::StatusOr<std::string> empty = tree_->CreateChild("empty");
  ASSERT_THAT(empty, IsOk());
  EXPECT_THAT(CgroupTree::Pids(*empty), IsEmpty());
  EXPECT_THAT(CgroupTree::Remove(*empty), IsOk());
}

// Limits with one field set (the rest zero: unset).
CgroupLimits Memory(int64_t bytes) {
  CgroupLimits l;
  l.memory_max = bytes;
  return l;
}
CgroupLimits Pids(int64_t n) {
  CgroupLimits l;
  l.pids_max = n;
  return l;
}

TEST_F(CgroupTest, ALimitWhoseControllerIsNotEnabledIsRefusedNamingFileAndController) {
  absl::StatusOr<std::string> child = tree_->CreateChild("limited");
  ASSERT_THAT(child.status(), IsOk());
  for (auto [limits, controller] : {std::pair{Memory(64 << 20), "memory"}, std::pair{Pids(8), "pids"}}) {
    if (absl::StrContains(tree_->controllers(), controller)) continue;  // the host delegates it
    EXPECT_THAT(tree_->ApplyLimits(*child, limits),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         AllOf(HasSubstr(absl::StrCat(controller, ".max")), HasSubstr(controller))));
  }
  EXPECT_THAT(tree_->ApplyLimits(*child, CgroupLimits()), IsOk());
  EXPECT_EQ(CgroupTree::OomKills(*child), 0);
  EXPECT_THAT(CgroupTree::Remove(*child), IsOk());
}

TEST(CgroupLimitsTest, DefaultsFillUnsetFieldsAndTheSummaryNamesTheFiles) {
  CgroupLimits asked = Memory(1 << 30);
  asked.cpuset_cpus = "0-1";
  CgroupLimits defaults = Pids(10);
  defaults.memory_max = 2 << 20;
  defaults.cpus = 1.5;
  CgroupLimits merged = asked.Or(defaults);
  EXPECT_EQ(merged.ToString(), "memory.max 1073741824, cpu.max 1.5 CPUs, pids.max 10, cpuset.cpus 0-1");
  EXPECT_TRUE(CgroupLimits().empty());
}

TEST(CgroupLimitsTest, OutOfRangeValuesAreInvalidArgumentNamingTheField) {
  EXPECT_THAT(ValidateLimits(CgroupLimits(), "x."), IsOk());
  EXPECT_THAT(ValidateLimits(Memory(100), "x."), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x.memory_max")));
  CgroupLimits cpus;
  cpus.cpus = 5000;
  EXPECT_THAT(ValidateLimits(cpus, "x."), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x.cpus")));
  EXPECT_THAT(ValidateLimits(Pids(-1), "x."), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x.pids_max")));
  CgroupLimits cpuset;
  cpuset.cpuset_cpus = "all";
  EXPECT_THAT(ValidateLimits(cpuset, "x."), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x.cpuset_cpus")));
}

}  // namespace
}  // namespace hostd::manager
