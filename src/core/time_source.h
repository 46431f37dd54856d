// core/time_source.h
//
// The one place that reads clocks. Logic (breaker, stats, health machines, deciders)
// never calls a clock: it takes `now` as an argument, and drivers ask a TimeSource.
// Production wires SteadyTimeSource; unit tests wire ManualTimeSource and advance it
// by hand, so they never sleep.
#pragma once

#include <chrono>

namespace sluice::core {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;

class TimeSource {
 public:
  virtual ~TimeSource() = default;
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

// Test clock: starts at an arbitrary fixed point and moves only when told to.
class ManualTimeSource final : public TimeSource {
 public:
  TimePoint now() const override { return now_; }
  std::chrono::system_clock::time_point wall_now() const override {
    return std::chrono::system_clock::time_point(now_.time_since_epoch());
  }
  void advance(Duration d) { now_ += d; }
  void set(TimePoint t) { now_ = t; }

 private:
  TimePoint now_{std::chrono::hours(1000)};
};

// Seconds as a double, the unit Knative's wire formats and Prometheus use.
inline double to_seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}
inline double to_millis(Duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

}  // namespace sluice::core
