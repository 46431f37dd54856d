#include "autoscaler/keep_alive.h"

#include <gtest/gtest.h>

namespace sluice::autoscaler {
namespace {

using namespace std::chrono_literals;

const core::TimePoint t0{std::chrono::hours(1000)};

KeepAliveSpec spec(const std::string& text) {
  std::string why;
  auto s = parse_keep_alive(text, &why);
  EXPECT_TRUE(s) << why;
  return s.value_or(KeepAliveSpec{});
}

// A request (one busy second) at each of `at`.
void busy_at(KeepAlive& k, std::initializer_list<core::Duration> at) {
  for (auto a : at) {
    k.observe(t0 + a, true);
    k.observe(t0 + a + 1s, false);
  }
}

TEST(KeepAlive, ParsesItsThreeNamesAndSaysWhatIsWrong) {
  EXPECT_EQ(spec("kpa").mode, KeepAliveSpec::Mode::Kpa);
  EXPECT_EQ(spec("histogram").mode, KeepAliveSpec::Mode::Histogram);
  EXPECT_EQ(spec("fixed:10m").fixed, 10min);
  std::string why;
  EXPECT_FALSE(parse_keep_alive("fixed:0s", &why));
  EXPECT_NE(why.find("must be a positive duration"), std::string::npos) << why;
  EXPECT_FALSE(parse_keep_alive("always", &why));
  EXPECT_EQ(why,
            "\"always\": one of kpa, fixed:DURATION (e.g. fixed:10m), histogram, "
            "histogram:FALLBACK");
}

TEST(KeepAlive, KpaHoldsNothingAndFixedHoldsUntilItsTimeAfterTheLastRequest) {
  KeepAlive kpa(spec("kpa")), fixed(spec("fixed:10m"));
  busy_at(kpa, {0s});
  busy_at(fixed, {0s});
  EXPECT_EQ(kpa.hold(t0 + 5min).replicas, 0);
  EXPECT_EQ(fixed.hold(t0 + 1s + 9min).replicas, 1);
  EXPECT_EQ(fixed.hold(t0 + 1s + 9min).reason(), "keep-alive 600s after the last request");
  EXPECT_EQ(fixed.hold(t0 + 1s + 10min).replicas, 0);
  // Nothing is held before the first request ever came.
  KeepAlive fresh(spec("fixed:10m"));
  EXPECT_EQ(fresh.hold(t0).replicas, 0);
}

// Until 10 idle times are known, the histogram policy keeps one replica for its whole
// 4 h range after each busy spell.
TEST(KeepAlive, HistogramFallsBackToTheWholeRangeUntilItIsRepresentative) {
  KeepAlive k(spec("histogram"));
  busy_at(k, {0s, 30min, 60min});
  EXPECT_FALSE(k.representative());
  EXPECT_EQ(k.hold(t0 + 60min + 1s + 3h).replicas, 1);
  EXPECT_NE(k.hold(t0 + 60min + 1s + 3h).reason().find("not representative yet (2 idle times)"),
            std::string::npos);
  EXPECT_EQ(k.hold(t0 + 60min + 1s + 4h).replicas, 0);
}

// A service called every 30 minutes: idle times of 29-30 min all land in one bin. The
// policy lets the replica go, pre-warms it 10% before the head (less the start time),
// and keeps it until 10% past the tail.
TEST(KeepAlive, APeriodicServiceIsLetGoThenPreWarmedBeforeItsNextRequest) {
  KeepAliveSpec s = spec("histogram");
  s.start_lead = 20s;
  KeepAlive k(s);
  for (int i = 0; i < 12; ++i) busy_at(k, {i * 30min});
  ASSERT_TRUE(k.representative());
  EXPECT_EQ(k.head_minutes(), 30);  // 29 min 59 s idle: the bin [29, 30) min, upper edge 30
  EXPECT_EQ(k.tail_minutes(), 30);
  const auto end = t0 + 11 * 30min + 1s;       // the last busy spell ended here
  EXPECT_EQ(k.hold(end + 1min).replicas, 0);   // let go at once
  EXPECT_EQ(k.hold(end + 26min).replicas, 0);  // 27 min (30 less 10%) less 20 s: not yet
  EXPECT_EQ(k.hold(end + 26min + 41s).replicas, 1);
  EXPECT_EQ(k.hold(end + 26min + 41s).reason(), "pre-warm: next request expected in ~19 s");
  EXPECT_EQ(k.hold(end + 32min).reason(), "keep-alive: idle times' tail 30 min");
  EXPECT_EQ(k.hold(end + 33min).replicas, 0);  // 10% past the tail
}

// Idle times spread evenly over the range are no pattern: keep the fallback.
TEST(KeepAlive, IdleTimesWithoutAPatternAreNotRepresentative) {
  KeepAlive k(spec("histogram"));
  core::Duration at = 0s;
  for (int i = 0; i < 60; ++i) {
    busy_at(k, {at});
    at += 1s + std::chrono::minutes(1 + (i * 37) % 230);
  }
  EXPECT_EQ(k.samples(), 59u);
  EXPECT_FALSE(k.representative());
}

// Mostly beyond 4 h: the histogram cannot say when; fall back.
TEST(KeepAlive, IdleTimesMostlyBeyondTheRangeAreNotRepresentative) {
  KeepAlive k(spec("histogram"));
  core::Duration at = 0s;
  for (int i = 0; i < 30; ++i) {
    busy_at(k, {at});
    at += i % 3 == 0 ? 10min : 5h;
  }
  EXPECT_FALSE(k.representative());
}

}  // namespace
}  // namespace sluice::autoscaler
