// Per-proc cgroup limits on the real hostd: what reaches the proc's cgroup, an OOM
// kill reported as such, forks refused past pids.max, and the refusals: bad values,
// no cgroups, a controller this host does not delegate. Where the host's cgroup v2
// hierarchy lacks a controller, the tests that need it are skipped, saying so.
#include <sys/types.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/small_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/cgroup.h"
#include "manager/proc_identity.h"
#include "testing/eventually.h"
#include "tests/integration/hostd_process.h"

namespace hostd {
namespace {

namespace v1 = ::hostd::v1;

using ::testing::HasSubstr;

constexpr int64_t kMiB = 1 << 20;

// The controllers this process's cgroup hands to its children (hostd, started by
// this test, makes its procs' cgroups beneath the same one); "" without cgroup v2.
std::string DelegatedControllers() {
  const std::string& mount = manager::CgroupTree::MountPoint();
  absl::StatusOr<std::string> own = manager::ProcCgroupPath(::getpid());
  if (mount.empty() || !own.ok()) return "";
  std::string dir = absl::StrCat(mount, *own == "/" ? "" : *own);
  absl::StatusOr<std::string> text = base::ReadSmallFile(dir + "/cgroup.subtree_control");
  return text.ok() ? std::string(absl::StripTrailingAsciiWhitespace(*text)) : "";
}

bool Delegated(const std::string& controller) {
  for (absl::string_view c : absl::StrSplit(DelegatedControllers(), ' ')) {
    if (c == controller) return true;
  }
  return false;
}

#define SKIP_WITHOUT(controller)                                                                                  \
  if (!Delegated(controller)) {                                                                                   \
    GTEST_SKIP() << "the cgroup v2 " << controller << " controller is not delegated to this test's cgroup (its "  \
                 << "cgroup.subtree_control: \"" << DelegatedControllers() << "\"), so hostd cannot set its limits"; \
  }

v1::Proc Wait(Hostd& h, const std::string& name) {
  v1::WaitProcRequest req;
  req.set_name(name);
  v1::Proc p;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(30)));
  grpc::Status s = h.api().WaitProc(&ctx, req, &p);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return p;
}

