#include "base/errno_status.h"

#include <sys/resource.h>

namespace hostd::base {

absl::Status DescriptorsExhausted(int err, absl::string_view what) {
  if (err == ENFILE) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, ": ", std::strerror(err),
                     ": the system-wide limit on open files is reached (sysctl fs.file-max); raise it or close files"));
  }
  rlimit lim{};
  std::string limit = ::getrlimit(RLIMIT_NOFILE, &lim) == 0 ? absl::StrCat(lim.rlim_cur) : "the";
  return absl::ResourceExhaustedError(
      absl::StrCat(what, ": ", std::strerror(err), ": hostd holds all ", limit,
                   " descriptors its RLIMIT_NOFILE allows; close connections, or raise the limit (LimitNOFILE= "
                   "in the systemd unit, ulimit -n)"));
}

}  // namespace hostd::base
