#include "manager/cgroup.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/errno_status.h"
#include "base/small_file.h"

namespace hostd::manager {
namespace {

// The mount point of the cgroup2 hierarchy, from /proc/self/mountinfo.
std::string Cgroup2Mount() {
  absl::StatusOr<std::string> text = base::ReadSmallFile("/proc/self/mountinfo");
  if (!text.ok()) return "";
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    // ... mount-point ... - fstype source options
    size_t dash = line.find(" - ");
    if (dash == absl::string_view::npos) continue;
    std::vector<std::string> after = absl::StrSplit(line.substr(dash + 3), ' ');
    if (after.empty() || after[0] != "cgroup2") continue;
    std::vector<std::string> before = absl::StrSplit(line.substr(0, dash), ' ');
    if (before.size() >= 5) return before[4];
  }
  return "";
}

// This process's cgroup v2 path ("0::/path" in /proc/self/cgroup).
std::string OwnCgroup() {
  absl::StatusOr<std::string> text = base::ReadSmallFile("/proc/self/cgroup");
  if (!text.ok()) return "";
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (absl::ConsumePrefix(&line, "0::")) return std::string(line);
  }
  return "";
}

bool WriteFile(const std::string& path, const std::string& value) { return base::WriteSmallFile(path, value).ok(); }

// The controllers a proc's cgroup can have: those of `parent`'s cgroup.controllers
// among the ones limits use, each enabled in its cgroup.subtree_control.
std::string EnableControllers(const std::string& parent) {
  absl::StatusOr<std::string> offered = base::ReadSmallFile(parent + "/cgroup.controllers");
  if (!offered.ok()) return "";
  std::vector<std::string> enabled;
  for (absl::string_view c : absl::StrSplit(*offered, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    if (c != "memory" && c != "cpu" && c != "pids" && c != "cpuset") continue;
    if (WriteFile(parent + "/cgroup.subtree_control", absl::StrCat("+", c))) enabled.emplace_back(c);
  }
  return absl::StrJoin(enabled, " ");
}

}  // namespace

CgroupLimits CgroupLimits::Or(const CgroupLimits& defaults) const {
  CgroupLimits out = *this;
  if (out.memory_max == 0) out.memory_max = defaults.memory_max;
  if (out.cpus == 0) out.cpus = defaults.cpus;
  if (out.pids_max == 0) out.pids_max = defaults.pids_max;
  if (out.cpuset_cpus.empty()) out.cpuset_cpus = defaults.cpuset_cpus;
  return out;
}

std::string CgroupLimits::ToString() const {
  std::vector<std::string> parts;
  if (memory_max != 0) parts.push_back(absl::StrCat("memory.max ", memory_max));
  if (cpus != 0) parts.push_back(absl::StrCat("cpu.max ", cpus, " CPUs"));
  if (pids_max != 0) parts.push_back(absl::StrCat("pids.max ", pids_max));
  if (!cpuset_cpus.empty()) parts.push_back(absl::StrCat("cpuset.cpus ", cpuset_cpus));
  return absl::StrJoin(parts, ", ");
}

absl::Status ValidateLimits(const CgroupLimits& limits, absl::string_view prefix) {
  constexpr int64_t kMinMemory = 1 << 20;
  if (limits.memory_max != 0 && limits.memory_max < kMinMemory) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "memory_max: ", limits.memory_max,
                                                   " bytes; 0 (no limit) or at least ", kMinMemory));
  }
  if (limits.cpus != 0 && !(limits.cpus >= 0.01 && limits.cpus <= 4096)) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "cpus: ", limits.cpus, "; 0 (no limit) or 0.01 to 4096"));
  }
  if (limits.pids_max < 0 || limits.pids_max > (1 << 22)) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "pids_max: ", limits.pids_max, "; 0 (no limit) or 1 to ", 1 << 22));
  }
  if (limits.cpuset_cpus.size() > 256 ||
      limits.cpuset_cpus.find_first_not_of("0123456789,-") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "cpuset_cpus: \"", limits.cpuset_cpus.substr(0, 256),
                                                   "\" is not a list of CPUs and ranges such as 0-3,6"));
  }
  return absl::OkStatus();
}

namespace {

}  // namespace

const std::string& CgroupTree::MountPoint() {
  static const std::string* const mount = new std::string(Cgroup2Mount());
  return *mount;
}

