#include "autoscaler/decider.h"

#include <algorithm>
#include <cmath>

namespace sluice::autoscaler {

namespace {

int32_t ceil_div(double value, double by) {
  return static_cast<int32_t>(std::ceil(value / by));
}

}  // namespace

Decider::Decider(DeciderSpec spec, int32_t ready, core::TimePoint now, int32_t initial_scale)
    : spec_(spec) {
  if (spec_.scale_down_delay > core::Duration::zero() && spec_.reachable)
    delay_window_.emplace(spec_.scale_down_delay);
  if (ready > 1) {
    panic_since_ = now;
    max_panic_pods_ = ready;
  }
  if (spec_.target_burst_capacity == 0 || spec_.target_burst_capacity == -1) {
    initial_ebc_ = static_cast<int32_t>(spec_.target_burst_capacity);
  } else {
    initial_ebc_ = static_cast<int32_t>(
        std::floor(initial_scale * spec_.total_target - spec_.target_burst_capacity));
  }
}

Decision Decider::decide(const Observation& obs, core::TimePoint now) {
  Decision d;
  // 1–2: rates from at least one pod, so a revision at zero can scale up.
  const int32_t ready = std::max(1, obs.ready);
  const auto max_up = static_cast<int32_t>(std::ceil(spec_.max_scale_up_rate * ready));
  const int32_t max_down =
      spec_.reachable ? static_cast<int32_t>(std::floor(ready / spec_.max_scale_down_rate)) : 0;
  // 3–4
  const int32_t dspc = ceil_div(obs.stable, spec_.target);
  const int32_t dppc = ceil_div(obs.panic, spec_.target);
  d.stable_pods = std::clamp(dspc, max_down, std::max(max_down, max_up));
  d.panic_pods = std::clamp(dppc, max_down, std::max(max_down, max_up));
  // 5: activation scale only lifts a non-zero decision.
  if (spec_.activation_scale > 1) {
    if (dspc > 0 && d.stable_pods < spec_.activation_scale)
      d.stable_pods = spec_.activation_scale;
    if (dppc > 0 && d.panic_pods < spec_.activation_scale)
      d.panic_pods = spec_.activation_scale;
  }
  // 6–7: the panic state machine.
  const bool over_threshold = static_cast<double>(dppc) / ready >= spec_.panic_threshold;
  if (over_threshold) {
    panic_since_ = now;  // enter or extend
  } else if (panic_since_ && *panic_since_ + spec_.stable_window < now) {
    panic_since_.reset();
    max_panic_pods_ = 0;
  }
  // 8: never scale down while panicking.
  if (panic_since_) {
    max_panic_pods_ = std::max(max_panic_pods_, std::max(d.stable_pods, d.panic_pods));
    d.desired = max_panic_pods_;
  } else {
    d.desired = d.stable_pods;
  }
  d.panicking = panic_since_.has_value();
  // 9: the scale-down delay holds the maximum of the last `delay`.
  if (delay_window_) {
    delay_window_->record(now, d.desired);
    d.desired = delay_window_->current();
  }
  // 10: excess burst capacity from the panic value and the raw ready count.
  if (spec_.target_burst_capacity == 0) {
    d.excess_burst_capacity = 0;
  } else if (spec_.target_burst_capacity == -1) {
    d.excess_burst_capacity = -1;
  } else {
    d.excess_burst_capacity = static_cast<int32_t>(
        std::floor(obs.ready * spec_.total_target - spec_.target_burst_capacity - obs.panic));
  }
  return d;
}

Target resolve_target(Metric metric,
                      uint32_t container_concurrency,
                      std::optional<double> target_annotation,
                      double target_utilization,
                      double concurrency_target_default,
                      double rps_target_default) {
  Target t;
  if (metric == Metric::Rps) {
    t.total = target_annotation.value_or(rps_target_default);
  } else {
    t.total = container_concurrency > 0 ? container_concurrency : concurrency_target_default;
    if (target_annotation) {
      t.total = container_concurrency > 0
                    ? std::min(*target_annotation, static_cast<double>(container_concurrency))
                    : *target_annotation;
    }
  }
  t.target = std::max(0.01, t.total * target_utilization);
  return t;
}

int32_t sample_size(int32_t pods) {
  if (pods <= 3)
    return std::max(0, pods);
  // 15.3664 = 1.96² × 100 / 5²: a 95% confidence, 5% error sample.
  const double n = pods;
  return static_cast<int32_t>(std::ceil(n * 15.3664 / (n + 14.3664)));
}

}  // namespace sluice::autoscaler
