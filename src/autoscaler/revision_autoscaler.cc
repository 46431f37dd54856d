#include "autoscaler/revision_autoscaler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace sluice::autoscaler {

core::Duration panic_window_of(core::Duration stable, double panic_window_percentage) {
  const double seconds = core::to_seconds(stable) * panic_window_percentage / 100.0;
  return std::max<core::Duration>(std::chrono::seconds(std::llround(seconds)),
                                  std::chrono::seconds(1));
}

RevisionAutoscaler::RevisionAutoscaler(ScalingSpec spec, core::TimePoint now)
    : spec_(spec),
      stable_concurrency_(spec.decider.stable_window, spec.aggregation),
      panic_concurrency_(spec.panic_window, spec.aggregation),
      stable_rps_(spec.decider.stable_window, spec.aggregation),
      panic_rps_(spec.panic_window, spec.aggregation),
      decider_(spec.decider, 0, now, std::max(1, spec.initial_scale)),
      keep_alive_(spec.keep_alive),
      initialized_(spec.initial_scale <= 1),
      last_want_(bounded(spec.initial_scale)),
      proxied_since_(now) {}

void RevisionAutoscaler::record(core::TimePoint now, double concurrency, double rps) {
  stable_concurrency_.record(now, concurrency);
  panic_concurrency_.record(now, concurrency);
  stable_rps_.record(now, rps);
  panic_rps_.record(now, rps);
  keep_alive_.observe(now, concurrency > 0 || rps > 0);
}

std::optional<int32_t> RevisionAutoscaler::keep_alive(core::TimePoint now,
                                                      int32_t kpa_want,
                                                      Reason* reason) {
  if (!keep_alive_.active() || kpa_want > 1 || !keep_alive_.idle(now))
    return std::nullopt;
  Reason why;
  why.hold = keep_alive_.hold(now);
  const int32_t want = bounded(why.hold.replicas);
  if (want == 0 && !spec_.enable_scale_to_zero) {
    why.head = Reason::Head::HoldToZeroOff;
    *reason = std::move(why);
    return 1;
  }
  if (want > why.hold.replicas) {
    why.head = Reason::Head::HoldMinScale;
    why.bound_to = want;
  } else if (why.hold.why == KeepAlive::Hold::Why::Unknown) {
    why.head = Reason::Head::HoldNoRequest;
  } else {
    why.head = Reason::Head::Hold;
  }
  *reason = std::move(why);
  return want;
}

int32_t RevisionAutoscaler::bounded(int32_t want) const {
  int32_t lo = spec_.min_scale;
  // Until the revision has reached its initial scale once, that is the floor too.
  if (!initialized_ && spec_.initial_scale > 1)
    lo = std::max(lo, spec_.initial_scale);
  want = std::max(want, lo);
  if (spec_.max_scale > 0)
    want = std::min(want, spec_.max_scale);
  return want;
}

