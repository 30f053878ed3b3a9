// Logging for hostd: spdlog, levelled, one logger per process.
//
// Library code logs through `hostd::base::Log()`; binaries call `InitLogging` once
// from main() to choose the level and format. Until then the logger writes warnings
// and errors to stderr, so tests stay quiet unless something is wrong.
#ifndef HOSTD_BASE_LOG_H_
#define HOSTD_BASE_LOG_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

// Debian builds Abseil with ABSL_OPTION_USE_STD_STRING_VIEW=0, so absl::string_view
// (what Status::message() returns) is its own type; teach fmt to print it.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Ctx>
  auto format(absl::string_view s, Ctx& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

namespace hostd::base {

// The process-wide hostd logger. Thread-safe.
spdlog::logger& Log();

// Sets the level by name ("trace", "debug", "info", "warn", "error", "off").
// An unknown name is an InvalidArgument error naming it.
absl::Status InitLogging(absl::string_view level);

// "text" (the default: time, level, message) or "json" (one object per line with
// ts, level, pid, tid and msg, for log collectors). InvalidArgument otherwise.
absl::Status SetLogFormat(absl::string_view format);

}  // namespace hostd::base

#endif  // HOSTD_BASE_LOG_H_
