#include "queue/queue_metrics.h"

#include <boost/beast/core/string.hpp>

namespace sluice::queue {

namespace {
constexpr double kThresholds[] = {4, 60, 180};
constexpr const char* kThresholdLabels[] = {"4s", "60s", "180s"};
constexpr const char* kRouteTags[] = {"DISABLED", "DEFAULT", "UNDEFINED", "TAGGED"};
}  // namespace

RouteTag route_tag_of(const http::MessageHead& head) {
  auto tag = head.get("Knative-Serving-Tag");
  auto def = head.get("Knative-Serving-Default-Route");
  if (tag && !tag->empty()) {
    if (def && boost::beast::iequals(*def, "true"))
      return RouteTag::Undefined;
    return RouteTag::Tagged;
  }
  if (def)
    return RouteTag::Default;
  return RouteTag::Disabled;
}

std::string_view to_string(ProxyError e) {
  switch (e) {
    case ProxyError::QueueFull:
      return "queue_full";
    case ProxyError::QueueTimeout:
      return "queue_timeout";
    case ProxyError::ConnectFailed:
      return "connect_failed";
    case ProxyError::UpstreamClosed:
      return "upstream_closed";
    case ProxyError::BadResponse:
      return "bad_response";
    case ProxyError::Timeout:
      return "timeout";
    case ProxyError::BrokenMidResponse:
      return "broken_mid_response";
    case ProxyError::Draining:
      return "draining";
    case ProxyError::ClientGoneWhileQueued:
      return "client_gone_while_queued";
    case ProxyError::GrpcDeadline:
      return "grpc_deadline";
    case ProxyError::Count:
      break;
  }
  return "unknown";
}

QueueMetrics::QueueMetrics(const config::QueueProxyConfig& cfg, size_t shards)
    : base_({{"namespace_name", cfg.namespace_name},
             {"service_name", cfg.service_name.empty() ? "unknown" : cfg.service_name},
             {"configuration_name", cfg.configuration_name},
             {"revision_name", cfg.revision_name},
             {"pod_name", cfg.pod_name},
             {"container_name", "queue-proxy"}}),
      has_breaker_(cfg.container_concurrency > 0),
      app_requests_(metrics::knative_latency_ms_buckets(), shards),
      seconds_buckets_({0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 4, 10, 30, 60, 120,
                        180, 300, 600}),
      queue_time_(seconds_buckets_, shards),
      proxy_start_(seconds_buckets_, shards) {
  for (auto& r : requests_) {
    r = std::make_unique<metrics::CodeMetrics>(metrics::knative_latency_ms_buckets(), shards);
  }
  for (auto& c : over_threshold_) c = std::make_unique<metrics::Counter>(shards);
  for (auto& c : rejections_) c = std::make_unique<metrics::Counter>(shards);
  for (auto& c : errors_) c = std::make_unique<metrics::Counter>(shards);

  using prometheus::MetricType;
  registry_.add([this](std::vector<prometheus::MetricFamily>& out) {
    auto count = metrics::family("revision_request_count",
                                 "The number of requests that are routed to queue-proxy",
                                 MetricType::Counter);
    auto lat = metrics::family("revision_request_latencies", "The response time in millisecond",
                               MetricType::Histogram);
    for (size_t t = 0; t < requests_.size(); ++t) {
      requests_[t]->for_each([&](int code, const metrics::HistogramSnapshot& snap) {
        auto labels = base_;
        labels.emplace_back("response_code", std::to_string(code));
        labels.emplace_back("response_code_class", metrics::code_class(code));
        labels.emplace_back("route_tag", kRouteTags[t]);
        count.metric.push_back(metrics::counter_metric(labels, static_cast<double>(snap.count)));
        lat.metric.push_back(metrics::histogram_metric(labels, requests_[t]->buckets(), snap));
      });
    }
    out.push_back(std::move(count));
    out.push_back(std::move(lat));

    auto app_count = metrics::family("revision_app_request_count",
                                     "The number of requests that are routed to user-container",
                                     MetricType::Counter);
    auto app_lat = metrics::family("revision_app_request_latencies",
                                   "The response time in millisecond", MetricType::Histogram);
    app_requests_.for_each([&](int code, const metrics::HistogramSnapshot& snap) {
      auto labels = base_;
      labels.emplace_back("response_code", std::to_string(code));
      labels.emplace_back("response_code_class", metrics::code_class(code));
      app_count.metric.push_back(metrics::counter_metric(labels, static_cast<double>(snap.count)));
      app_lat.metric.push_back(metrics::histogram_metric(labels, app_requests_.buckets(), snap));
    });
    out.push_back(std::move(app_count));
    out.push_back(std::move(app_lat));

    if (has_breaker_) {
      auto depth = metrics::family(
          "revision_queue_depth",
          "The current number of items in the serving and waiting queue, sampled at arrival",
          MetricType::Gauge);
      depth.metric.push_back(metrics::gauge_metric(
          base_, static_cast<double>(queue_depth.load(std::memory_order_relaxed))));
      out.push_back(std::move(depth));
    }
    auto pending = metrics::family("breaker_pending_requests",
                                   "Requests waiting for a concurrency slot", MetricType::Gauge);
    pending.metric.push_back(metrics::gauge_metric(
        base_, static_cast<double>(pending_requests.load(std::memory_order_relaxed))));
    out.push_back(std::move(pending));

    auto qt = metrics::family("revision_queue_time_seconds",
                              "Time requests waited for a concurrency slot", MetricType::Histogram);
    qt.metric.push_back(metrics::histogram_metric(base_, seconds_buckets_, queue_time_.snapshot()));
    out.push_back(std::move(qt));
    auto ps = metrics::family("revision_proxy_start_latency_seconds",
                              "Time from arrival until the request was handed to the app",
                              MetricType::Histogram);
    ps.metric.push_back(
        metrics::histogram_metric(base_, seconds_buckets_, proxy_start_.snapshot()));
    out.push_back(std::move(ps));

    auto over = metrics::family("revision_queue_time_over_threshold_total",
                                "Requests that waited for a slot longer than the threshold",
                                MetricType::Counter);
    for (size_t i = 0; i < over_threshold_.size(); ++i) {
      auto labels = base_;
      labels.emplace_back("threshold", kThresholdLabels[i]);
      over.metric.push_back(
          metrics::counter_metric(labels, static_cast<double>(over_threshold_[i]->value())));
    }
    out.push_back(std::move(over));

    auto rej = metrics::family("revision_rejected_requests_total",
                               "Requests refused before reaching a handler, by reason",
                               MetricType::Counter);
    for (size_t i = 0; i < rejections_.size(); ++i) {
      auto labels = base_;
      labels.emplace_back("reason", std::string(http::to_string(static_cast<http::Rejection>(i))));
      rej.metric.push_back(
          metrics::counter_metric(labels, static_cast<double>(rejections_[i]->value())));
    }
    out.push_back(std::move(rej));

    auto err = metrics::family("revision_proxy_errors_total",
                               "Answers the queue-proxy made itself instead of the app, by reason",
                               MetricType::Counter);
    for (size_t i = 0; i < errors_.size(); ++i) {
      auto labels = base_;
      labels.emplace_back("reason", std::string(to_string(static_cast<ProxyError>(i))));
      err.metric.push_back(
          metrics::counter_metric(labels, static_cast<double>(errors_[i]->value())));
    }
    out.push_back(std::move(err));
  });
}

void QueueMetrics::record_queue_time(size_t shard, double seconds) {
  queue_time_.observe(shard, seconds);
  for (size_t i = 0; i < std::size(kThresholds); ++i) {
    if (seconds > kThresholds[i])
      over_threshold_[i]->inc(shard);
  }
}

}  // namespace sluice::queue
