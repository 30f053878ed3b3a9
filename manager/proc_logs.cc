#include "manager/proc_logs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/log.h"

namespace hostd::manager {
namespace {

constexpr mode_t kLogMode = 0640;

// The proc name a file in the log directory belongs to ("" if none):
// <name>.stdout|.stderr, optionally followed by .<rotation>.
std::string OwnerOf(absl::string_view file) {
  size_t dot = file.rfind('.');
  if (dot != absl::string_view::npos && dot + 1 < file.size() &&
      std::all_of(file.begin() + dot + 1, file.end(), [](char c) { return absl::ascii_isdigit(c); })) {
    file = file.substr(0, dot);
  }
  for (absl::string_view suffix : {".stdout", ".stderr"}) {
    if (file.size() > suffix.size() && absl::EndsWith(file, suffix)) {
      return std::string(file.substr(0, file.size() - suffix.size()));
    }
  }
  return "";
}

// Copies `from` into a new file `to`, all of it at the time of the call.
absl::Status CopyFile(int from, const std::string& to) {
  base::UniqueFd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, kLogMode));
  if (!out.valid())
    return base::ErrnoError(absl::StatusCode::kFailedPrecondition, errno, absl::StrCat("creating ", to));
  off_t in_off = 0;
  for (;;) {
    ssize_t n = ::copy_file_range(from, &in_off, out.get(), nullptr, 1 << 20, 0);
    if (n == 0) return absl::OkStatus();
    if (n < 0) {
      if (errno == EINTR) continue;
      return base::ErrnoError(absl::StatusCode::kInternal, errno, absl::StrCat("copying into ", to));
    }
  }
}

}  // namespace

std::string ProcLogs::Path(const std::string& name, bool stderr_log, int rotation) const {
  std::string p = absl::StrCat(opts_.dir, "/", name, stderr_log ? ".stderr" : ".stdout");
  if (rotation > 0) absl::StrAppend(&p, ".", rotation);
  return p;
}

absl::StatusOr<std::pair<base::UniqueFd, base::UniqueFd>> ProcLogs::Open(const std::string& name, bool append) const {
  // O_APPEND in any case: after a rotation truncates the file the proc writes at
  // its new end, not past a hole.
  const int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | (append ? 0 : O_TRUNC);
  base::UniqueFd fds[2];
  for (bool err : {false, true}) {
    if (!append) {
      for (int r = 1; r <= opts_.rotations + 1; ++r) ::unlink(Path(name, err, r).c_str());
    }
    fds[err] = base::UniqueFd(::open(Path(name, err).c_str(), flags, kLogMode));
    if (!fds[err].valid()) {
      const int e = errno;
      if (e == ELOOP) {
        return absl::FailedPreconditionError(absl::StrCat("a symlink is where its log file goes, under ", opts_.dir,
                                                          "; hostd never writes through one"));
      }
      return base::ErrnoError(absl::StatusCode::kFailedPrecondition, e, absl::StrCat("log files under ", opts_.dir));
    }
  }
  return std::make_pair(std::move(fds[0]), std::move(fds[1]));
}

absl::Status ProcLogs::Rotate(const std::string& path) const {
  base::UniqueFd in(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
  if (!in.valid()) return base::ErrnoError(absl::StatusCode::kFailedPrecondition, errno, path);
  ::unlink(absl::StrCat(path, ".", opts_.rotations).c_str());
  for (int r = opts_.rotations - 1; r >= 1; --r) {
    (void)::rename(absl::StrCat(path, ".", r).c_str(), absl::StrCat(path, ".", r + 1).c_str());
  }
  absl::Status copied = CopyFile(in.get(), absl::StrCat(path, ".1"));
  if (::ftruncate(in.get(), 0) != 0) return base::ErrnoError(absl::StatusCode::kInternal, errno, path);
  return copied;
}

void ProcLogs::RotateOversized(const absl::flat_hash_set<std::string>& live,
                               const std::function<void(const std::string&, bool)>& rotated) const {
  if (opts_.max_bytes == 0) return;
  for (const std::string& name : live) {
    for (bool err : {false, true}) {
      std::string path = Path(name, err);
      struct stat st {};
      if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      if (static_cast<size_t>(st.st_size) <= opts_.max_bytes) continue;
      if (absl::Status s = Rotate(path); !s.ok()) {
        base::Log().warn("proc={} log rotation failed: {}", name, s.message());
      }
      if (rotated) rotated(name, err);
    }
  }
}

size_t ProcLogs::Prune(const absl::flat_hash_set<std::string>& live, absl::Time now) const {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(opts_.dir.c_str()), &::closedir);
  if (!dir) return 0;
  struct Owner {
    absl::Time last_write = absl::InfinitePast();
    std::vector<std::string> files;
  };
  absl::flat_hash_map<std::string, Owner> ended;
  while (dirent* e = ::readdir(dir.get())) {
    std::string owner = OwnerOf(e->d_name);
    if (owner.empty() || live.contains(owner)) continue;
    struct stat st {};
    std::string path = absl::StrCat(opts_.dir, "/", e->d_name);
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    Owner& o = ended[owner];
    o.last_write = std::max(o.last_write, absl::TimeFromTimespec(st.st_mtim));
    o.files.push_back(std::move(path));
  }
  std::vector<Owner*> by_age;
  for (auto& [name, o] : ended) by_age.push_back(&o);
  std::sort(by_age.begin(), by_age.end(), [](Owner* a, Owner* b) { return a->last_write > b->last_write; });
  size_t removed = 0;
  for (size_t i = 0; i < by_age.size(); ++i) {
    if (i < opts_.keep_ended && now - by_age[i]->last_write <= opts_.keep_age) continue;
    for (const std::string& f : by_age[i]->files) removed += ::unlink(f.c_str()) == 0;
  }
  return removed;
}

}  // namespace hostd::manager
