// stats/request_stats.h
//
// RequestStats integrates concurrency over time and counts requests, split into all and
// "proxied" (sent by an activator), exactly as Knative's network/pkg/http/stats: each
// event first adds concurrency × (event time − last change) to the running integral,
// then changes the concurrency. report() cuts a window: averages = integral / elapsed,
// counts as-is, and restarts the window (current concurrency carries over).
//
// Threading: single owner (the queue-proxy's home worker). Time: callers pass `now`.
// Invariants: concurrency never goes negative (an unmatched Out is ignored, not wrapped).
#pragma once

#include <cstdint>

#include "core/time_source.h"

namespace sluice::stats {

struct Report {
  double average_concurrency = 0;
  double average_proxied_concurrency = 0;
  double request_count = 0;  // requests that arrived in the window
  double proxied_request_count = 0;
  double window_seconds = 0;
};

class RequestStats {
 public:
  enum class Event { ReqIn, ReqOut, ProxiedIn, ProxiedOut };

  explicit RequestStats(core::TimePoint start) : last_change_(start), window_start_(start) {}

  void handle(Event event, core::TimePoint now);
  Report report(core::TimePoint now);

  int64_t concurrency() const { return concurrency_; }
  int64_t proxied_concurrency() const { return proxied_concurrency_; }

 private:
  void integrate(core::TimePoint now);

  int64_t concurrency_ = 0;
  int64_t proxied_concurrency_ = 0;
  core::TimePoint last_change_;
  core::TimePoint window_start_;
  double concurrency_seconds_ = 0;  // ∫ concurrency dt over the window
  double proxied_concurrency_seconds_ = 0;
  uint64_t requests_ = 0;
  uint64_t proxied_requests_ = 0;
};

}  // namespace sluice::stats
