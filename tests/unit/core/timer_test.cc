#include "core/timer.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <optional>

namespace sluice::core {
namespace {

using namespace std::chrono_literals;
using boost::system::error_code;

struct Rig {
  ManualTimeSource clock;
  boost::asio::io_context io;
  Timer timer{clock, io.get_executor()};
  std::optional<error_code> result;
  void wait() {
    result.reset();
    timer.async_wait([this](error_code ec) { result = ec; });
  }
  // restart(): an io_context that ran out of work stays stopped until told otherwise.
  void settle() {
    io.restart();
    io.poll();
  }
};

TEST(ManualClockTimer, FiresWhenTheClockReachesTheDeadlineNotBefore) {
  Rig r;
  r.timer.expires_after(10s);
  r.wait();
  r.settle();
  EXPECT_FALSE(r.result);
  r.clock.advance(9s);
  r.settle();
  EXPECT_FALSE(r.result);
  r.clock.advance(1s);
  r.settle();
  ASSERT_TRUE(r.result);
  EXPECT_FALSE(*r.result);
  EXPECT_EQ(r.clock.waiting(), 0u);
}

TEST(ManualClockTimer, ADeadlineAlreadyPastFiresAtOnce) {
  Rig r;
  r.timer.expires_at(r.clock.now() - 1s);
  r.wait();
  r.settle();
  ASSERT_TRUE(r.result);
  EXPECT_FALSE(*r.result);
}

TEST(ManualClockTimer, CancelAndReArmAbortTheWaitAsASteadyTimerDoes) {
  Rig r;
  r.timer.expires_after(5s);
  r.wait();
  r.timer.cancel();
  r.settle();
  ASSERT_TRUE(r.result);
  EXPECT_EQ(*r.result, boost::asio::error::operation_aborted);
  r.clock.advance(10s);  // a cancelled wait never fires later
  r.settle();
  EXPECT_EQ(*r.result, boost::asio::error::operation_aborted);

  r.timer.expires_after(5s);
  r.wait();
  r.timer.expires_after(20s);  // re-arming aborts the pending wait
  r.settle();
  ASSERT_TRUE(r.result);
  EXPECT_EQ(*r.result, boost::asio::error::operation_aborted);
  r.wait();
  r.clock.advance(19s);
  r.settle();
  EXPECT_FALSE(r.result);
  r.clock.advance(1s);
  r.settle();
  ASSERT_TRUE(r.result);
  EXPECT_FALSE(*r.result);
}

TEST(ManualClockTimer, ADestroyedTimerLeavesTheClock) {
  ManualTimeSource clock;
  boost::asio::io_context io;
  {
    Timer t(clock, io.get_executor());
    t.expires_after(1s);
    t.async_wait([](error_code) {});
    EXPECT_EQ(clock.waiting(), 1u);
  }
  EXPECT_EQ(clock.waiting(), 0u);
  clock.advance(2s);  // nothing dangling to fire
  io.restart();
  io.poll();
}

}  // namespace
}  // namespace sluice::core
