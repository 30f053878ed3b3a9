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
  return std::unique_ptr<CgroupTree>(new CgroupTree(std::move(parent)));
}

CgroupTree::~CgroupTree() { ::rmdir(parent_.c_str()); }

absl::StatusOr<std::string> CgroupTree::CreateChild(const std::string& name) {
  std::string dir = absl::StrCat(parent_, "/", name, "-", ++serial_);
  if (::mkdir(dir.c_str(), 0755) != 0) {
    return base::ErrnoError(absl::StatusCode::kUnavailable, errno, absl::StrCat("cannot create cgroup ", dir));
  }
  return dir;
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
