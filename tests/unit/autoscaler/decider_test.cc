#include "autoscaler/decider.h"

#include <gtest/gtest.h>

namespace sluice::autoscaler {
namespace {

using namespace std::chrono_literals;

// Hand-computed cases of spec/knative-1.18.md §3.5, each from a fresh decider.
struct Case {
  const char* name;
  DeciderSpec spec;
  Observation obs;
  int32_t desired;
  int32_t ebc;
  bool panicking;
};

DeciderSpec defaults_cc0() {
  DeciderSpec s;  // CC = 0: total 100, target 70
  s.target = 70;
  s.total_target = 100;
  return s;
}
DeciderSpec with(DeciderSpec s, void (*change)(DeciderSpec&)) {
  change(s);
  return s;
}

TEST(DeciderTest, HandComputedTable) {
  const Case cases[] = {
      // The worked example: T=70, dspc=ceil(350/70)=5, dppc=ceil(800/70)=12, 12/5=2.4≥2
      // → panic, desired 12; EBC = floor(5×100 − 211 − 800) = −511.
      {"worked example", defaults_cc0(), {350, 800, 5}, 12, -511, true},
      // Steady load under the threshold: stable decides. EBC = 3×100−211−100 = −11.
      {"stable", defaults_cc0(), {140, 100, 3}, 2, -11, false},
      // Exactly at the panic threshold (dppc/R = 2): panic.
      {"threshold is inclusive", defaults_cc0(), {70, 140, 1}, 2, -251, true},
      // Scale down limited to floor(R / 2): from 8 with no load, at most down to 4.
      {"max scale-down rate", defaults_cc0(), {0, 0, 8}, 4, 589, false},
      // From zero ready pods: R = max(1, 0); the first request's poke (1 concurrent)
      // asks for 1; panic needs dppc/1 ≥ 2, not met.
      {"poke from zero", defaults_cc0(), {1, 1, 0}, 1, -212, false},
      // Scale-up rate 2: from 2 pods at most ceil(2 × 2) = 4 (stable wants 10). Panic
      // (10/2 ≥ 2): panic pods are capped the same way.
      {"max scale-up rate",
       with(defaults_cc0(), [](DeciderSpec& s) { s.max_scale_up_rate = 2; }),
       {700, 700, 2},
       4,
       -711,
       true},
      // Activation scale 3 lifts a non-zero decision of 1 to 3.
      {"activation scale",
       with(defaults_cc0(), [](DeciderSpec& s) { s.activation_scale = 3; }),
       {10, 10, 0},
       3,
       -221,
       false},
      // Activation scale does not lift zero.
      {"activation scale keeps zero",
       with(defaults_cc0(), [](DeciderSpec& s) { s.activation_scale = 3; }),
       {0, 0, 0},
       0,
       -211,
       false},
      // TBC 0 → EBC 0; TBC −1 → EBC −1.
      {"tbc 0",
       with(defaults_cc0(), [](DeciderSpec& s) { s.target_burst_capacity = 0; }),
       {70, 70, 1},
       1,
       0,
       false},
      {"tbc -1",
       with(defaults_cc0(), [](DeciderSpec& s) { s.target_burst_capacity = -1; }),
       {70, 70, 1},
       1,
       -1,
       false},
      // CC = 10: target 7, total 10. 30 concurrent on 4 pods: dspc 5, dppc 5 (5/4 < 2).
      // EBC = 4×10 − 211 − 30 = −201.
      {"cc 10",
       with(defaults_cc0(),
            [](DeciderSpec& s) {
              s.target = 7;
              s.total_target = 10;
            }),
       {30, 30, 4},
       5,
       -201,
       false},
      // Unreachable revisions may drop straight to zero (max down 0).
      {"unreachable",
       with(defaults_cc0(), [](DeciderSpec& s) { s.reachable = false; }),
       {0, 0, 6},
       0,
       389,
       false},
  };
  const core::TimePoint now{std::chrono::hours(1000)};
  for (const auto& c : cases) {
    Decider d(c.spec, /*ready at start*/ 0, now);
    const Decision got = d.decide(c.obs, now);
    EXPECT_EQ(got.desired, c.desired) << c.name;
    EXPECT_EQ(got.excess_burst_capacity, c.ebc) << c.name;
    EXPECT_EQ(got.panicking, c.panicking) << c.name;
  }
}

TEST(DeciderTest, PanicHoldsTheMaximumAndExitsAfterAStableWindowBelowThreshold) {
  core::ManualTimeSource clock;
  Decider d(defaults_cc0(), 0, clock.now());
  EXPECT_EQ(d.decide({350, 800, 5}, clock.now()).desired, 12);
  clock.advance(2s);
  // Load falls: stable wants 5, panic 6 (6/5 < 2): still panicking, never scales down.
  Decision held = d.decide({350, 400, 5}, clock.now());
  EXPECT_TRUE(held.panicking);
  EXPECT_EQ(held.desired, 12);
  clock.advance(58s);  // exactly a stable window after the last over-threshold tick
  EXPECT_TRUE(d.decide({350, 400, 12}, clock.now()).panicking) << "exit needs > window";
  clock.advance(2s);
  Decision out = d.decide({350, 400, 12}, clock.now());
  EXPECT_FALSE(out.panicking);
  EXPECT_EQ(out.desired, 6) << "stable: ceil(350/70)=5, but max down floor(12/2)=6";
}

TEST(DeciderTest, PanicIsExtendedWhileOverThreshold) {
  core::ManualTimeSource clock;
  Decider d(defaults_cc0(), 0, clock.now());
  d.decide({350, 800, 5}, clock.now());
  clock.advance(50s);
  EXPECT_EQ(d.decide({350, 1400, 6}, clock.now()).desired, 20) << "ceil(1400/70)";
  clock.advance(40s);  // 90 s after entering, 40 s after the last over-threshold tick
  EXPECT_TRUE(d.decide({70, 70, 20}, clock.now()).panicking);
  EXPECT_EQ(d.decide({70, 70, 20}, clock.now()).desired, 20);
}

TEST(DeciderTest, StartsInPanicWithMoreThanOneReadyPod) {
  core::ManualTimeSource clock;
  Decider d(defaults_cc0(), 4, clock.now());
  EXPECT_TRUE(d.panicking());
  EXPECT_EQ(d.decide({0, 0, 4}, clock.now()).desired, 4) << "no scale-down after a restart";
  EXPECT_EQ(d.initial_excess_burst_capacity(), 100 - 211);
  Decider single(defaults_cc0(), 1, clock.now());
  EXPECT_FALSE(single.panicking());
}

TEST(DeciderTest, ScaleDownDelayHoldsThePeakForTheDelay) {
  core::ManualTimeSource clock;
  DeciderSpec s = defaults_cc0();
  s.scale_down_delay = 10s;
  s.max_scale_down_rate = 1000;  // let the delay alone hold the scale
  Decider d(s, 0, clock.now());
  EXPECT_EQ(d.decide({700, 100, 5}, clock.now()).desired, 10);
  for (int t = 2; t <= 8; t += 2) {
    clock.advance(2s);
    EXPECT_EQ(d.decide({70, 70, 10}, clock.now()).desired, 10) << t << " s";
  }
  clock.advance(2s);
  EXPECT_EQ(d.decide({70, 70, 10}, clock.now()).desired, 1) << "10 s later";
}

TEST(DeciderTest, TargetResolution) {
  // CC=0 → 100 × 0.7; CC=10 → 7; RPS → 200 × 0.7 = 140.
  EXPECT_DOUBLE_EQ(resolve_target(Metric::Concurrency, 0, {}, 0.7, 100, 200).target, 70);
  EXPECT_DOUBLE_EQ(resolve_target(Metric::Concurrency, 10, {}, 0.7, 100, 200).target, 7);
  EXPECT_DOUBLE_EQ(resolve_target(Metric::Rps, 10, {}, 0.7, 100, 200).target, 140);
  // target annotation capped by CC; utilisation annotation; floor 0.01.
  EXPECT_DOUBLE_EQ(resolve_target(Metric::Concurrency, 10, 50, 0.7, 100, 200).total, 10);
  EXPECT_DOUBLE_EQ(resolve_target(Metric::Concurrency, 0, 4, 0.5, 100, 200).target, 2);
  EXPECT_DOUBLE_EQ(resolve_target(Metric::Concurrency, 0, 0.01, 0.5, 100, 200).target, 0.01);
}

TEST(DeciderTest, SampleSizeMatchesKnativesTable) {
  const std::pair<int, int> table[] = {{0, 0},  {1, 1},  {3, 3},   {4, 4},    {5, 4},
                                       {10, 7}, {20, 9}, {50, 12}, {100, 14}, {1000, 16}};
  for (auto [n, want] : table) EXPECT_EQ(sample_size(n), want) << n;
}

}  // namespace
}  // namespace sluice::autoscaler
