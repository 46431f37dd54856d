#include "sim/synthesize.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "sim/trace.h"

namespace sluice::sim {

namespace {

constexpr int kMinutes = 1440;
constexpr double kPi = 3.14159265358979323846;

// log10(invocations per day) at the quantiles of apps (see the header).
constexpr std::array<double, 5> kRateQuantile = {0, 0.45, 0.81, 0.98, 1.0};
constexpr std::array<double, 5> kRateLog10 = {-1, 1.380211, 3.158362, 5, 7};

enum class Pattern { Bursty, Poisson, Timer };

double standard_normal(core::Random& random) {
  // Box-Muller; 1 - u keeps the logarithm finite.
  const double u = 1.0 - uniform01(random);
  const double v = uniform01(random);
  return std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * kPi * v);
}

double daily_rate(double u) {
  size_t i = 1;
  while (i + 1 < kRateQuantile.size() && u > kRateQuantile[i]) ++i;
  const double f = (u - kRateQuantile[i - 1]) / (kRateQuantile[i] - kRateQuantile[i - 1]);
  return std::pow(10.0, kRateLog10[i - 1] + f * (kRateLog10[i] - kRateLog10[i - 1]));
}

// One gap of the app's renewal process, mean `mean`.
double gap(Pattern p, double mean, core::Random& random) {
  const double u = 1.0 - uniform01(random);  // (0, 1]
  switch (p) {
    case Pattern::Bursty:
      // Weibull, shape 0.5: scale = mean / Γ(1 + 1/0.5) = mean / 2.
      return mean / 2.0 * std::pow(-std::log(u), 2.0);
    case Pattern::Poisson:
      return -mean * std::log(u);
    case Pattern::Timer:
      return mean * (1.0 + 0.04 * (uniform01(random) - 0.5));
  }
  return mean;
}

struct App {
  double rate_per_day = 1;
  Pattern pattern = Pattern::Poisson;
  double phase_min = 0;    // of the diurnal cycle
  double median_s = 1;     // execution time
  double next_op_day = 0;  // the next arrival, in the app's own time (days)
};

}  // namespace

bool synthesize(const SynthOptions& options,
                core::Random& random,
                const std::function<bool(uint32_t, SynthDay)>& each) {
  std::vector<App> apps(options.services);
  for (auto& a : apps) {
    a.rate_per_day = std::min(daily_rate(uniform01(random)), options.max_daily_rate);
    const double p = uniform01(random);
    a.pattern = p < 0.4 ? Pattern::Bursty : p < 0.7 ? Pattern::Poisson : Pattern::Timer;
    a.phase_min = (uniform01(random) - 0.5) * 360.0;
    a.median_s = std::clamp(std::exp(-0.38 + 2.36 * standard_normal(random)), 0.001, 600.0);
    // A stationary start: somewhere inside the first gap.
    a.next_op_day = uniform01(random) * gap(a.pattern, 1.0 / a.rate_per_day, random);
  }
  // The app's own time at the start of each minute of a day, per unit of phase: the
  // diurnal rate integrated minute by minute (its mean over a day is 1).
  std::vector<uint64_t> counts(kMinutes);
  std::vector<double> op_at(kMinutes + 1);
  for (uint32_t d = 0; d < options.days; ++d) {
    std::string inv = "HashOwner,HashApp,HashFunction,Trigger";
    for (int m = 1; m <= kMinutes; ++m) inv += fmt::format(",{}", m);
    inv += '\n';
    std::string dur =
        "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,"
        "percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,"
        "percentile_Average_99,percentile_Average_100\n";
    for (size_t i = 0; i < apps.size(); ++i) {
      App& a = apps[i];
      op_at[0] = d;
      for (int m = 0; m < kMinutes; ++m) {
        const double rate = 1.0 + std::sin(2.0 * kPi * (m + 0.5 - a.phase_min) / kMinutes) / 3.0;
        op_at[m + 1] = op_at[m] + rate / kMinutes;
      }
      std::fill(counts.begin(), counts.end(), 0);
      uint64_t total = 0;
      int minute = 0;
      const double mean = 1.0 / a.rate_per_day;
      while (a.next_op_day < op_at[kMinutes]) {
        while (a.next_op_day >= op_at[minute + 1]) ++minute;
        ++counts[minute];
        ++total;
        a.next_op_day += gap(a.pattern, mean, random);
      }
      const std::string owner = fmt::format("owner{:05d}", i), app = fmt::format("app{:05d}", i),
                        fn = fmt::format("fn{:05d}", i);
      inv += fmt::format("{},{},{},{}", owner, app, fn,
                         a.pattern == Pattern::Timer ? "timer" : "http");
      for (uint64_t c : counts) inv += fmt::format(",{}", c);
      inv += '\n';
      // Execution times around the app's median: log-normal, σ 0.3, at the published
      // percentiles (0 and 100 at ±3.5 σ).
      constexpr std::array<double, 7> z = {-3.5, -2.326348, -0.674490, 0, 0.674490, 2.326348, 3.5};
      std::array<double, 7> ms{};
      for (size_t k = 0; k < z.size(); ++k) ms[k] = a.median_s * std::exp(0.3 * z[k]) * 1000.0;
      dur += fmt::format("{},{},{},{:.3f},{},{:.3f},{:.3f}", owner, app, fn,
                         a.median_s * std::exp(0.045) * 1000.0, total, ms[0], ms[6]);
      for (double v : ms) dur += fmt::format(",{:.3f}", v);
      dur += '\n';
    }
    if (!each(d, {std::move(inv), std::move(dur)}))
      return false;
  }
  return true;
}

std::vector<SynthDay> synthesize(const SynthOptions& options, core::Random& random) {
  std::vector<SynthDay> days;
  synthesize(options, random, [&](uint32_t, SynthDay day) {
    days.push_back(std::move(day));
    return true;
  });
  return days;
}

}  // namespace sluice::sim
