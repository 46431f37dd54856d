#include "sim/synthesize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "sim/trace.h"

namespace sluice::sim {
namespace {

Trace read_back(const SynthDay& day) {
  core::FastRandom spread(1);
  auto r = read_azure2019(day.invocations, "inv.csv", day.durations, "dur.csv", {}, spread);
  if (auto* err = std::get_if<std::string>(&r)) {
    ADD_FAILURE() << *err;
    return {};
  }
  return std::get<Trace>(std::move(r));
}

// The published shape of the 2019 dataset, checked on 2,000 synthesized apps (rates
// clamped at 5,000/day to keep the test small: that only touches apps above both
// thresholds checked).
TEST(Synthesize, RatesFollowThePublishedQuantilesAndTheFilesReadBack) {
  core::FastRandom random(2019);
  SynthOptions opt;
  opt.services = 2000;
  opt.max_daily_rate = 5e3;
  const auto days = synthesize(opt, random);
  ASSERT_EQ(days.size(), 1u);
  const Trace t = read_back(days[0]);
  ASSERT_EQ(t.services.size(), 2000u);
  std::vector<uint64_t> per(2000, 0);
  for (const auto& inv : t.invocations) ++per[inv.service];
  int hourly = 0, minutely = 0;
  for (uint64_t n : per) {
    hourly += n <= 24;
    minutely += n <= 1440;
  }
  // 45% and 81% of apps; ±4.5 points is more than 4 binomial sigmas at n = 2,000 (the
  // day's count of an app near a threshold is itself random, which widens it a little).
  EXPECT_NEAR(hourly / 2000.0, 0.45, 0.045);
  EXPECT_NEAR(minutely / 2000.0, 0.81, 0.045);
  // Execution times: the apps' medians are log-normal(−0.38, 2.36) in seconds (clamped
  // at 1 ms and 10 min, which pulls the spread in a little).
  double sum = 0, sq = 0;
  int n = 0;
  std::map<uint32_t, bool> seen;
  for (const auto& inv : t.invocations) {
    if (seen[inv.service])
      continue;
    seen[inv.service] = true;
    const double l = std::log(inv.duration_s);
    sum += l;
    sq += l * l;
    ++n;
  }
  ASSERT_GT(n, 1000);
  const double mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
  EXPECT_NEAR(mean, -0.38, 0.3);
  EXPECT_NEAR(sd, 2.2, 0.35);
}

TEST(Synthesize, TheSameSeedWritesTheSameFilesAndDaysFollowOn) {
  SynthOptions opt;
  opt.services = 50;
  opt.days = 2;
  opt.max_daily_rate = 1e4;
  core::FastRandom a(7), b(7), c(8);
  const auto x = synthesize(opt, a), y = synthesize(opt, b), z = synthesize(opt, c);
  ASSERT_EQ(x.size(), 2u);
  EXPECT_EQ(x[0].invocations, y[0].invocations);
  EXPECT_EQ(x[1].durations, y[1].durations);
  EXPECT_NE(x[0].invocations, z[0].invocations);
  EXPECT_NE(x[0].invocations, x[1].invocations);  // day 2 is its own day
  EXPECT_EQ(read_back(x[1]).services.size(), 50u);
}

// The diurnal cycle: summed over Poisson-like load, the busiest hour of the day carries
// about twice the quietest (peak 4/3, trough 2/3 of the mean), not the same.
TEST(Synthesize, LoadFollowsADiurnalCycleOnAFiftyPercentFloor) {
  SynthOptions opt;
  opt.services = 300;
  opt.max_daily_rate = 2e4;
  core::FastRandom random(11);
  const Trace t = read_back(synthesize(opt, random)[0]);
  std::vector<double> hours(24, 0);
  for (const auto& inv : t.invocations) hours[static_cast<size_t>(inv.arrival_s / 3600)] += 1;
  const double hi = *std::max_element(hours.begin(), hours.end());
  const double lo = *std::min_element(hours.begin(), hours.end());
  // Phases spread over ±3 h flatten the sum a little: between 1.4× and 2.3×.
  EXPECT_GT(hi / lo, 1.4);
  EXPECT_LT(hi / lo, 2.3);
}

}  // namespace
}  // namespace sluice::sim
