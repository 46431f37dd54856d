// autoscaler/keep_alive.h
//
// Keep-alive policies: whether a revision the KPA would take to zero keeps (or gets back)
// one replica, from the history of its idle times.
//
//   kpa        nothing held: Knative's own scale-to-zero sequencing decides (the default).
//   fixed D    one replica held until D after the last busy second.
//   histogram  the hybrid histogram policy of "Serverless in the Wild" (ATC'20): each
//              idle time (the gap between the end of a busy spell and the next request)
//              goes into a histogram of 1-minute bins up to 4 hours. Once the histogram
//              is representative, the replica is let go right after a busy spell, started
//              again before the head (5th percentile) of the idle times minus 10% and the
//              replica start time, and kept until the tail (99th percentile) plus 10%.
//              Until then, or while more than half of the idle times fall beyond the 4 h
//              range, it holds one replica for a fixed fallback after each busy spell (the
//              whole range by default, as ATC'20; "histogram:30m" shortens it).
//              Representative: at least 10 idle times, and the bin counts' coefficient of
//              variation at least 2 (a clear pattern, not a spread).
//
// Load comes as per-second samples (several sources may report the same second): a
// second with requests in flight or arriving is busy; an idle time is the span from the
// end of a busy second to the start of the next one, at least two whole seconds (a
// shorter pause is part of the busy spell).
//
// Threading: single owner. Time: callers pass `now`; no clocks.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "core/time_source.h"

namespace sluice::autoscaler {

struct KeepAliveSpec {
  enum class Mode { Kpa, Fixed, Histogram };
  Mode mode = Mode::Kpa;
  core::Duration fixed{0};                              // Mode::Fixed
  core::Duration fallback = std::chrono::hours(4);      // Mode::Histogram, not representative
  core::Duration start_lead = std::chrono::seconds(0);  // a replica's start time
};

// "kpa", "fixed:10m" (any duration config::parse_duration reads), "histogram",
// "histogram:30m" (its fallback keep-alive); an error says what is wrong.
std::optional<KeepAliveSpec> parse_keep_alive(const std::string& text, std::string* error);

class KeepAlive {
 public:
  static constexpr int kBins = 240;  // 1-minute bins up to 4 h
  static constexpr size_t kMinSamples = 10;
  static constexpr double kMinCv = 2.0;
  static constexpr double kHead = 0.05, kTail = 0.99, kMargin = 0.10;

  explicit KeepAlive(KeepAliveSpec spec) : spec_(spec) {}

  // One second's load: busy (requests in flight or arriving) or not. Only busy seconds
  // matter: idle is their absence.
  void observe(core::TimePoint now, bool busy);
  // No busy second for two whole seconds before `now`: the revision is idle.
  bool idle(core::TimePoint now) const;
  bool active() const { return spec_.mode != KeepAliveSpec::Mode::Kpa; }

  // Asked for every idle revision every 2 s and printed only when it changes the
  // replicas: the facts are kept, the text made by reason().
  struct Hold {
    enum class Why : uint8_t {
      Unknown,       // kpa, or no request yet
      Busy,          //
      Fixed,         // kept for the keep-alive `length`
      FixedOver,     // idle for longer than it
      Fallback,      // histogram not representative (`count` idle times): `length`
      FallbackOver,  //
      PreWarm,       // `length`: until the head of the idle times
      Tail,          // kept until the tail (`count` minutes)
      Early,         // `length` until the head, not yet warmed
      PastTail,      // `count` minutes
    };
    int32_t replicas = 0;  // 0 or 1
    Why why = Why::Unknown;
    core::Duration length{};
    int64_t count = 0;
    // Why, for people ("pre-warm: next request expected in ~40 s"); empty only when
    // nothing is known (kpa, no request yet).
    std::string reason() const;
  };
  // What the policy holds now for an idle revision (0 before any request came).
  Hold hold(core::TimePoint now) const;

  bool representative() const { return representative_; }
  size_t samples() const { return samples_; }
  // The head and tail of the idle times (whole minutes, the bins' upper edges).
  int head_minutes() const { return head_; }
  int tail_minutes() const { return tail_; }

 private:
  int percentile(double q) const;
  // Recomputes the three above from the bins. Once per idle time, not per decision:
  // every idle revision is asked every 2 s.
  void summarize();

  bool representative_ = false;
  int head_ = kBins, tail_ = kBins;

  KeepAliveSpec spec_;
  std::array<uint32_t, kBins> bins_{};
  size_t samples_ = 0;
  size_t beyond_ = 0;                         // idle times longer than the range
  std::optional<core::TimePoint> last_busy_;  // the start of the last busy second
};

}  // namespace sluice::autoscaler
