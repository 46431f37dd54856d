#include "activator/concurrency_reporter.h"

#include <gtest/gtest.h>

namespace sluice::activator {
namespace {

using namespace std::chrono_literals;

TEST(ConcurrencyReporter, FirstRequestPokesAtOnceAndIsNotCountedTwice) {
  core::ManualTimeSource clock;
  ConcurrencyReporter c;
  auto poke = c.request_in("default/hello-00001", clock.now());
  ASSERT_TRUE(poke);
  EXPECT_EQ(poke->report.average_concurrency, 1);
  EXPECT_EQ(poke->report.request_count, 1);
  EXPECT_FALSE(c.request_in("default/hello-00001", clock.now())) << "one poke per revision";
  clock.advance(1s);
  auto batch = c.cut(clock.now());
  ASSERT_EQ(batch.size(), 1u);
  // Two requests in flight for the whole second, minus the one the poke reported.
  EXPECT_DOUBLE_EQ(batch[0].report.average_concurrency, 1);
  EXPECT_DOUBLE_EQ(batch[0].report.request_count, 1);
}

TEST(ConcurrencyReporter, QueuedTimeCountsAndIdleRevisionsAreDropped) {
  core::ManualTimeSource clock;
  ConcurrencyReporter c;
  c.request_in("r", clock.now());
  clock.advance(1s);
  c.cut(clock.now());  // absorbs the poke
  clock.advance(500ms);
  c.request_out("r", clock.now());
  clock.advance(500ms);
  auto batch = c.cut(clock.now());
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_DOUBLE_EQ(batch[0].report.average_concurrency, 0.5);
  clock.advance(1s);
  EXPECT_TRUE(c.cut(clock.now()).empty()) << "a second with nothing: dropped";
  EXPECT_TRUE(c.request_in("r", clock.now())) << "so the next request pokes again";
}

}  // namespace
}  // namespace sluice::activator
