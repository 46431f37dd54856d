// autoscaler/window.h
//
// The KPA's time windows (spec/knative-1.18.md §3.4, §3.5 step 9), as pure data
// structures on caller-supplied time:
//
//  - MetricWindow: a ring of 1-second buckets over a window (stable: 60 s, panic: 6 s).
//    Samples for the same second add up (one bucket = the revision-wide total from every
//    source). Two averages: linear (default) and weighted-exponential. A fresh window
//    averages only over the seconds since its first write (no dilution at start-up); a
//    gap between writes counts as zeros; the seconds after the last write are dropped
//    from the average, and a whole window without writes makes it empty (0).
//  - MaxWindow: the maximum of values recorded over the last `length` (2 s granularity),
//    for the scale-down delay: desired scale only drops once it has been lower for the
//    whole delay.
//
// Threading: single owner (the autoscaler's thread). Time: callers pass `now`.
#pragma once

#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "core/time_source.h"

namespace sluice::autoscaler {

enum class Aggregation { Linear, WeightedExponential };

class MetricWindow {
 public:
  MetricWindow(core::Duration window, Aggregation aggregation);

  void record(core::TimePoint now, double value);
  double average(core::TimePoint now) const;
  // No write within the window (Knative's IsEmpty): the decider has no data.
  bool empty(core::TimePoint now) const;
  size_t size() const { return buckets_.size(); }
  // The weighted-exponential smoothing factor for this window (spec §3.4).
  double alpha() const { return alpha_; }

 private:
  double linear(int64_t now_s) const;
  double weighted(int64_t now_s) const;
  double& bucket(int64_t second) {
    return buckets_[static_cast<size_t>(second % static_cast<int64_t>(buckets_.size()))];
  }
  double bucket(int64_t second) const {
    return buckets_[static_cast<size_t>(second % static_cast<int64_t>(buckets_.size()))];
  }

  std::vector<double> buckets_;
  Aggregation aggregation_;
  double alpha_;
  bool written_ = false;
  int64_t first_write_ = 0;  // seconds since the clock's epoch
  int64_t last_write_ = 0;
};

class MaxWindow {
 public:
  explicit MaxWindow(core::Duration length);
  void record(core::TimePoint now, int32_t value);
  // Max over the window; meaningful after the first record().
  int32_t current() const { return entries_.empty() ? 0 : entries_.front().second; }

 private:
  int64_t length_slots_;
  // (slot, value), values strictly decreasing from front to back.
  std::deque<std::pair<int64_t, int32_t>> entries_;
};

// Knative rounds window averages down to 6 decimals.
double floor6(double v);

}  // namespace sluice::autoscaler
