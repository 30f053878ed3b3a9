// Logging for hostd: spdlog, levelled, one logger per process.
//
// Library code logs through `hostd::base::Log()`; binaries call `InitLogging` once
// from main() to choose the level and format. Until then the logger writes warnings
// and errors to stderr, so tests stay quiet unless something is wrong.
//
// Events that operators and log collectors act on (a proc spawned, ready, ended,
// restarted...) go through `LogEvent`, with their facts as fields rather than text:
//
//   base::LogEvent(spdlog::level::info, "proc exited", {{"proc", name}, {"pid", pid}, {"exit_code", 3}});
//
// In the text format the fields follow the message as key=value (a string with
// spaces, quotes or '=' is JSON-quoted); in the json format each field is a member
// of the line's object, beside ts, level, pid, tid and msg. Time stamps carry their
// time zone in both formats.
#ifndef HOSTD_BASE_LOG_H_
#define HOSTD_BASE_LOG_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <variant>

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

// "text" (the default: time with zone, level, message, fields) or "json" (one
// object per line: ts, level, pid, tid, msg and the event's fields, encoded by
// nlohmann-json). InvalidArgument otherwise.
absl::Status SetLogFormat(absl::string_view format);

// One fact of a logged event: a key and a string, integer, floating-point or
// boolean value.
struct LogField {
  using Value = std::variant<std::string, int64_t, double, bool>;

  LogField(const char* k, absl::string_view v) : key(k), value(std::string(v)) {}
  LogField(const char* k, const char* v) : key(k), value(std::string(v)) {}
  LogField(const char* k, const std::string& v) : key(k), value(v) {}
  LogField(const char* k, bool v) : key(k), value(v) {}
  LogField(const char* k, double v) : key(k), value(v) {}
  template <typename I, std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>, int> = 0>
  LogField(const char* k, I v) : key(k), value(static_cast<int64_t>(v)) {}

  const char* key;
  Value value;
};

// Logs `msg` at `level` with `fields` (see the top of this file). Thread-safe;
// costs nothing beyond a level check when `level` is filtered out.
void LogEvent(spdlog::level::level_enum level, absl::string_view msg, std::initializer_list<LogField> fields);

}  // namespace hostd::base

#endif  // HOSTD_BASE_LOG_H_
