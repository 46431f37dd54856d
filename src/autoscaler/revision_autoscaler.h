// autoscaler/revision_autoscaler.h
//
// One revision's autoscaler: the two metric windows, the KPA decider, and what the KPA
// reconciler does with its answer (spec/knative-1.18.md §3.3–3.8), plus the fork's scale
// buffer and effective capacity (spec/fork.md §2–3):
//
//   samples ──record()──▶ stable + panic windows ──decide()──▶ Decider (unbounded)
//     ──▶ scale buffer (+N while there is traffic) ──▶ min/max/initial bounds
//     ──▶ scale-to-zero sequencing (active ≥ stable window, grace, pod retention) ──▶ want
//
// Keep-alive policy (Sluice's `sluice.dev/keep-alive`, keep_alive.h): with `fixed` or
// `histogram`, the policy owns an idle revision's last replica: when the revision had no
// load for a whole second and the KPA asks for at most one, the policy's hold (0 or 1,
// within min-scale and scale-to-zero) replaces the KPA's scale-to-zero sequencing, also
// while the windows are empty (a pre-warm from zero). Under load the KPA decides alone.
//
// Effective capacity: `ready` is the pods the activator holds healthy; panic math and
// rate limits use it alone. Pods still starting are not ready, but the caller compares
// `want` with ready + starting, so load that starting pods will absorb does not order
// more; failed pods are neither (they count for nothing).
//
// Threading: single owner. Time: callers pass `now`; no clocks, no randomness.
#pragma once

#include <optional>
#include <string>

#include "autoscaler/decider.h"
#include "autoscaler/keep_alive.h"
#include "autoscaler/window.h"

namespace sluice::autoscaler {

struct ScalingSpec {
  Metric metric = Metric::Concurrency;
  Aggregation aggregation = Aggregation::Linear;
  DeciderSpec decider;  // target, TBC, rates, stable window, activation scale, delay
  core::Duration panic_window = std::chrono::seconds(6);
  int32_t min_scale = 0;
  int32_t max_scale = 0;  // 0: unbounded
  int32_t initial_scale = 0;
  int32_t scale_buffer = 0;
  bool enable_scale_to_zero = true;
  core::Duration scale_to_zero_grace = std::chrono::seconds(30);
  core::Duration pod_retention{0};
  KeepAliveSpec keep_alive;  // kpa: Knative's own sequencing alone
};

// Knative's panic window from the stable window and the percentage, at least 1 s.
core::Duration panic_window_of(core::Duration stable, double panic_window_percentage);

// Why a decision is what it is, for people ("stable: 12 concurrent, target 7/replica +
// scale buffer 1"). Every revision is decided every 2 s (a simulated day: tens of
// millions of decisions) and a change is printed a few times a day: a decision keeps the
// facts, str() makes the text.
struct Reason {
  enum class Head : uint8_t {
    NoData,         // no samples within the stable window
    Metric,         // the window average against the target
    NoTraffic,      // to zero: no traffic for a stable window (`window`)
    Hold,           // the keep-alive policy's (`hold`)
    HoldToZeroOff,  // the policy let go, but scale to zero is disabled
    HoldMinScale,   // the policy let go below min-scale (`bound`)
    HoldNoRequest,  // the policy has seen no request yet
  };
  enum class Bound : uint8_t { None, RaisedToMin, CappedAtMax };
  enum class Zero : uint8_t { None, Disabled, YoungerThanWindow, Retention, Grace };
  Head head = Head::NoData;
  bool panic = false;  // Metric: the panic window's average (else the stable one)
  bool rps = false;    // Metric: requests/s (else concurrency)
  double value = 0, target = 0;
  int32_t scale_buffer = 0;  // Metric: added while there is traffic
  Bound bound = Bound::None;
  int32_t bound_to = 0;
  Zero zero = Zero::None;  // Metric: why one is kept instead of none
  core::Duration window{};
  KeepAlive::Hold hold;
  std::string note;  // a runtime's own addition (", capped at 1: ...")

  std::string str() const;
};

struct ScaleDecision {
  int32_t want = 0;       // replicas to run (ready + starting)
  bool has_data = false;  // false: no samples within the stable window, `want` is held
  Decision kpa;           // the decider's own answer (when has_data)
  double stable = 0;      // window averages of the scaling metric
  double panic = 0;
  Reason reason;  // why `want` is what it is
};

class RevisionAutoscaler {
 public:
  RevisionAutoscaler(ScalingSpec spec, core::TimePoint now);

  // A sample of revision-wide concurrency and requests/s for the second of `now` (many
  // sources add up in one second: sampled queue-proxies scaled to the population, the
  // activator's own count).
  void record(core::TimePoint now, double concurrency, double rps);

  // The 2-second tick (and the scale-from-zero poke). `ready` = pods the activator holds
  // healthy.
  ScaleDecision decide(core::TimePoint now, int32_t ready);

  // A sample that must run decide() now instead of at the next tick: the revision is at
  // zero and this sample has load (Knative's Poke).
  bool wants_poke(double concurrency) const { return last_want_ == 0 && concurrency > 0; }

  // Whether the activator is in the request path (Knative's SKS Proxy mode): scale to
  // zero waits out the grace period in it. Locally it always is.
  void set_proxied(bool proxied, core::TimePoint now) {
    if (proxied && !proxied_)
      proxied_since_ = now;
    proxied_ = proxied;
  }

  const ScalingSpec& spec() const { return spec_; }
  int32_t last_want() const { return last_want_; }
  double target_per_pod() const { return spec_.decider.target; }

 private:
  int32_t bounded(int32_t want) const;
  // The keep-alive policy's answer for an idle revision, or nullopt (KPA decides).
  std::optional<int32_t> keep_alive(core::TimePoint now, int32_t kpa_want, Reason* reason);

  ScalingSpec spec_;
  MetricWindow stable_concurrency_, panic_concurrency_, stable_rps_, panic_rps_;
  Decider decider_;
  KeepAlive keep_alive_;
  bool initialized_;  // reached the initial scale once (declared before last_want_: used
                      // by bounded() in its initialiser)
  int32_t last_want_;
  std::optional<core::TimePoint> active_since_;
  std::optional<core::TimePoint> inactive_since_;
  core::TimePoint proxied_since_;  // locally the activator is always in the path
  bool proxied_ = true;
};

}  // namespace sluice::autoscaler
