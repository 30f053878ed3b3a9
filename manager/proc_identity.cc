#include "manager/proc_identity.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/small_file.h"

namespace hostd::manager {
namespace {

absl::Status Gone(pid_t pid, const absl::Status& s) {
  return absl::NotFoundError(absl::StrCat("process ", pid, " is gone (", s.message(), ")"));
}

}  // namespace

absl::StatusOr<uint64_t> ProcStartTime(pid_t pid) {
  absl::StatusOr<std::string> stat = base::ReadSmallFile(absl::StrCat("/proc/", pid, "/stat"), 4096);
  if (!stat.ok()) return Gone(pid, stat.status());
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return absl::InternalError(absl::StrCat("/proc/", pid, "/stat: no command name"));
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(*stat).substr(close + 1), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state); the start time is field 22.
  uint64_t start = 0;
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &start)) {
    return absl::InternalError(absl::StrCat("/proc/", pid, "/stat: no start time"));
  }
  return start;
}

absl::StatusOr<std::string> ProcCgroupPath(pid_t pid) {
  absl::StatusOr<std::string> text = base::ReadSmallFile(absl::StrCat("/proc/", pid, "/cgroup"), 64 * 1024);
  if (!text.ok()) return Gone(pid, text.status());
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (absl::ConsumePrefix(&line, "0::")) return std::string(line);
  }
  return std::string();
}

}  // namespace hostd::manager
