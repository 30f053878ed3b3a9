#include "manager/usage.h"

#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "base/small_file.h"

namespace hostd::manager {
namespace {

// The fields of /proc/<pid>/stat after "(comm) ", which may itself hold spaces
// and parentheses: fields[0] is proc(5)'s field 3 (state).
std::optional<std::vector<std::string>> StatFields(pid_t pid) {
  absl::StatusOr<std::string> stat = base::ReadSmallFile(absl::StrCat("/proc/", pid, "/stat"), 4096);
  if (!stat.ok()) return std::nullopt;
  size_t paren = stat->rfind(')');
  if (paren == std::string::npos || paren + 2 > stat->size()) return std::nullopt;
  return absl::StrSplit(absl::string_view(*stat).substr(paren + 2), ' ');
}

}  // namespace

std::vector<pid_t> ProcessGroupMembers(pid_t pgid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    std::optional<std::vector<std::string>> f = StatFields(pid);
    pid_t group = 0;
    // pgrp is field 5: fields[2].
    if (f && f->size() > 2 && absl::SimpleAtoi((*f)[2], &group) && group == pgid) out.push_back(pid);
  }
  return out;
}

ProcUsage ReadUsage(const std::vector<pid_t>& pids) {
  static const long kTicks = ::sysconf(_SC_CLK_TCK);
  static const long kPage = ::sysconf(_SC_PAGESIZE);
  ProcUsage u;
  for (pid_t pid : pids) {
    std::optional<std::vector<std::string>> f = StatFields(pid);
    absl::StatusOr<std::string> statm = base::ReadSmallFile(absl::StrCat("/proc/", pid, "/statm"), 4096);
    if (!f || !statm.ok()) continue;
    std::vector<absl::string_view> m = absl::StrSplit(*statm, ' ');
    uint64_t utime = 0, stime = 0, pages = 0;
    // utime and stime are fields 14 and 15: fields[11] and fields[12].
    if (f->size() < 13 || m.size() < 2 || !absl::SimpleAtoi((*f)[11], &utime) || !absl::SimpleAtoi((*f)[12], &stime) ||
        !absl::SimpleAtoi(m[1], &pages)) {
      continue;
    }
    u.known = true;
    ++u.processes;
    u.cpu_seconds += static_cast<double>(utime + stime) / static_cast<double>(kTicks);
    u.rss_bytes += pages * static_cast<uint64_t>(kPage);
  }
  return u;
}

}  // namespace hostd::manager
