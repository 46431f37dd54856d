#include "autoscaler/revision_autoscaler.h"

#include <fmt/compile.h>
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
                                                      std::string* reason) {
  if (!keep_alive_.active() || kpa_want > 1 || !keep_alive_.idle(now))
    return std::nullopt;
  const KeepAlive::Hold hold = keep_alive_.hold(now);
  int32_t want = bounded(hold.replicas);
  std::string why = hold.reason;
  if (want == 0 && !spec_.enable_scale_to_zero) {
    want = 1;
    why = "scale to zero disabled";
  } else if (want > hold.replicas) {
    why = fmt::format("min-scale {}", want);
  } else if (why.empty()) {
    why = "idle, no request yet";
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
  const char* unit = concurrency ? "concurrent" : "req/s";
  if (stable.empty(now)) {
    // No data: hold (Knative skips the tick), within the bounds; a keep-alive policy may
    // pre-warm or let go.
    out.want = last_want_ = bounded(last_want_);
    out.reason = "no recent samples";
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
  if (out.kpa.panicking) {
    // Compiled formats: every revision is decided every 2 s (a simulated day: millions).
    out.reason = fmt::format(FMT_COMPILE("panic: {:.3g} {}, target {:.3g}/replica"), out.panic,
                             unit, spec_.decider.target);
  } else {
    out.reason = fmt::format(FMT_COMPILE("stable: {:.3g} {}, target {:.3g}/replica"), out.stable,
                             unit, spec_.decider.target);
  }
  // The fork's scale buffer: extra replicas while there is traffic.
  const bool has_traffic = out.stable > 0 || out.kpa.panicking;
  if (spec_.scale_buffer > 0 && has_traffic) {
    want = std::max(spec_.min_scale, want + spec_.scale_buffer);
    out.reason += fmt::format(" + scale buffer {}", spec_.scale_buffer);
  }
  const int32_t before_bounds = want;
  want = bounded(want);
  if (want > before_bounds) {
    out.reason += fmt::format(", raised to min-scale {}", want);
  } else if (want < before_bounds) {
    out.reason += fmt::format(", capped at max-scale {}", want);
  }

  // An idle revision's last replica is the keep-alive policy's, when there is one.
  if (!out.kpa.panicking) {
    std::string why;
    if (auto held = keep_alive(now, want, &why)) {
      out.reason = std::move(why);
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
      out.reason += ", scale to zero disabled";
    } else if (active_since_ && now - *active_since_ < spec_.decider.stable_window) {
      // Active for less than a stable window: keep one.
      want = 1;
      out.reason += ", active for less than a stable window";
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
        out.reason += ", pod retention";
      } else if (proxied_for >= spec_.scale_to_zero_grace) {
        want = 0;
      } else {
        want = last_want_;
        out.reason += ", scale-to-zero grace period";
      }
      if (want == 0) {
        out.reason = fmt::format(
            "no traffic for a stable window ({}s)",
            std::chrono::duration_cast<std::chrono::seconds>(spec_.decider.stable_window).count());
        active_since_.reset();
      }
    }
  } else {
    inactive_since_.reset();
  }
  out.want = last_want_ = want;
  return out;
}

}  // namespace sluice::autoscaler