ScaleDecision RevisionAutoscaler::decide(core::TimePoint now, int32_t ready) {
  ScaleDecision out;
  // Reached the initial scale (as far as max-scale allows) once: it no longer binds.
  if (!initialized_ && ready >= bounded(spec_.initial_scale))
    initialized_ = true;
  if (ready > 0 && !active_since_) {
    active_since_ = now;
    inactive_since_.reset();
  }
  const bool concurrency = spec_.metric == Metric::Concurrency;
  const MetricWindow& stable = concurrency ? stable_concurrency_ : stable_rps_;
  const MetricWindow& panic = concurrency ? panic_concurrency_ : panic_rps_;
  if (stable.empty(now)) {
    // No data: hold (Knative skips the tick), within the bounds; a keep-alive policy may
    // pre-warm or let go.
    out.want = last_want_ = bounded(last_want_);
    if (last_want_ <= 1) {
      if (auto held = keep_alive(now, last_want_, &out.reason))
        out.want = last_want_ = *held;
    }
    return out;
  }
  out.has_data = true;
  out.stable = stable.average(now);
  out.panic = panic.average(now);
  out.kpa = decider_.decide(Observation{out.stable, out.panic, ready}, now);
  int32_t want = out.kpa.desired;
  Reason& why = out.reason;
  why.head = Reason::Head::Metric;
  why.panic = out.kpa.panicking;
  why.rps = !concurrency;
  why.value = out.kpa.panicking ? out.panic : out.stable;
  why.target = spec_.decider.target;
  // The fork's scale buffer: extra replicas while there is traffic.
  const bool has_traffic = out.stable > 0 || out.kpa.panicking;
  if (spec_.scale_buffer > 0 && has_traffic) {
    want = std::max(spec_.min_scale, want + spec_.scale_buffer);
    why.scale_buffer = spec_.scale_buffer;
  }
  const int32_t before_bounds = want;
  want = bounded(want);
  if (want != before_bounds) {
    why.bound = want > before_bounds ? Reason::Bound::RaisedToMin : Reason::Bound::CappedAtMax;
    why.bound_to = want;
  }

  // An idle revision's last replica is the keep-alive policy's, when there is one.
  if (!out.kpa.panicking) {
    if (auto held = keep_alive(now, want, &out.reason)) {
      if (*held > 0)
        inactive_since_.reset();
      else
        active_since_.reset();
      out.want = last_want_ = *held;
      return out;
    }
  }
  // Scale-to-zero sequencing (spec §3.8), only when the bounded answer is 0.
  if (want == 0) {
    if (!spec_.enable_scale_to_zero) {
      want = 1;
      why.zero = Reason::Zero::Disabled;
    } else if (active_since_ && now - *active_since_ < spec_.decider.stable_window) {
      // Active for less than a stable window: keep one.
      want = 1;
      why.zero = Reason::Zero::YoungerThanWindow;
    } else {
      if (!inactive_since_)
        inactive_since_ = now;
      const auto inactive_for = now - *inactive_since_;
      const auto proxied_for = proxied_ ? now - proxied_since_ : core::Duration::zero();
      if (inactive_for >= std::max(spec_.scale_to_zero_grace, spec_.pod_retention)) {
        want = 0;
      } else if (spec_.pod_retention > core::Duration::zero() &&
                 inactive_for < spec_.pod_retention) {
        want = last_want_;
        why.zero = Reason::Zero::Retention;
      } else if (proxied_for >= spec_.scale_to_zero_grace) {
        want = 0;
      } else {
        want = last_want_;
        why.zero = Reason::Zero::Grace;
      }
      if (want == 0) {
        why = Reason{};
        why.head = Reason::Head::NoTraffic;
        why.window = spec_.decider.stable_window;
        active_since_.reset();
      }
    }
  } else {
    inactive_since_.reset();
  }
  out.want = last_want_ = want;
  return out;
}

std::string Reason::str() const {
  std::string out;
  switch (head) {
    case Head::NoData:
      out = "no recent samples";
      break;
    case Head::NoTraffic:
      out = fmt::format("no traffic for a stable window ({}s)",
                        std::chrono::duration_cast<std::chrono::seconds>(window).count());
      break;
    case Head::Hold:
      out = hold.reason();
      break;
    case Head::HoldToZeroOff:
      out = "scale to zero disabled";
      break;
    case Head::HoldMinScale:
      out = fmt::format("min-scale {}", bound_to);
      break;
    case Head::HoldNoRequest:
      out = "idle, no request yet";
      break;
    case Head::Metric:
      out = fmt::format("{}: {:.3g} {}, target {:.3g}/replica", panic ? "panic" : "stable", value,
                        rps ? "req/s" : "concurrent", target);
      if (scale_buffer > 0)
        out += fmt::format(" + scale buffer {}", scale_buffer);
      if (bound == Bound::RaisedToMin)
        out += fmt::format(", raised to min-scale {}", bound_to);
      else if (bound == Bound::CappedAtMax)
        out += fmt::format(", capped at max-scale {}", bound_to);
      // By Zero, in its order.
      static constexpr const char* kKept[] = {"", ", scale to zero disabled",
                                              ", active for less than a stable window",
                                              ", pod retention", ", scale-to-zero grace period"};
      out += kKept[static_cast<size_t>(zero)];
      break;
  }
  return out + note;
}

}  // namespace sluice::autoscaler
