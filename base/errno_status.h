// ErrnoError: the one way hostd turns a failed system call into a Status.
//
//   if (::pipe2(fds, O_CLOEXEC) != 0) return base::ErrnoError(errno, "readiness pipe");
//   -> "readiness pipe: Too many open files" with the code Abseil maps EMFILE to
//
// The code follows absl::ErrnoToStatusCode (ENOENT -> NOT_FOUND, EACCES ->
// PERMISSION_DENIED, EMFILE -> RESOURCE_EXHAUSTED, ...). Where the caller knows
// better what the failure means to its own caller (a missing program is not a
// missing proc), it passes the code explicitly. `what` names the object and the
// operation; the text of errno is appended. Running out of descriptors (EMFILE,
// ENFILE) is always RESOURCE_EXHAUSTED, and the message also names the limit that
// ran out, its value, and how to raise it. Thread-safe.
#ifndef HOSTD_BASE_ERRNO_STATUS_H_
#define HOSTD_BASE_ERRNO_STATUS_H_

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace hostd::base {

// EMFILE / ENFILE: "<what>: Too many open files: hostd holds all 1024 descriptors
// its RLIMIT_NOFILE allows; ...".
absl::Status DescriptorsExhausted(int err, absl::string_view what);

inline absl::Status ErrnoError(int err, absl::string_view what) {
  if (err == EMFILE || err == ENFILE) return DescriptorsExhausted(err, what);
  return absl::ErrnoToStatus(err, what);
}

// "<what>: <strerror> (<errno name>)", e.g. "program \"/x\": No such file or directory (ENOENT)".
inline absl::Status ErrnoError(absl::StatusCode code, int err, absl::string_view what) {
  if (err == EMFILE || err == ENFILE) return DescriptorsExhausted(err, what);
  const char* name = ::strerrorname_np(err);
  return absl::Status(code, absl::StrCat(what, ": ", std::strerror(err), " (", name ? name : "errno", ")"));
}

}  // namespace hostd::base

#endif  // HOSTD_BASE_ERRNO_STATUS_H_
