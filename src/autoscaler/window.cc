#include "autoscaler/window.h"

#include <algorithm>
#include <cmath>

namespace sluice::autoscaler {

namespace {

int64_t seconds_of(core::TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

double floor6(double v) {
  return std::floor(v * 1e6) / 1e6;
}

MetricWindow::MetricWindow(core::Duration window, Aggregation aggregation)
    : aggregation_(aggregation) {
  // ⌈window / 1 s⌉ buckets, at least one.
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(window).count();
  const size_t n = std::max<int64_t>(1, (ms + 999) / 1000);
  buckets_.assign(n, 0.0);
  // The weight of the newest bucket: what remains after nb buckets is 0.01% (spec §3.4),
  // but never below 0.2 so long windows still react.
  alpha_ = std::max(1.0 - std::pow(1.0 - 0.9999, 1.0 / static_cast<double>(n)), 0.2);
}

void MetricWindow::record(core::TimePoint now, double value) {
  const int64_t s = seconds_of(now);
  const int64_t n = static_cast<int64_t>(buckets_.size());
  if (!written_ || s - last_write_ >= n) {
    // First write, or a whole window of silence: start over.
    std::fill(buckets_.begin(), buckets_.end(), 0.0);
    first_write_ = last_write_ = s;
    written_ = true;
  } else if (s > last_write_) {
    // The seconds between the last write and now held nothing: zero what the ring still
    // has there from a window ago.
    for (int64_t t = last_write_ + 1; t <= s; ++t) bucket(t) = 0;
    last_write_ = s;
  } else if (last_write_ - s >= n) {
    return;  // older than the window
  }
  bucket(s) += value;
}

bool MetricWindow::empty(core::TimePoint now) const {
  return !written_ || seconds_of(now) - last_write_ >= static_cast<int64_t>(buckets_.size());
}

double MetricWindow::average(core::TimePoint now) const {
  if (empty(now))
    return 0;
  const int64_t s = seconds_of(now);
  return aggregation_ == Aggregation::Linear ? linear(s) : weighted(s);
}

double MetricWindow::linear(int64_t now_s) const {
  const int64_t n = static_cast<int64_t>(buckets_.size());
  const int64_t with_history = last_write_ - first_write_ + 1;
  const int64_t gap = std::max<int64_t>(0, now_s - last_write_);
  // Summed afresh over the window (at most an hour of buckets, once per tick), not kept
  // as a running total: adding values in and taking them out again drifts below zero.
  // Seconds after the last write are zeros; their ring slots hold a window ago's data.
  // In time order (the same sum, bit for bit, as bucket by bucket), walking the ring
  // from the oldest slot instead of dividing for every one.
  double sum = 0;
  const int64_t oldest = std::max(first_write_, std::max(now_s, last_write_) - n + 1);
  const double* ring = buckets_.data();
  size_t slot = static_cast<size_t>(oldest % n);
  for (int64_t t = oldest; t <= last_write_; ++t) {
    sum += ring[slot];
    if (++slot == buckets_.size())
      slot = 0;
  }
  return floor6(sum / static_cast<double>(std::min(with_history, n - gap)));
}

double MetricWindow::weighted(int64_t now_s) const {
  const int64_t n = static_cast<int64_t>(buckets_.size());
  // Newest first; seconds after the last write weigh in as zeros.
  double result = 0;
  double weight = alpha_;
  for (int64_t k = 0; k < n; ++k, weight *= 1.0 - alpha_) {
    const int64_t t = now_s - k;
    if (t > last_write_)
      continue;
    if (t < first_write_)
      break;
    result += weight * bucket(t);
  }
  return floor6(result);
}

MaxWindow::MaxWindow(core::Duration length) {
  // 2 s slots, as Knative's max-time window for the scale-down delay.
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(length).count();
  length_slots_ = std::max<int64_t>(1, (ms + 1999) / 2000);
}

void MaxWindow::record(core::TimePoint now, int32_t value) {
  const int64_t slot = seconds_of(now) / 2;
  // Entries that left the window.
  while (!entries_.empty() && entries_.front().first <= slot - length_slots_) entries_.pop_front();
  // A newer value at least as large makes older smaller ones irrelevant.
  while (!entries_.empty() && entries_.back().second <= value) entries_.pop_back();
  entries_.emplace_back(slot, value);
}

}  // namespace sluice::autoscaler
