// core/timer.h
//
// The timer drivers sleep on: an Asio steady_timer that follows the injected TimeSource.
// On the real clock it is the steady_timer; on a ManualTimeSource it fires when the test
// advances the clock past its deadline (the steady_timer then only carries the handler,
// its executor and cancellation), so a driver's loop runs on a manual clock without a
// real wait. Same interface as steady_timer for what the drivers use: expires_at,
// expires_after, async_wait, cancel; a cancelled or re-armed wait completes with
// operation_aborted.
//
// Threading: like a steady_timer, one executor; on a manual clock the test thread runs it.
#pragma once

#include <boost/asio/async_result.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <utility>

#include "core/time_source.h"

namespace sluice::core {

class Timer final : private ManualWait {
 public:
  Timer(TimeSource& time, boost::asio::any_io_executor ex)
      : time_(time), manual_(time.manual()), timer_(std::move(ex)) {}
  ~Timer() {
    if (manual_ != nullptr)
      manual_->remove(this);
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void expires_at(TimePoint at) {
    at_ = at;
    if (manual_ == nullptr) {
      timer_.expires_at(at);
      return;
    }
    fired_.reset();  // a pending wait is aborted, as a steady_timer's is
    timer_.expires_at(TimePoint::max());
  }
  void expires_after(Duration d) { expires_at(time_.now() + d); }
  TimePoint expiry() const { return at_; }

  // Completes with no error at the deadline, operation_aborted when cancelled.
  template <typename Token>
  auto async_wait(Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [this](auto handler) {
          if (manual_ == nullptr) {
            timer_.async_wait(std::move(handler));
            return;
          }
          auto fired = std::make_shared<bool>(false);
          fired_ = fired;
          timer_.async_wait([fired, h = std::move(handler)](boost::system::error_code ec) mutable {
            if (ec == boost::asio::error::operation_aborted && *fired)
              ec = {};
            std::move(h)(ec);
          });
          manual_->add(this);
          fire_if_due(time_.now());  // already due: completes at once
        },
        token);
  }

  size_t cancel() {
    if (manual_ != nullptr) {
      fired_.reset();
      manual_->remove(this);
    }
    return timer_.cancel();
  }

 private:
  void fire_if_due(TimePoint now) override {
    if (now < at_ || !fired_)
      return;
    *fired_ = true;
    fired_.reset();
    manual_->remove(this);
    timer_.cancel();
  }

  TimeSource& time_;
  ManualTimeSource* manual_;
  boost::asio::steady_timer timer_;
  TimePoint at_ = TimePoint::max();
  std::shared_ptr<bool> fired_;  // the pending wait's "the deadline came" flag
};

}  // namespace sluice::core
