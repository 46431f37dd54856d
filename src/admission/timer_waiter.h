// admission/timer_waiter.h
//
// The Asio side of a Breaker wait: a Waiter whose wake-up cancels a timer that the
// waiting coroutine sleeps on until its deadline. After the wait, state() says whether
// it was admitted, closed, or (still queued) expired. Lives in the waiting coroutine's
// frame, on the breaker owner's executor.
#pragma once

#include <boost/asio/post.hpp>
#include <memory>

#include "admission/breaker.h"
#include "core/timer.h"

namespace sluice::admission {

class TimerWaiter final : public Waiter {
 public:
  TimerWaiter(core::TimeSource& time, boost::asio::any_io_executor ex)
      : timer(time, std::move(ex)) {}
  core::Timer timer;

 private:
  void on_wake() override { timer.cancel(); }
};

// Lets another thread end a wait early: the request's client hung up while it was queued.
// Shared between the client's worker (which calls abandon()) and the breaker owner's
// executor (which waits); `waiter` and `abandoned` are touched only on the latter, so
// abandon() posts there. A token abandoned before the wait starts ends it at once.
struct WaitToken {
  explicit WaitToken(boost::asio::any_io_executor owner_ex) : owner(std::move(owner_ex)) {}
  boost::asio::any_io_executor owner;
  TimerWaiter* waiter = nullptr;  // set while a wait is in progress
  bool abandoned = false;

  static void abandon(const std::shared_ptr<WaitToken>& token) {
    boost::asio::post(token->owner, [token] {
      token->abandoned = true;
      if (token->waiter != nullptr)
        token->waiter->timer.cancel();
    });
  }
};

}  // namespace sluice::admission
