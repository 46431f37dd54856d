// sim/simulator.h
//
// Replays a trace through the real autoscaler. The very ScalingLoop that scales `sluice
// run` (with its RevisionAutoscaler, decider, poke and early scale-up) runs on a manual
// clock, fed by the activator's real ConcurrencyReporter, against a model of the data
// plane in place of processes:
//
//   trace ──arrivals──▶ activator model ──request_in/out──▶ ConcurrencyReporter
//      (queue while no ready replica has a free slot;       │ cut() every second
//       containerConcurrency slots per replica)             ▼
//   replicas ◀──Scaler::scale(want)── ScalingLoop ◀──stat(), set_pods(ready replicas)
//      (Starting ──start time──▶ Ready; scale-down takes starting replicas first, then
//       idle ones, then drains busy ones: they take no new request and leave when done)
//
// The queue-proxies' scrapes answer zero, as they do locally: every request goes through
// the activator, whose own reports count it (the loop subtracts what was proxied).
//
// After the trace each service runs until it is back at its floor (nothing queued or in
// flight, no more replicas than min-scale, or one where scale to zero is off), at most an
// hour more; its results end there.
//
// Measured per service: requests; cold starts (requests answered by a replica that was
// not ready when they arrived: they waited for a replica to start); added latency (from
// arrival to a slot; p50/p99 from a log histogram, 1% resolution; max exact);
// replica-seconds (starting, ready or draining); idle replica-seconds (ready, nothing in
// flight); scale events (changes of the replicas asked for).
//
// A keep-alive policy (ScalingSpec::keep_alive) is told the replica start time of the
// model as its pre-warm lead.
//
// Threading: each call is single-threaded and owns its clock and io_context: calls may run
// on several threads at once over the same (read-only) trace. Deterministic: the same
// trace, setups and seed give the same result.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autoscaler/revision_autoscaler.h"
#include "sim/trace.h"

namespace sluice::sim {

struct ServiceSetup {
  autoscaler::ScalingSpec scaling;
  uint32_t container_concurrency = 0;                   // 0: unbounded
  core::Duration start_time = std::chrono::seconds(1);  // from asked for to ready
};

// Added latency, in a log histogram (1% buckets from 1 µs).
class LatencyHistogram {
 public:
  void add(double seconds);
  double quantile(double q) const;  // 0 when empty
  double max() const { return max_; }
  uint64_t count() const { return count_; }

 private:
  std::vector<uint64_t> buckets_;
  uint64_t zeros_ = 0;  // no added latency at all (most requests)
  uint64_t count_ = 0;
  double max_ = 0;
};

// One step of a service's time series (for plots).
struct SeriesPoint {
  uint32_t replicas = 0;  // the most replicas running (starting, ready or draining) in it
  uint32_t arrivals = 0;  // requests that arrived in it
};

struct ServiceResult {
  uint64_t requests = 0;
  uint64_t cold_starts = 0;
  LatencyHistogram added_latency;
  double replica_seconds = 0;
  double idle_replica_seconds = 0;
  uint64_t scale_events = 0;
  std::vector<SeriesPoint> series;  // one per SimOptions::series_step, when asked for
};

struct SimOptions {
  uint64_t seed = 1;  // the loop's pod sampling
  // Called now and then with the fraction of the trace done (a progress bar).
  std::function<void(double)> progress;
  // Record time series at this step (whole seconds); 0: none. For the services in
  // `series_of` (indices), or every service when it is empty.
  uint32_t series_step_s = 0;
  std::vector<uint32_t> series_of;
  // Simulate only these services (indices; the others' results stay empty); empty: all.
  // Services do not interact in the model, so runs over disjoint sets give, together,
  // exactly the results of one run over all of them (several threads share one policy).
  std::vector<uint32_t> services;
};

// One result per trace service; `setups[i]` is trace.services[i]'s.
std::vector<ServiceResult> simulate(const Trace& trace,
                                    const std::vector<ServiceSetup>& setups,
                                    const SimOptions& options = {});

}  // namespace sluice::sim
