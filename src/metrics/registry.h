// metrics/registry.h
//
// Registry turns the recording cells into Prometheus families at scrape time and
// serialises them with prometheus-cpp's text serializer. Collectors are registered at
// start-up (not thread-safe against concurrent registration); collect() may run on any
// thread while workers record.
#pragma once

#include <prometheus/metric_family.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "metrics/cells.h"

namespace sluice::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Registry {
 public:
  using Collector = std::function<void(std::vector<prometheus::MetricFamily>&)>;

  void add(Collector collector) { collectors_.push_back(std::move(collector)); }
  std::vector<prometheus::MetricFamily> collect() const;
  std::string serialize() const;  // Prometheus text format 0.0.4

 private:
  std::vector<Collector> collectors_;
};

// Adds `more` to `into`: a family whose name `into` has already gets its samples appended
// (one per replica, say), so each name keeps one HELP and TYPE line as the format requires.
void merge_families(std::vector<prometheus::MetricFamily>& into,
                    std::vector<prometheus::MetricFamily> more);
std::string serialize(const std::vector<prometheus::MetricFamily>& families);

// Helpers to build families.
prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type);
prometheus::ClientMetric counter_metric(const Labels& labels, double value);
prometheus::ClientMetric gauge_metric(const Labels& labels, double value);
prometheus::ClientMetric histogram_metric(const Labels& labels,
                                          const Buckets& buckets,
                                          const HistogramSnapshot& snap);

// "2xx" for 204.
std::string code_class(int code);

}  // namespace sluice::metrics
