#include "base/log.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "spdlog/sinks/stdout_color_sinks.h"

namespace hostd::base {

spdlog::logger& Log() {
  // Leaked on purpose: loggers may be used from threads still running during exit.
  static spdlog::logger* const logger = [] {
    auto* l = new spdlog::logger("hostd", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    l->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
    l->set_level(spdlog::level::warn);
    return l;
  }();
  return *logger;
}

absl::Status InitLogging(absl::string_view level) {
  spdlog::level::level_enum parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(absl::StrCat(
        "log level \"", level, "\" is not one of trace, debug, info, warn, error, off"));
  }
  Log().set_level(parsed);
  return absl::OkStatus();
}

}  // namespace hostd::base
