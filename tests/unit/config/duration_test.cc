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

}  // namespace
}  // namespace sluice::config
