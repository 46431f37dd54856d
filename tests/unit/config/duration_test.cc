#include "config/duration.h"

#include <gtest/gtest.h>

namespace sluice::config {
namespace {

using namespace std::chrono_literals;

TEST(Duration, ParsesGoStyleAndBareSeconds) {
  EXPECT_EQ(parse_duration("300"), Millis(300s));
  EXPECT_EQ(parse_duration("250ms"), Millis(250));
  EXPECT_EQ(parse_duration("1.5s"), Millis(1500));
  EXPECT_EQ(parse_duration("2m"), Millis(120s));
  EXPECT_EQ(parse_duration("1h30m"), Millis(90min));
}

TEST(Duration, RejectsWithAMessageNamingTheProblem) {
  std::string why;
  EXPECT_FALSE(parse_duration("10 minutes", &why));
  EXPECT_NE(why.find("10 minutes"), std::string::npos) << why;
  EXPECT_FALSE(parse_duration("5d", &why));
  EXPECT_NE(why.find("unknown unit \"d\""), std::string::npos) << why;
  EXPECT_FALSE(parse_duration("", &why));
  EXPECT_FALSE(parse_duration("s", &why));
}

TEST(Duration, FormatsWholeSecondsAsSeconds) {
  EXPECT_EQ(format_duration(Millis(30000)), "30s");
  EXPECT_EQ(format_duration(Millis(250)), "250ms");
}

// 42010847252s overflowed converting to nanoseconds (found by fuzz_service): the limit
// is Go's, so every accepted value fits core::Duration.
TEST(Duration, LongerThanGoAllowsIsOutOfRange) {
  std::string why;
  EXPECT_FALSE(parse_duration("42010847252s", &why));
  EXPECT_NE(why.find("out of range"), std::string::npos) << why;
  EXPECT_FALSE(parse_duration("2562048h", &why));
  auto max = parse_duration("2562047h");
  ASSERT_TRUE(max);
  EXPECT_LT(max->count(),
            std::chrono::duration_cast<Millis>(std::chrono::nanoseconds::max()).count());
}

// "µs" never parsed: the unit scan stopped at the first byte of the UTF-8 µ.
TEST(Duration, MicrosecondsInEverySpellingGoAccepts) {
  for (const char* text : {"1500us", "1500\u00b5s", "1500\u03bcs", "1500000ns"}) {
    std::string why;
    auto d = parse_duration(text, &why);
    ASSERT_TRUE(d) << text << ": " << why;
    EXPECT_EQ(d->count(), 2) << text;  // 1.5 ms rounds to 2
  }
  std::string why;
  EXPECT_FALSE(parse_duration("5\xff", &why));
  EXPECT_NE(why.find("unknown unit"), std::string::npos) << why;
}

}  // namespace
}  // namespace sluice::config
