// http/watchdog.h
//
// A deadline that calls `on_fire` once when it passes: the header timeout of a
// connection, the response-start deadline and idle timeout of a forwarded request (one
// per HTTP/1 connection, one per HTTP/2 stream). Moving the deadline is a store, not a
// timer operation: an idle timeout is pushed later on every body write, and the timer
// re-arms itself lazily when it wakes before the current deadline.
//
// Safe against its owner going away while a wake-up is queued: the handler checks a
// liveness flag the destructor clears, so it never touches a destroyed owner.
//
// Threading: one executor, like the timer it wraps.
#pragma once

#include <functional>
#include <memory>

#include "core/time_source.h"
#include "core/timer.h"
#include "http/io.h"

namespace sluice::http {

class Watchdog {
 public:
  Watchdog(core::TimeSource& time, asio::any_io_executor executor, std::function<void()> on_fire)
      : time_(time), timer_(time, std::move(executor)), on_fire_(std::move(on_fire)) {}
  ~Watchdog() {
    *alive_ = false;
    timer_.cancel();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Fires at `deadline` unless re-armed or disarmed first; clears fired().
  void arm(core::TimePoint deadline) {
    armed_ = true;
    fired_ = false;
    deadline_ = deadline;
    if (!waiting_ || deadline < wait_at_)
      wait(deadline);
  }
  void disarm() { armed_ = false; }
  bool armed() const { return armed_; }
  bool fired() const { return fired_; }
  // Stops the timer for good (the owner is closing).
  void cancel() {
    armed_ = false;
    waiting_ = false;
    timer_.cancel();
  }

 private:
  void wait(core::TimePoint at) {
    waiting_ = true;
    wait_at_ = at;
    timer_.expires_at(at);
    timer_.async_wait([this, alive = alive_, at](error_code ec) {
      // A cancelled wait, or one that fired after a re-arm, is stale.
      if (ec || !*alive || wait_at_ != at)
        return;
      waiting_ = false;
      if (!armed_)
        return;
      if (time_.now() < deadline_) {
        wait(deadline_);  // the deadline moved later since this wait started
        return;
      }
      armed_ = false;
      fired_ = true;
      on_fire_();
    });
  }

  core::TimeSource& time_;
  core::Timer timer_;
  std::function<void()> on_fire_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool armed_ = false;
  bool waiting_ = false;
  bool fired_ = false;
  core::TimePoint deadline_{};
  core::TimePoint wait_at_{};
};

}  // namespace sluice::http
