#include <string>

#include "base/quote.h"
#include "gtest/gtest.h"

namespace hostd::base {
namespace {

TEST(QuoteTest, ShortInputIsQuotedAndEscaped) {
  EXPECT_EQ(Quote("proc-1"), "\"proc-1\"");
  EXPECT_EQ(Quote(std::string("a\0z\n", 4)), "\"a\\x00z\\n\"");
}

TEST(QuoteTest, LongInputIsCutAndSaysHowLongItWas) {
  std::string q = Quote(std::string(1 << 20, 'x'));
  EXPECT_LT(q.size(), 2 * kQuoteMaxBytes);
  EXPECT_NE(q.find("(1048576 bytes)"), std::string::npos) << q;
}

}  // namespace
}  // namespace hostd::base
