#include "base/log.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "spdlog/pattern_formatter.h"
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
    return absl::InvalidArgumentError(
        absl::StrCat("log level \"", level, "\" is not one of trace, debug, info, warn, error, off"));
  }
  Log().set_level(parsed);
  return absl::OkStatus();
}

namespace {

// %* in a pattern: the message as the inside of a JSON string.
class JsonEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    for (char c : msg.payload) {
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            int n = snprintf(buf, sizeof(buf), "\\u%04x", c);
            dest.append(std::string_view(buf, n));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonEscapedMessage>(); }
};

}  // namespace

absl::Status SetLogFormat(absl::string_view format) {
  if (format == "text") {
    Log().set_formatter(std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v"));
    return absl::OkStatus();
  }
  if (format == "json") {
    auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    f->add_flag<JsonEscapedMessage>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","pid":%P,"tid":%t,"msg":"%*"})");
    Log().set_formatter(std::move(f));
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("log format \"", format, "\" is not one of text, json"));
}

}  // namespace hostd::base
