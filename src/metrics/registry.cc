#include "metrics/registry.h"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <iterator>
#include <limits>

namespace sluice::metrics {

const Buckets& knative_latency_ms_buckets() {
  static const Buckets buckets({5,   10,   20,   40,   60,    80,    100,   150,   200,
                                250, 300,  350,  400,  450,   500,   600,   700,   800,
                                900, 1000, 2000, 5000, 10000, 20000, 50000, 100000});
  return buckets;
}

std::vector<prometheus::MetricFamily> Registry::collect() const {
  std::vector<prometheus::MetricFamily> out;
  for (const auto& c : collectors_) c(out);
  return out;
}

std::string Registry::serialize() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(collect());
}

void merge_families(std::vector<prometheus::MetricFamily>& into,
                    std::vector<prometheus::MetricFamily> more) {
  for (auto& f : more) {
    auto same = std::find_if(into.begin(), into.end(),
                             [&](const prometheus::MetricFamily& m) { return m.name == f.name; });
    if (same == into.end()) {
      into.push_back(std::move(f));
    } else {
      same->metric.insert(same->metric.end(), std::make_move_iterator(f.metric.begin()),
                          std::make_move_iterator(f.metric.end()));
    }
  }
}

std::string serialize(const std::vector<prometheus::MetricFamily>& families) {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(families);
}

prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

namespace {
prometheus::ClientMetric with_labels(const Labels& labels) {
  prometheus::ClientMetric m;
  m.label.reserve(labels.size());
  for (const auto& [k, v] : labels) m.label.push_back({k, v});
  return m;
}
}  // namespace

prometheus::ClientMetric counter_metric(const Labels& labels, double value) {
  auto m = with_labels(labels);
  m.counter.value = value;
  return m;
}

prometheus::ClientMetric gauge_metric(const Labels& labels, double value) {
  auto m = with_labels(labels);
  m.gauge.value = value;
  return m;
}

prometheus::ClientMetric histogram_metric(const Labels& labels,
                                          const Buckets& buckets,
                                          const HistogramSnapshot& snap) {
  auto m = with_labels(labels);
  m.histogram.sample_count = snap.count;
  m.histogram.sample_sum = snap.sum;
  const auto& bounds = buckets.bounds();
  for (size_t i = 0; i < bounds.size(); ++i) {
    m.histogram.bucket.push_back({snap.cumulative[i], bounds[i]});
  }
  m.histogram.bucket.push_back({snap.count, std::numeric_limits<double>::infinity()});
  return m;
}

std::string code_class(int code) {
  return std::to_string(code / 100) + "xx";
}

}  // namespace sluice::metrics
