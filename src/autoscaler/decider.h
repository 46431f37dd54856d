// autoscaler/decider.h
//
// Knative's KPA decision (spec/knative-1.18.md §3.2, §3.5) as a pure step function: the
// same spec, observations, state and `now` always give the same decision. Every 2 s per
// revision (and at once on a scale-from-zero poke) the caller feeds the stable and panic
// window averages and the ready pod count; the decider returns the unbounded desired
// scale and the excess burst capacity. Bounds, scale-to-zero sequencing and the fork's
// scale buffer are applied afterwards (scaler.h).
#pragma once

#include <cstdint>
#include <optional>

#include "autoscaler/window.h"
#include "core/time_source.h"

namespace sluice::autoscaler {

enum class Metric { Concurrency, Rps };

struct DeciderSpec {
  double target = 70;         // TargetValue per pod (after utilisation)
  double total_target = 100;  // TotalValue per pod
  double target_burst_capacity = 211;
  double panic_threshold = 2.0;  // panic-threshold-percentage / 100
  double max_scale_up_rate = 1000;
  double max_scale_down_rate = 2;
  core::Duration stable_window = std::chrono::seconds(60);
  int32_t activation_scale = 1;
  core::Duration scale_down_delay{0};
  bool reachable = true;
};

struct Observation {
  double stable = 0;  // stable-window average of the metric, revision-wide
  double panic = 0;   // panic-window average
  int32_t ready = 0;  // R₀: ready pods
};

struct Decision {
  int32_t desired = 0;  // unbounded
  int32_t excess_burst_capacity = 0;
  bool panicking = false;
  int32_t stable_pods = 0;
  int32_t panic_pods = 0;
};

class Decider {
 public:
  // `ready` at construction: a decider started with more than one ready pod begins in
  // panic mode holding that many (no scale-down after an autoscaler restart).
  Decider(DeciderSpec spec, int32_t ready, core::TimePoint now, int32_t initial_scale = 1);

  Decision decide(const Observation& obs, core::TimePoint now);

  const DeciderSpec& spec() const { return spec_; }
  bool panicking() const { return panic_since_.has_value(); }
  // The status before the first decision (Knative: desired −1, EBC from initial scale).
  int32_t initial_excess_burst_capacity() const { return initial_ebc_; }

 private:
  DeciderSpec spec_;
  std::optional<core::TimePoint> panic_since_;  // last time the panic threshold was met
  int32_t max_panic_pods_ = 0;
  std::optional<MaxWindow> delay_window_;
  int32_t initial_ebc_ = 0;
};

// Target resolution (spec §3.2): per-pod target and total for a revision.
struct Target {
  double target = 70;
  double total = 100;
};
Target resolve_target(Metric metric,
                      uint32_t container_concurrency,
                      std::optional<double> target_annotation,
                      double target_utilization,  // 0..1
                      double concurrency_target_default,
                      double rps_target_default);

// Knative's scrape sample size for a population of n ready pods (spec §3.3).
int32_t sample_size(int32_t pods);

}  // namespace sluice::autoscaler
