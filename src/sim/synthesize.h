// sim/synthesize.h
//
// A trace made from the published statistics of the Azure Functions 2019 dataset
// (Shahrad et al., "Serverless in the Wild", ATC'20), written in that dataset's own
// format (per-minute invocation counts per function, and each function's execution-time
// percentiles), so it is read back exactly as the real files are. Seeded: the same
// options give the same files.
//
// Per app (one function each), drawn once:
//   daily rate   log10(invocations/day) piecewise linear in the quantile through the
//                published points: 45% of apps at most once an hour (≤ 24/day), 81% at
//                most once a minute (≤ 1,440/day), 98% ≤ 10^5/day; from 10^-1 to 10^7 a
//                day (8 orders of magnitude).
//   pattern      40% bursty: Weibull inter-arrivals of shape 0.5 (CV ≈ 2.2 > 1);
//                30% Poisson (CV 1); 30% timer-like: a fixed period with 2% jitter
//                (CV ≈ 0), as timer triggers are.
//   diurnal      the rate follows 1 + sin(2π(t − phase)/day)/3: the trough is 50% of the
//                peak; the phase is the app's (its users' time zone), within ±3 h.
//   durations    the app's mean execution time is log-normal, log-mean −0.38 and σ 2.36
//                (seconds), clamped to [1 ms, 10 min] (Azure's limit); one invocation
//                varies around it by a log-normal of σ 0.3.
// Arrivals are drawn in the app's own time (a unit-rate renewal process) and mapped to the
// clock through the diurnal rate, minute by minute; then counted per minute.
//
// Threading: pure; the caller owns the Random.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/random.h"

namespace sluice::sim {

struct SynthOptions {
  uint32_t services = 1000;
  uint32_t days = 1;
  // Rates above this are clamped to it (the top 2% of apps; smaller traces for tests).
  double max_daily_rate = 1e7;
};

struct SynthDay {
  std::string invocations;  // invocations_per_function_md.anon.dNN.csv
  std::string durations;    // function_durations_percentiles.anon.dNN.csv
};

// Hands each day to `each` as soon as it is made (only one day is ever held: a year of
// 100,000 services would not fit in memory); `each` returning false stops. False when
// stopped.
bool synthesize(const SynthOptions& options,
                core::Random& random,
                const std::function<bool(uint32_t day, SynthDay)>& each);
// All days at once (tests, small traces).
std::vector<SynthDay> synthesize(const SynthOptions& options, core::Random& random);

}  // namespace sluice::sim
