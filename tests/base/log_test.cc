// libstdc++ 12's <regex> trips -Wmaybe-uninitialized in its own code when built
// with -O1 and the sanitizers (the asan preset); the warning is not about this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <regex>
#include <sstream>
#include <string>

#include "base/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "spdlog/sinks/ostream_sink.h"

namespace hostd::base {
namespace {

using ::testing::HasSubstr;

// Captures what the hostd logger writes, in `format`, for one test; puts the
// logger back as it was afterwards.
class CapturedLog {
 public:
  explicit CapturedLog(const char* format) : sink_(std::make_shared<spdlog::sinks::ostream_sink_st>(out_)) {
    old_level_ = Log().level();
    Log().sinks().push_back(sink_);
    Log().set_level(spdlog::level::info);
    EXPECT_TRUE(SetLogFormat(format).ok());
  }
  ~CapturedLog() {
    Log().sinks().pop_back();
    Log().set_level(old_level_);
    (void)SetLogFormat("text");
  }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_st> sink_;
  spdlog::level::level_enum old_level_;
};

TEST(LogTest, JsonEventsAreObjectsWithTheirFieldsAndAZonedTime) {
  std::string line;
  {
    CapturedLog log("json");
    LogEvent(spdlog::level::info, "proc exited",
             {{"proc", "w\"1\n"},
              {"pid", 42},
              {"exit_code", 3},
              {"core_dumped", false},
              {"share", 0.5},
              {"tail", std::string("bad \xff utf-8")}});
    line = log.text();
  }
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << line;
  EXPECT_EQ(j["msg"], "proc exited");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["proc"], "w\"1\n");
  EXPECT_EQ(j["pid"], 42);
  EXPECT_EQ(j["exit_code"], 3);
  EXPECT_EQ(j["core_dumped"], false);
  EXPECT_EQ(j["share"], 0.5);
  EXPECT_THAT(j["tail"].get<std::string>(), HasSubstr("bad "));  // invalid UTF-8 replaced, not lost
  EXPECT_TRUE(
      std::regex_match(j["ts"].get<std::string>(), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d)")))
      << j["ts"];
}

TEST(LogTest, PlainLogLinesInJsonAreObjectsToo) {
  std::string line;
  {
    CapturedLog log("json");
    Log().info("a \"quoted\" {}", "word");
    line = log.text();
  }
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << line;
  EXPECT_EQ(j["msg"], "a \"quoted\" word");
}

TEST(LogTest, TextEventsPutTheFieldsAfterTheMessage) {
  std::string line;
  {
    CapturedLog log("text");
    LogEvent(spdlog::level::info, "proc killed", {{"proc", "w1"}, {"signal", 9}, {"reason", "out of memory"}});
    line = log.text();
  }
  EXPECT_THAT(line, HasSubstr("proc killed proc=w1 signal=9 reason=\"out of memory\""));
  EXPECT_TRUE(std::regex_search(line, std::regex(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d info)")))
      << line;
}

TEST(LogTest, FilteredEventsAreNotWritten) {
  CapturedLog log("json");
  LogEvent(spdlog::level::debug, "noise", {{"x", 1}});
  EXPECT_EQ(log.text(), "");
}

}  // namespace
}  // namespace hostd::base
