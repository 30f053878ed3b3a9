#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_color_sinks.h"

namespace hostd::base {
namespace {

// %z prints the offset from UTC ("+00:00"), so a line read elsewhere keeps its time.
constexpr char kTextPattern[] = "%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ [%n] %v";

std::atomic<bool> json_format{false};

// The fields of the event being logged on this thread, for the JSON formatter:
// spdlog's synchronous logger formats on the calling thread, inside the log call.
thread_local const std::initializer_list<LogField>* current_fields = nullptr;

nlohmann::json ToJson(const LogField::Value& v) {
  return std::visit([](const auto& x) { return nlohmann::json(x); }, v);
}

// One JSON object per line. nlohmann-json does the encoding; bytes that are not
// UTF-8 (a proc's stderr tail, say) are replaced rather than failing the line.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    nlohmann::ordered_json line;
    line["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E6S%Ez", absl::FromChrono(msg.time), absl::LocalTimeZone());
    line["level"] =
        std::string(spdlog::level::to_string_view(msg.level).data(), spdlog::level::to_string_view(msg.level).size());
    line["pid"] = static_cast<int64_t>(getpid());
    line["tid"] = static_cast<int64_t>(msg.thread_id);
    line["msg"] = std::string(msg.payload.data(), msg.payload.size());
    if (current_fields != nullptr) {
      for (const LogField& f : *current_fields) line[f.key] = ToJson(f.value);
    }
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

// key=value; strings that would be ambiguous unquoted are JSON-quoted.
void AppendText(std::string& out, const LogField& f) {
  absl::StrAppend(&out, " ", f.key, "=");
  std::visit(
      [&out](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          bool plain = !x.empty() && x.find_first_of(" \"=\n\t\\") == std::string::npos;
          out += plain ? x : nlohmann::json(x).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        } else if constexpr (std::is_same_v<T, bool>) {
          out += x ? "true" : "false";
        } else {
          absl::StrAppend(&out, x);
        }
      },
      f.value);
}

}  // namespace

spdlog::logger& Log() {
  // Leaked on purpose: loggers may be used from threads still running during exit.
  static spdlog::logger* const logger = [] {
    auto* l = new spdlog::logger("hostd", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    l->set_pattern(kTextPattern);
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

absl::Status SetLogFormat(absl::string_view format) {
  if (format == "text") {
    Log().set_formatter(std::make_unique<spdlog::pattern_formatter>(kTextPattern));
    json_format = false;
    return absl::OkStatus();
  }
  if (format == "json") {
    Log().set_formatter(std::make_unique<JsonFormatter>());
    json_format = true;
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("log format \"", format, "\" is not one of text, json"));
}

void LogEvent(spdlog::level::level_enum level, absl::string_view msg, std::initializer_list<LogField> fields) {
  spdlog::logger& log = Log();
  if (!log.should_log(level)) return;
  if (json_format.load(std::memory_order_relaxed)) {
    current_fields = &fields;
    log.log(level, "{}", msg);
    current_fields = nullptr;
    return;
  }
  std::string line(msg);
  for (const LogField& f : fields) AppendText(line, f);
  log.log(level, "{}", line);
}

}  // namespace hostd::base
