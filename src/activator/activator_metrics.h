// activator/activator_metrics.h
//
// The activator's Prometheus metrics: Knative 1.18's names and labels
// (activator_request_count, activator_request_latencies in ms, activator_request_concurrency)
// and the fork's (breaker_pending_requests, healthy targets, quarantine entries/exits and
// current count, evictions, transport failures by reason, proxy start latency, queue-time
// threshold counters, 502s by cause), and requests refused before reaching a revision.
//
// One RevisionMetrics per revision ever seen, never freed (a handful of bytes per
// revision), so a request can keep a plain pointer. Request-path cells are per-worker
// shards (single writer); health counters are written by the home worker only; gauges
// that mirror home-owned state are read on home at scrape time.
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "http/connection.h"
#include "metrics/registry.h"

namespace sluice::activator {

enum class TransportFailure {
  ConnectRefused,
  ConnectTimeout,
  Reset,
  ClosedBeforeResponse,
  BadResponse,
  Other,
  Count
};
std::string_view to_string(TransportFailure f);

struct RevisionMetrics {
  RevisionMetrics(std::string ns, std::string name, std::string service, size_t shards);

  metrics::Labels labels;         // namespace_name, service_name, configuration_name, revision_name
  metrics::CodeMetrics requests;  // activator_request_count / _latencies (ms)
  metrics::Histogram proxy_start;  // seconds: arrival → request handed to a pod
  std::array<std::unique_ptr<metrics::Counter>, 3> over_threshold;  // 4s, 60s, 180s queued
  std::array<std::unique_ptr<metrics::Counter>, static_cast<size_t>(TransportFailure::Count)>
      transport;
  std::unique_ptr<metrics::Counter> bad_gateway;
  // Home-only writers.
  std::atomic<uint64_t> quarantine_entries{0}, quarantine_exits{0}, evictions{0};
  std::atomic<double> reported_concurrency{0};  // last 1 s average (Knative's gauge)
};

class ActivatorMetrics {
 public:
  ActivatorMetrics(std::string pod_name, size_t shards);

  // Control thread (discovery): the metrics of a revision, created on first sight.
  RevisionMetrics* revision(const std::string& ns,
                            const std::string& name,
                            const std::string& service);

  // Gauges that mirror home-owned state, filled by the caller on the home worker.
  struct RevisionGauges {
    const RevisionMetrics* metrics;
    double pending, healthy, quarantined, capacity;
  };
  std::vector<prometheus::MetricFamily> collect(const std::vector<RevisionGauges>& gauges,
                                                uint64_t reload_failures) const;

  void record_queue_time(RevisionMetrics& m, size_t shard, double seconds) const;
  // A connection or request refused before it reached a revision (malformed, too large,
  // too slow, HTTP/2 limits): activator_rejected_requests_total{reason}.
  void count_rejection(size_t shard, http::Rejection r) {
    rejections_[static_cast<size_t>(r)]->inc(shard);
  }

 private:
  std::string pod_name_;
  size_t shards_;
  std::array<std::unique_ptr<metrics::Counter>, static_cast<size_t>(http::Rejection::Count)>
      rejections_;
  mutable std::mutex mu_;  // revision creation and scrape only, never the request path
  std::map<std::string, std::unique_ptr<RevisionMetrics>> revisions_;
};

}  // namespace sluice::activator
