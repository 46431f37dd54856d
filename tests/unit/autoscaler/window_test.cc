#include "autoscaler/window.h"

#include <gtest/gtest.h>

namespace sluice::autoscaler {
namespace {

using namespace std::chrono_literals;

class WindowTest : public ::testing::Test {
 protected:
  core::ManualTimeSource clock_;  // starts on a whole second
};

TEST_F(WindowTest, AFreshWindowAveragesOnlyOverSecondsWithHistory) {
  MetricWindow w(60s, Aggregation::Linear);
  EXPECT_TRUE(w.empty(clock_.now()));
  EXPECT_EQ(w.average(clock_.now()), 0);
  w.record(clock_.now(), 10);
  clock_.advance(1s);
  w.record(clock_.now(), 20);
  EXPECT_DOUBLE_EQ(w.average(clock_.now()), 15) << "2 seconds of history, not 60";
}

TEST_F(WindowTest, SamplesInOneSecondAddUp) {
  MetricWindow w(6s, Aggregation::Linear);
  w.record(clock_.now(), 3);
  w.record(clock_.now() + 400ms, 4);  // another source, same second
  EXPECT_DOUBLE_EQ(w.average(clock_.now() + 500ms), 7);
}

TEST_F(WindowTest, GapsBetweenWritesCountAsZeros) {
  MetricWindow w(60s, Aggregation::Linear);
  w.record(clock_.now(), 30);
  clock_.advance(2s);
  w.record(clock_.now(), 0);
  EXPECT_DOUBLE_EQ(w.average(clock_.now()), 10) << "30 + 0 + 0 over 3 seconds";
}

TEST_F(WindowTest, SecondsAfterTheLastWriteAreDroppedAndAWholeWindowEmptiesIt) {
  MetricWindow w(6s, Aggregation::Linear);
  for (int i = 0; i < 6; ++i) {
    w.record(clock_.now(), 6);
    clock_.advance(1s);
  }
  // Last write 1 s ago: the full ring minus the stale bucket, over min(6, 6-1) seconds.
  EXPECT_DOUBLE_EQ(w.average(clock_.now()), 6);
  clock_.advance(2s);
  EXPECT_DOUBLE_EQ(w.average(clock_.now()), 6) << "3 s gap: 3 buckets left, each 6";
  clock_.advance(3s);
  EXPECT_TRUE(w.empty(clock_.now()));
  EXPECT_EQ(w.average(clock_.now()), 0);
}

TEST_F(WindowTest, TheRingForgetsDataOlderThanTheWindow) {
  MetricWindow w(3s, Aggregation::Linear);
  w.record(clock_.now(), 100);
  for (int i = 0; i < 3; ++i) {
    clock_.advance(1s);
    w.record(clock_.now(), 1);
  }
  EXPECT_DOUBLE_EQ(w.average(clock_.now()), 1);
  w.record(clock_.now() - 5s, 1000);  // older than the window: ignored
  EXPECT_DOUBLE_EQ(w.average(clock_.now()), 1);
}

TEST_F(WindowTest, AverageIsFlooredToSixDecimals) {
  MetricWindow w(3s, Aggregation::Linear);
  w.record(clock_.now(), 1);
  clock_.advance(1s);
  w.record(clock_.now(), 1);
  clock_.advance(1s);
  w.record(clock_.now(), 0);
  EXPECT_DOUBLE_EQ(w.average(clock_.now()), 0.666666);
}

// Load that comes and goes must average exactly zero once it has gone: a running total
// that adds values in and takes them out again drifts to -1e-16, which the floor to six
// decimals turns into -0.000001 ("stable: -1e-06 concurrent").
TEST_F(WindowTest, AWindowOfZerosAveragesExactlyZeroAfterLoad) {
  MetricWindow w(6s, Aggregation::Linear);
  for (double v : {0.67, 4.24, 3.82, 1.28, 2.48, 2.25}) {
    w.record(clock_.now(), v);
    clock_.advance(1s);
  }
  for (int i = 0; i < 6; ++i) {
    w.record(clock_.now(), 0);
    EXPECT_GE(w.average(clock_.now()), 0);
    clock_.advance(1s);
  }
  w.record(clock_.now(), 0);
  EXPECT_EQ(w.average(clock_.now()), 0);
}

TEST_F(WindowTest, WeightedExponentialAlphaAndWeights) {
  EXPECT_NEAR(MetricWindow(60s, Aggregation::WeightedExponential).alpha(), 0.2, 1e-9);
  EXPECT_NEAR(MetricWindow(6s, Aggregation::WeightedExponential).alpha(), 0.785, 1e-3);
  EXPECT_NEAR(MetricWindow(30s, Aggregation::WeightedExponential).alpha(), 0.264, 1e-3);
  MetricWindow w(60s, Aggregation::WeightedExponential);
  w.record(clock_.now(), 10);
  clock_.advance(1s);
  w.record(clock_.now(), 20);
  // Newest weighs α, the one before α(1−α); not normalised.
  EXPECT_NEAR(w.average(clock_.now()), 0.2 * 20 + 0.2 * 0.8 * 10, 1e-6);
  clock_.advance(1s);  // a second without a write is a zero-valued newest bucket
  EXPECT_NEAR(w.average(clock_.now()), 0.2 * 0.8 * 20 + 0.2 * 0.64 * 10, 1e-6);
}

TEST_F(WindowTest, MaxWindowHoldsTheHighestValueForItsLength) {
  MaxWindow m(10s);  // 5 slots of 2 s
  m.record(clock_.now(), 5);
  clock_.advance(2s);
  m.record(clock_.now(), 3);
  EXPECT_EQ(m.current(), 5);
  clock_.advance(6s);
  m.record(clock_.now(), 1);
  EXPECT_EQ(m.current(), 5) << "8 s later: 5 is still inside the 10 s window";
  clock_.advance(2s);
  m.record(clock_.now(), 1);
  EXPECT_EQ(m.current(), 3);
  clock_.advance(2s);
  m.record(clock_.now(), 1);
  EXPECT_EQ(m.current(), 1);
  m.record(clock_.now(), 7);
  EXPECT_EQ(m.current(), 7) << "a higher value takes over at once";
}

}  // namespace
}  // namespace sluice::autoscaler
