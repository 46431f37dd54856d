// queue/queue_metrics.h
//
// The queue-proxy's Prometheus metrics: Knative 1.18's names and labels (spec §4) plus
// the fork's (spec fork §7). Workers record into their own shard (index = worker);
// gauges are written by the home worker only; the scrape on the control thread reads.
//
//   revision_request_count / _latencies (ms)      code, class, route_tag; probes excluded
//   revision_app_request_count / _latencies (ms)  answers that came from the app
//   revision_queue_depth                          breaker in-flight at arrival (CC > 0)
//   breaker_pending_requests                      requests waiting for a slot now
//   revision_queue_time_seconds                   time spent waiting for a slot
//   revision_proxy_start_latency_seconds          arrival → request handed to the app
//   revision_queue_time_over_threshold_total      waited over 4s / 60s / 180s
//   revision_rejected_requests_total{reason}      refused before a handler saw them
//   revision_proxy_errors_total{reason}           answers the queue-proxy made itself
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <string>

#include "config/queue_proxy_config.h"
#include "http/connection.h"
#include "metrics/registry.h"

namespace sluice::queue {

// Knative's route_tag label, folded to a fixed set: the raw tag header is
// client-controlled and must not mint new series.
enum class RouteTag { Disabled, Default, Undefined, Tagged, Count };
RouteTag route_tag_of(const http::MessageHead& head);

enum class ProxyError {
  QueueFull,              // 503 pending request queue full
  QueueTimeout,           // 504 while waiting for a slot
  ConnectFailed,          // 502 app unreachable
  UpstreamClosed,         // 502 app closed/reset before answering
  BadResponse,            // 502 app answered with something that is not HTTP
  Timeout,                // 504 no response start before the deadline
  BrokenMidResponse,      // connection cut after the response started
  Draining,               // 503 shutting down
  ClientGoneWhileQueued,  // client hung up while waiting for a slot
  GrpcDeadline,           // 504 the call's grpc-timeout passed (queued, or no answer yet)
  Count
};
std::string_view to_string(ProxyError e);

class QueueMetrics {
 public:
  QueueMetrics(const config::QueueProxyConfig& cfg, size_t shards);

  void record_request(size_t shard, RouteTag tag, int code, double latency_ms) {
    requests_[static_cast<size_t>(tag)]->record(shard, code, latency_ms);
  }
  void record_app_request(size_t shard, int code, double latency_ms) {
    app_requests_.record(shard, code, latency_ms);
  }
  void record_queue_time(size_t shard, double seconds);
  void record_proxy_start(size_t shard, double seconds) { proxy_start_.observe(shard, seconds); }
  void count_rejection(size_t shard, http::Rejection r) {
    rejections_[static_cast<size_t>(r)]->inc(shard);
  }
  void count_error(size_t shard, ProxyError e) { errors_[static_cast<size_t>(e)]->inc(shard); }

  std::atomic<int64_t> queue_depth{0};       // written by the home worker
  std::atomic<int64_t> pending_requests{0};  // written by the home worker

  metrics::Registry& registry() { return registry_; }
  const metrics::Registry& registry() const { return registry_; }

 private:
  metrics::Labels base_;
  bool has_breaker_;
  std::array<std::unique_ptr<metrics::CodeMetrics>, static_cast<size_t>(RouteTag::Count)> requests_;
  metrics::CodeMetrics app_requests_;
  metrics::Buckets seconds_buckets_;
  metrics::Histogram queue_time_;
  metrics::Histogram proxy_start_;
  std::array<std::unique_ptr<metrics::Counter>, 3> over_threshold_;
  std::array<std::unique_ptr<metrics::Counter>, static_cast<size_t>(http::Rejection::Count)>
      rejections_;
  std::array<std::unique_ptr<metrics::Counter>, static_cast<size_t>(ProxyError::Count)> errors_;
  metrics::Registry registry_;
};

}  // namespace sluice::queue
