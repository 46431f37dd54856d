// core/time_source.h
//
// The one place that reads clocks. Logic (breaker, stats, health machines, deciders)
// never calls a clock: it takes `now` as an argument, and drivers ask a TimeSource.
// Production wires SteadyTimeSource; unit tests wire ManualTimeSource and advance it
// by hand, so they never sleep.
#pragma once

#include <chrono>
#include <set>

namespace sluice::core {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;

class ManualTimeSource;

class TimeSource {
 public:
  virtual ~TimeSource() = default;
  // The manual clock behind this source, if it is one: core::Timer then waits for it to
  // be advanced instead of for real time to pass.
  virtual ManualTimeSource* manual() { return nullptr; }
  // Monotonic time, for intervals and deadlines.
  virtual TimePoint now() const = 0;
  // Wall-clock time, for display and wire timestamps only.
  virtual std::chrono::system_clock::time_point wall_now() const = 0;
};

class SteadyTimeSource final : public TimeSource {
 public:
  TimePoint now() const override { return Clock::now(); }
  std::chrono::system_clock::time_point wall_now() const override {
    return std::chrono::system_clock::now();
  }
};

// Something waiting for a manual clock to reach its deadline (core::Timer).
class ManualWait {
 public:
  virtual void fire_if_due(TimePoint now) = 0;

 protected:
  ~ManualWait() = default;
};

// Test clock: starts at an arbitrary fixed point and moves only when told to. Timers on
// it (core::Timer) fire when advance() or set() reaches their deadline. Single-threaded:
// the test advances it on the thread that runs the timers' executor.
class ManualTimeSource final : public TimeSource {
 public:
  ManualTimeSource* manual() override { return this; }
  TimePoint now() const override { return now_; }
  std::chrono::system_clock::time_point wall_now() const override {
    return std::chrono::system_clock::time_point(now_.time_since_epoch());
  }
  void advance(Duration d) { set(now_ + d); }
  void set(TimePoint t) {
    now_ = t;
    const std::set<ManualWait*> waits = waits_;  // firing may add or remove waits
    for (ManualWait* w : waits) {
      if (waits_.count(w) != 0)
        w->fire_if_due(now_);
    }
  }
  void add(ManualWait* w) { waits_.insert(w); }
  void remove(ManualWait* w) { waits_.erase(w); }
  size_t waiting() const { return waits_.size(); }

 private:
  TimePoint now_{std::chrono::hours(1000)};
  std::set<ManualWait*> waits_;
};

// Seconds as a double, the unit Knative's wire formats and Prometheus use.
inline double to_seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}
inline double to_millis(Duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

}  // namespace sluice::core
