#include "activator/activator_metrics.h"

#include <prometheus/text_serializer.h>

namespace sluice::activator {

namespace {
const metrics::Buckets& seconds_buckets() {
  static const metrics::Buckets b(
      {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 4, 10, 30, 60, 120, 180, 300, 600});
  return b;
}
constexpr double kThresholds[] = {4, 60, 180};
constexpr const char* kThresholdLabels[] = {"4s", "60s", "180s"};
}  // namespace

std::string_view to_string(TransportFailure f) {
  switch (f) {
    case TransportFailure::ConnectRefused:
      return "connect_refused";
    case TransportFailure::ConnectTimeout:
      return "connect_timeout";
    case TransportFailure::Reset:
      return "reset";
    case TransportFailure::ClosedBeforeResponse:
      return "closed_before_response";
    case TransportFailure::BadResponse:
      return "bad_response";
    case TransportFailure::Other:
      return "other";
    case TransportFailure::Count:
      break;
  }
  return "unknown";
}

RevisionMetrics::RevisionMetrics(std::string ns,
                                 std::string name,
                                 std::string service,
                                 size_t shards)
    : labels({{"namespace_name", std::move(ns)},
              {"service_name", service.empty() ? "unknown" : std::move(service)},
              {"configuration_name", "unknown"},
              {"revision_name", std::move(name)}}),
      requests(metrics::knative_latency_ms_buckets(), shards),
      proxy_start(seconds_buckets(), shards) {
  for (auto& c : over_threshold) c = std::make_unique<metrics::Counter>(shards);
  for (auto& c : transport) c = std::make_unique<metrics::Counter>(shards);
  bad_gateway = std::make_unique<metrics::Counter>(shards);
}

ActivatorMetrics::ActivatorMetrics(std::string pod_name, size_t shards)
    : pod_name_(std::move(pod_name)), shards_(shards) {
  for (auto& c : rejections_) c = std::make_unique<metrics::Counter>(shards);
}

RevisionMetrics* ActivatorMetrics::revision(const std::string& ns,
                                            const std::string& name,
                                            const std::string& service) {
  std::lock_guard lock(mu_);
  auto& slot = revisions_[ns + "/" + name];
  if (!slot)
    slot = std::make_unique<RevisionMetrics>(ns, name, service, shards_);
  return slot.get();
}

void ActivatorMetrics::record_queue_time(RevisionMetrics& m, size_t shard, double seconds) const {
  for (size_t i = 0; i < std::size(kThresholds); ++i) {
    if (seconds > kThresholds[i])
      m.over_threshold[i]->inc(shard);
  }
}

std::vector<prometheus::MetricFamily> ActivatorMetrics::collect(
    const std::vector<RevisionGauges>& gauges, uint64_t reload_failures) const {
  using prometheus::MetricType;
  std::lock_guard lock(mu_);
  auto with = [&](const metrics::Labels& base,
                  std::initializer_list<std::pair<std::string, std::string>> more) {
    metrics::Labels l = base;
    l.emplace_back("pod_name", pod_name_);
    l.emplace_back("container_name", "activator");
    for (const auto& kv : more) l.push_back(kv);
    return l;
  };
  std::vector<prometheus::MetricFamily> out;
  auto count = metrics::family("activator_request_count",
                               "The number of requests that are routed to the activator",
                               MetricType::Counter);
  auto lat = metrics::family("activator_request_latencies", "The response time in millisecond",
                             MetricType::Histogram);
  auto ps = metrics::family("activator_proxy_start_latency_seconds",
                            "Time from arrival until the request was handed to a pod",
                            MetricType::Histogram);
  auto over = metrics::family("activator_queue_time_over_threshold_total",
                              "Requests that waited for capacity longer than the threshold",
                              MetricType::Counter);
  auto transport =
      metrics::family("activator_transport_failures_total",
                      "Failed attempts to reach a pod, by reason", MetricType::Counter);
  auto bad_gateway = metrics::family("activator_bad_gateway_responses_total",
                                     "502 answers the activator gave", MetricType::Counter);
  auto entries = metrics::family("activator_pod_quarantine_entries_total",
                                 "Pods that entered quarantine", MetricType::Counter);
  auto exits = metrics::family("activator_pod_quarantine_exits_total", "Pods that left quarantine",
                               MetricType::Counter);
  auto evictions = metrics::family("activator_pod_evictions_total",
                                   "Pods quarantined 5 times in a row, reported for replacement",
                                   MetricType::Counter);
  for (const auto& [key, m] : revisions_) {
    m->requests.for_each([&](int code, const metrics::HistogramSnapshot& snap) {
      auto labels = with(m->labels, {{"response_code", std::to_string(code)},
                                     {"response_code_class", metrics::code_class(code)}});
      count.metric.push_back(metrics::counter_metric(labels, static_cast<double>(snap.count)));
      lat.metric.push_back(metrics::histogram_metric(labels, m->requests.buckets(), snap));
    });
    ps.metric.push_back(metrics::histogram_metric(with(m->labels, {}), seconds_buckets(),
                                                  m->proxy_start.snapshot()));
    for (size_t i = 0; i < m->over_threshold.size(); ++i) {
      over.metric.push_back(
          metrics::counter_metric(with(m->labels, {{"threshold", kThresholdLabels[i]}}),
                                  static_cast<double>(m->over_threshold[i]->value())));
    }
    for (size_t i = 0; i < m->transport.size(); ++i) {
      transport.metric.push_back(metrics::counter_metric(
          with(m->labels, {{"reason", std::string(to_string(static_cast<TransportFailure>(i)))}}),
          static_cast<double>(m->transport[i]->value())));
    }
    bad_gateway.metric.push_back(
        metrics::counter_metric(with(m->labels, {}), static_cast<double>(m->bad_gateway->value())));
    entries.metric.push_back(metrics::counter_metric(
        with(m->labels, {}), static_cast<double>(m->quarantine_entries.load())));
    exits.metric.push_back(metrics::counter_metric(
        with(m->labels, {}), static_cast<double>(m->quarantine_exits.load())));
    evictions.metric.push_back(
        metrics::counter_metric(with(m->labels, {}), static_cast<double>(m->evictions.load())));
  }
  auto concurrency =
      metrics::family("activator_request_concurrency",
                      "Requests in flight or waiting, per revision", MetricType::Gauge);
  auto pending = metrics::family("breaker_pending_requests", "Requests waiting for capacity",
                                 MetricType::Gauge);
  auto healthy = metrics::family("activator_healthy_targets", "Pods taking traffic (healthy)",
                                 MetricType::Gauge);
  auto quarantined =
      metrics::family("activator_pods_quarantined", "Pods in quarantine now", MetricType::Gauge);
  auto capacity = metrics::family("activator_revision_capacity",
                                  "Requests this activator may have in flight for the revision",
                                  MetricType::Gauge);
  for (const auto& g : gauges) {
    auto labels = with(g.metrics->labels, {});
    concurrency.metric.push_back(metrics::gauge_metric(
        labels, g.metrics->reported_concurrency.load(std::memory_order_relaxed)));
    pending.metric.push_back(metrics::gauge_metric(labels, g.pending));
    healthy.metric.push_back(metrics::gauge_metric(labels, g.healthy));
    quarantined.metric.push_back(metrics::gauge_metric(labels, g.quarantined));
    capacity.metric.push_back(metrics::gauge_metric(labels, g.capacity));
  }
  auto reload = metrics::family("activator_endpoints_reload_failures_total",
                                "Endpoints file reloads rejected (last good state kept)",
                                MetricType::Counter);
  reload.metric.push_back(metrics::counter_metric({}, static_cast<double>(reload_failures)));
  auto rejected = metrics::family("activator_rejected_requests_total",
                                  "Requests and connections refused before reaching a revision, "
                                  "by reason",
                                  MetricType::Counter);
  for (size_t i = 0; i < rejections_.size(); ++i) {
    rejected.metric.push_back(metrics::counter_metric(
        with({}, {{"reason", std::string(http::to_string(static_cast<http::Rejection>(i)))}}),
        static_cast<double>(rejections_[i]->value())));
  }
  for (auto* f : {&count, &lat, &ps, &over, &transport, &bad_gateway, &entries, &exits, &evictions,
                  &concurrency, &pending, &healthy, &quarantined, &capacity, &reload, &rejected}) {
    out.push_back(std::move(*f));
  }
  return out;
}

}  // namespace sluice::activator
