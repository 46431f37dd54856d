#include "core/token_bucket.h"

#include <gtest/gtest.h>

namespace sluice::core {
namespace {

using std::chrono::milliseconds;

TEST(TokenBucket, SpendsTheBurstThenRefillsAtTheRate) {
  ManualTimeSource clock;
  TokenBucket bucket(3, 10, clock.now());
  EXPECT_TRUE(bucket.take(clock.now()));
  EXPECT_TRUE(bucket.take(clock.now()));
  EXPECT_TRUE(bucket.take(clock.now()));
  EXPECT_FALSE(bucket.take(clock.now()));
  clock.advance(milliseconds(50));  // half a token
  EXPECT_FALSE(bucket.take(clock.now()));
  clock.advance(milliseconds(50));  // one
  EXPECT_TRUE(bucket.take(clock.now()));
  EXPECT_FALSE(bucket.take(clock.now()));
}

TEST(TokenBucket, NeverHoldsMoreThanTheBurst) {
  ManualTimeSource clock;
  TokenBucket bucket(2, 100, clock.now());
  clock.advance(std::chrono::hours(1));
  EXPECT_TRUE(bucket.take(clock.now()));
  EXPECT_TRUE(bucket.take(clock.now()));
  EXPECT_FALSE(bucket.take(clock.now()));
}

TEST(TokenBucket, AClockThatGoesBackDoesNotMint) {
  ManualTimeSource clock;
  TokenBucket bucket(1, 1, clock.now());
  EXPECT_TRUE(bucket.take(clock.now()));
  EXPECT_FALSE(bucket.take(clock.now() - std::chrono::seconds(10)));
  EXPECT_FALSE(bucket.take(clock.now()));
}

}  // namespace
}  // namespace sluice::core
