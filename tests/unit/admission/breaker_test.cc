#include "admission/breaker.h"

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <vector>

namespace sluice::admission {
namespace {

using namespace std::chrono_literals;
using Admit = Breaker::Admit;
using State = Waiter::State;

// Records the order in which waiters are woken.
class RecordingWaiter final : public Waiter {
 public:
  RecordingWaiter(int id, std::vector<int>& log) : id_(id), log_(log) {}

 private:
  void on_wake() override { log_.push_back(id_); }
  int id_;
  std::vector<int>& log_;
};

class BreakerTest : public ::testing::Test {
 protected:
  core::ManualTimeSource clock_;
  std::vector<int> woken_;
  std::deque<RecordingWaiter> waiters_;
  RecordingWaiter& make() {
    return waiters_.emplace_back(static_cast<int>(waiters_.size()), woken_);
  }
  core::TimePoint in(core::Duration d) { return clock_.now() + d; }
};

TEST_F(BreakerTest, AdmitsUpToCapacityThenQueuesThenRefuses) {
  // containerConcurrency 2 → 2 slots + a queue of 20: the 23rd request is refused.
  const uint32_t cc = 2;
  Breaker b(cc, 10 * cc);
  for (uint32_t i = 0; i < 11 * cc; ++i) {
    Admit expected = i < cc ? Admit::Admitted : Admit::Queued;
    EXPECT_EQ(b.acquire(make(), clock_.now(), in(10s)), expected) << "request " << i;
  }
  EXPECT_EQ(b.in_flight(), 2u);
  EXPECT_EQ(b.waiting(), 20u);
  EXPECT_EQ(b.pending(), 22u);
  EXPECT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::QueueFull);
  EXPECT_EQ(b.pending(), 22u) << "a refused request takes nothing";
}

TEST_F(BreakerTest, ReleaseHandsSlotsToWaitersFirstInFirstOut) {
  Breaker b(1, 10);
  ASSERT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Admitted);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Queued);
  for (int i = 0; i < 5; ++i) {
    b.release();
    ASSERT_EQ(woken_.size(), static_cast<size_t>(i + 1));
    EXPECT_EQ(woken_.back(), i + 1) << "release " << i;
    EXPECT_EQ(waiters_[i + 1].state(), State::Admitted);
    EXPECT_EQ(b.in_flight(), 1u);
  }
  b.release();
  EXPECT_EQ(b.in_flight(), 0u);
}

TEST_F(BreakerTest, NewcomerDoesNotOvertakeQueuedWaiters) {
  Breaker b(1, 10);
  ASSERT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Admitted);
  ASSERT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Queued);
  EXPECT_FALSE(b.try_acquire()) << "slot busy and a waiter is queued";
  b.release();  // goes to waiter 1, not to anyone arriving now
  EXPECT_EQ(waiters_[1].state(), State::Admitted);
  EXPECT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Queued);
}

TEST_F(BreakerTest, WaiterExpiresOnlyAtItsDeadline) {
  Breaker b(1, 10);
  ASSERT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Admitted);
  auto& w = make();
  ASSERT_EQ(b.acquire(w, clock_.now(), in(300ms)), Admit::Queued);
  clock_.advance(299ms);
  EXPECT_FALSE(b.expire(w, clock_.now())) << "1 ms before the deadline";
  EXPECT_EQ(b.waiting(), 1u);
  clock_.advance(1ms);
  EXPECT_TRUE(b.expire(w, clock_.now()));
  EXPECT_EQ(w.state(), State::Expired);
  EXPECT_EQ(b.waiting(), 0u);
  b.release();
  EXPECT_TRUE(woken_.empty()) << "an expired waiter is never woken";
  EXPECT_EQ(b.in_flight(), 0u);
}

TEST_F(BreakerTest, DeadlineAlreadyPassedIsRefusedWithoutQueueing) {
  Breaker b(1, 10);
  ASSERT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Admitted);
  EXPECT_EQ(b.acquire(make(), clock_.now(), clock_.now()), Admit::Expired);
  EXPECT_EQ(b.waiting(), 0u);
}

TEST_F(BreakerTest, CancelRemovesFromTheMiddleOfTheQueue) {
  Breaker b(1, 10);
  ASSERT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Admitted);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Queued);
  b.cancel(waiters_[2]);
  EXPECT_EQ(waiters_[2].state(), State::Cancelled);
  b.release();
  b.release();
  EXPECT_EQ(woken_, (std::vector<int>{1, 3}));
}

TEST_F(BreakerTest, CloseFailsEveryWaiterAndRefusesNewOnes) {
  Breaker b(1, 10);
  ASSERT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Admitted);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Queued);
  b.close();
  EXPECT_EQ(woken_, (std::vector<int>{1, 2, 3}));
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(waiters_[i].state(), State::Closed);
  EXPECT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Closed);
}

TEST_F(BreakerTest, FailWaitersWakesTheQueueButKeepsAdmitting) {
  Breaker b(0, 10);
  for (int i = 0; i < 2; ++i) ASSERT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Queued);
  b.fail_waiters();
  EXPECT_EQ(woken_, (std::vector<int>{0, 1}));
  EXPECT_EQ(waiters_[0].state(), State::Closed);
  EXPECT_EQ(b.waiting(), 0u);
  EXPECT_FALSE(b.closed());
  EXPECT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Queued);
  b.set_capacity(1);
  EXPECT_EQ(waiters_[2].state(), State::Admitted);
}

TEST_F(BreakerTest, GrowingCapacityAdmitsWaitersShrinkingRevokesNothing) {
  Breaker b(1, 10);
  ASSERT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Admitted);
  ASSERT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Queued);
  ASSERT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Queued);
  b.set_capacity(3);
  EXPECT_EQ(woken_, (std::vector<int>{1, 2}));
  EXPECT_EQ(b.in_flight(), 3u);
  b.set_capacity(1);
  EXPECT_EQ(b.in_flight(), 3u);
  b.release();
  EXPECT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Queued) << "2 in flight, capacity 1";
}

TEST_F(BreakerTest, AWaiterDestroyedWhileQueuedLeavesTheQueue) {
  Breaker b(1, 10);
  ASSERT_EQ(b.acquire(make(), clock_.now(), in(10s)), Admit::Admitted);
  {
    RecordingWaiter gone(99, woken_);
    ASSERT_EQ(b.acquire(gone, clock_.now(), in(10s)), Admit::Queued);
  }
  EXPECT_EQ(b.waiting(), 0u);
  b.release();
  EXPECT_TRUE(woken_.empty());
}

TEST_F(BreakerTest, UnlimitedNeverQueues) {
  Breaker b(Breaker::kUnlimited, 0);
  for (int i = 0; i < 1000; ++i)
    ASSERT_EQ(b.acquire(make(), clock_.now(), in(1s)), Admit::Admitted);
  EXPECT_EQ(b.in_flight(), 1000u);
}

}  // namespace
}  // namespace sluice::admission
