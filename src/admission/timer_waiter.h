// admission/timer_waiter.h
//
// The Asio side of a Breaker wait: a Waiter whose wake-up cancels a timer that the
// waiting coroutine sleeps on until its deadline. After the wait, state() says whether
// it was admitted, closed, or (still queued) expired. Lives in the waiting coroutine's
// frame, on the breaker owner's executor.
#pragma once

#include <boost/asio/steady_timer.hpp>

#include "admission/breaker.h"

namespace sluice::admission {

class TimerWaiter final : public Waiter {
 public:
  explicit TimerWaiter(boost::asio::any_io_executor ex) : timer(std::move(ex)) {}
  boost::asio::steady_timer timer;

 private:
  void on_wake() override { timer.cancel(); }
};

}  // namespace sluice::admission