TEST(ResourceLimitsTest, BadValuesAreInvalidArgumentNamingTheField) {
  Hostd h;
  struct Case {
    std::function<void(v1::ResourceLimits&)> set;
    std::string field;
  };
  std::vector<Case> cases = {
      {[](v1::ResourceLimits& l) { l.set_memory_max_bytes(-1); }, "spec.limits.memory_max"},
      {[](v1::ResourceLimits& l) { l.set_memory_max_bytes(4096); }, "spec.limits.memory_max"},
      {[](v1::ResourceLimits& l) { l.set_cpus(-0.5); }, "spec.limits.cpus"},
      {[](v1::ResourceLimits& l) { l.set_cpus(std::nan("")); }, "spec.limits.cpus"},
      {[](v1::ResourceLimits& l) { l.set_pids_max(-3); }, "spec.limits.pids_max"},
      {[](v1::ResourceLimits& l) { l.set_cpuset_cpus("0-3; rm"); }, "spec.limits.cpuset_cpus"},
  };
  for (const Case& c : cases) {
    v1::SpawnProcRequest req = ExecRequest("bad", {"--plain"});
    c.set(*req.mutable_spec()->mutable_limits());
    v1::SpawnProcResponse resp;
    grpc::Status s = h.Spawn(req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << req.spec().limits().ShortDebugString();
    EXPECT_THAT(s.error_message(), HasSubstr(c.field));
  }
}

TEST(ResourceLimitsTest, WithoutCgroupsASpawnWithLimitsIsRefusedSayingWhyAndHostdWithDefaultsDoesNotStart) {
  Hostd h({"--cgroups", "false"});
  v1::SpawnProcRequest req = ExecRequest("capped", {"--plain"});
  req.mutable_spec()->mutable_limits()->set_memory_max_bytes(32 * kMiB);
  v1::SpawnProcResponse resp;
  grpc::Status s = h.Spawn(req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("memory.max 33554432"));
  EXPECT_THAT(s.error_message(), HasSubstr("cgroups are off: disabled by configuration"));
  // The same through hostctl, with the size in its unit.
  auto [rc, out] = Hostctl(h, absl::StrCat("spawn capped2 ", kTestProc, " --readiness exec --pids-max 5 -- --plain"));
  EXPECT_NE(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("pids.max 5"));
  EXPECT_THAT(out, HasSubstr("cgroups are off"));
  // Nothing was left running or registered.
  v1::ListProcsResponse list;
  grpc::ClientContext ctx;
  ASSERT_TRUE(h.api().ListProcs(&ctx, v1::ListProcsRequest(), &list).ok());
  EXPECT_EQ(list.procs_size(), 0);

  testing::TempDir dir;
  std::tie(rc, out) = RunShell(absl::StrCat(kHostd, " --grpc unix:", dir.Join("h.sock"), " --state-dir ",
                                            dir.Join("state"), " --cgroups false --default-memory-max 1G"));
  EXPECT_EQ(rc, 1) << out;
  EXPECT_THAT(out, HasSubstr("default limits (memory.max 1073741824) need a cgroup per proc"));
}

TEST(ResourceLimitsTest, ALimitWhoseControllerIsNotDelegatedIsRefusedNamingIt) {
  if (Delegated("pids")) GTEST_SKIP() << "this host delegates the pids controller";
  Hostd h;
  v1::SpawnProcRequest req = ExecRequest("capped", {"--plain"});
  req.mutable_spec()->mutable_limits()->set_pids_max(8);
  v1::SpawnProcResponse resp;
  grpc::Status s = h.Spawn(req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("pids.max"));
  // Either no cgroups at all here, or cgroups without that controller.
  EXPECT_TRUE(absl::StrContains(s.error_message(), "cgroups are off") ||
              absl::StrContains(s.error_message(), "needs the cgroup v2 pids controller"))
      << s.error_message();
}

TEST(ResourceLimitsTest, TheProcsCgroupHoldsTheLimitsAskedFor) {
  SKIP_WITHOUT("memory");
  SKIP_WITHOUT("cpu");
  SKIP_WITHOUT("pids");
  Hostd h;
  v1::SpawnProcRequest req = ExecRequest("capped", {"--plain"});
  v1::ResourceLimits* l = req.mutable_spec()->mutable_limits();
  l->set_memory_max_bytes(64 * kMiB);
  l->set_cpus(1.5);
  l->set_pids_max(64);
  v1::SpawnProcResponse resp;
  grpc::Status s = h.Spawn(req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  absl::StatusOr<std::string> cg = manager::ProcCgroupPath(resp.proc().status().pid());
  ASSERT_TRUE(cg.ok()) << cg.status();
  std::string dir = manager::CgroupTree::MountPoint() + *cg;
  auto file = [&](const std::string& name) {
    absl::StatusOr<std::string> text = base::ReadSmallFile(absl::StrCat(dir, "/", name));
    return text.ok() ? std::string(absl::StripTrailingAsciiWhitespace(*text)) : std::string(text.status().message());
  };
  EXPECT_EQ(file("memory.max"), "67108864");
  EXPECT_EQ(file("memory.oom.group"), "1");
  EXPECT_EQ(file("cpu.max"), "150000 100000");
  EXPECT_EQ(file("pids.max"), "64");
}

TEST(ResourceLimitsTest, PastMemoryMaxTheProcEndsKilledByTheOomKillerAndSaysSo) {
  SKIP_WITHOUT("memory");
  Hostd h({"--log-level", "info"}, {}, /*log_to_file=*/true);
  v1::SpawnProcRequest req = ExecRequest("hog", {"--alloc-mb=256", "--plain"});
  req.mutable_spec()->mutable_limits()->set_memory_max_bytes(32 * kMiB);
  v1::SpawnProcResponse resp;
  grpc::Status s = h.Spawn(req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  v1::Proc p = Wait(h, "hog");
  EXPECT_EQ(p.status().state(), v1::PROC_STATE_KILLED);
  EXPECT_EQ(p.status().signal(), SIGKILL);
  EXPECT_EQ(p.status().reason(), "oom");
  EXPECT_EQ(p.status().display(), "Killed(SIGKILL, oom)");
  auto [rc, out] = Hostctl(h, "get hog");
  EXPECT_THAT(out, HasSubstr("Killed(SIGKILL, oom)"));
  std::ifstream log(h.log_path());
  std::string all((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_THAT(all, HasSubstr("proc killed proc=hog"));
  EXPECT_THAT(all, HasSubstr("reason=oom"));
}

TEST(ResourceLimitsTest, PastPidsMaxForksFail) {
  SKIP_WITHOUT("pids");
  Hostd h;
  // The proc itself and three children; the rest of its ten forks fail.
  auto [rc, out] =
      Hostctl(h, absl::StrCat("spawn forker ", kTestProc, " --readiness exec --pids-max 4 -- --forks=10 --plain"));
  ASSERT_EQ(rc, 0) << out;
  std::string logs;
  EXPECT_TRUE(testing::Eventually([&] {
    logs = Hostctl(h, "logs forker").second;
    return absl::StrContains(logs, "forks ");
  }));
  EXPECT_THAT(logs, HasSubstr("forks 3 failed 7 EAGAIN"));
}

}  // namespace
}  // namespace hostd