absl::StatusOr<std::unique_ptr<CgroupTree>> CgroupTree::Create() {
  std::string mount = MountPoint();
  if (mount.empty()) return absl::UnavailableError("no cgroup2 hierarchy is mounted");
  std::string own = OwnCgroup();
  if (own.empty()) return absl::UnavailableError("this process has no cgroup v2 path in /proc/self/cgroup");
  if (own == "/") own = "";
  // One parent per manager (several may live in one process): hostd-<pid>-<n>.
  static std::atomic<uint64_t> managers{0};
  std::string parent = absl::StrCat(mount, own, "/hostd-", getpid(), "-", ++managers);
  if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) {
    // Unavailable whatever errno says: the manager then falls back to process groups.
    return base::ErrnoError(absl::StatusCode::kUnavailable, errno, absl::StrCat("cannot create cgroup ", parent));
  }
  if (::access((parent + "/cgroup.procs").c_str(), W_OK) != 0) {
    ::rmdir(parent.c_str());
    return absl::UnavailableError(absl::StrCat("cgroup ", parent, " is not writable"));
  }
  std::string controllers = EnableControllers(parent);
  return std::unique_ptr<CgroupTree>(new CgroupTree(std::move(parent), std::move(controllers)));
}

CgroupTree::~CgroupTree() { ::rmdir(parent_.c_str()); }

absl::StatusOr<std::string> CgroupTree::CreateChild(const std::string& name) {
  std::string dir = absl::StrCat(parent_, "/", name, "-", ++serial_);
  if (::mkdir(dir.c_str(), 0755) != 0) {
    return base::ErrnoError(absl::StatusCode::kUnavailable, errno, absl::StrCat("cannot create cgroup ", dir));
  }
  return dir;
}

absl::Status CgroupTree::ApplyLimits(const std::string& dir, const CgroupLimits& limits) const {
  std::vector<std::pair<std::string, std::string>> writes;  // file, value
  if (limits.memory_max != 0) {
    writes.emplace_back("memory.max", absl::StrCat(limits.memory_max));
    writes.emplace_back("memory.oom.group", "1");
  }
  if (limits.cpus != 0) {
    constexpr int64_t kPeriod = 100000;
    writes.emplace_back("cpu.max", absl::StrCat(static_cast<int64_t>(limits.cpus * kPeriod + 0.5), " ", kPeriod));
  }
  if (limits.pids_max != 0) writes.emplace_back("pids.max", absl::StrCat(limits.pids_max));
  if (!limits.cpuset_cpus.empty()) writes.emplace_back("cpuset.cpus", limits.cpuset_cpus);
  std::vector<absl::string_view> have = absl::StrSplit(controllers_, ' ', absl::SkipEmpty());
  for (const auto& [file, value] : writes) {
    std::string controller = file.substr(0, file.find('.'));
    if (std::find(have.begin(), have.end(), controller) == have.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          file, " needs the cgroup v2 ", controller, " controller, which cgroup ", parent_, " does not have (enabled: ",
          controllers_.empty() ? "none" : controllers_, "): delegate it to hostd's cgroup"));
    }
    if (absl::Status s = base::WriteSmallFile(absl::StrCat(dir, "/", file), value); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("cannot set ", file, " to ", value, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

int64_t CgroupTree::OomKills(const std::string& dir) {
  absl::StatusOr<std::string> text = base::ReadSmallFile(dir + "/memory.events");
  if (!text.ok()) return 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    int64_t n = 0;
    if (absl::ConsumePrefix(&line, "oom_kill ") && absl::SimpleAtoi(line, &n)) return n;
  }
  return 0;
}

std::vector<pid_t> CgroupTree::Pids(const std::string& dir) {
  std::vector<pid_t> pids;
  absl::StatusOr<std::string> text = base::ReadSmallFile(dir + "/cgroup.procs");
  if (!text.ok()) return pids;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    int pid = 0;
    if (absl::SimpleAtoi(line, &pid) && pid > 0) pids.push_back(pid);
  }
  return pids;
}

void CgroupTree::KillAll(const std::string& dir) {
  if (WriteFile(dir + "/cgroup.kill", "1")) return;
  // Kernels before 5.14 have no cgroup.kill: signal each member.
  for (pid_t pid : Pids(dir)) ::kill(pid, SIGKILL);
}

absl::Status CgroupTree::Remove(const std::string& dir) {
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  const std::string events = dir + "/cgroup.events";
  while (::rmdir(dir.c_str()) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    if (errno != EBUSY || absl::Now() > deadline) {
      return base::ErrnoError(errno, absl::StrCat("cannot remove cgroup ", dir));
    }
    // Members are still exiting: wait for the kernel to report the cgroup empty
    // ("populated 0" in cgroup.events, signalled to poll() as POLLPRI).
    int fd = ::open(events.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    char buf[256];
    ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
    bool empty = n > 0 && absl::string_view(buf, static_cast<size_t>(n)).find("populated 0") != absl::string_view::npos;
    if (!empty) {
      pollfd p{fd, POLLPRI, 0};
      ::poll(&p, 1, static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(deadline - absl::Now()))));
    }
    ::close(fd);
  }
  return absl::OkStatus();
}

}  // namespace hostd::manager
