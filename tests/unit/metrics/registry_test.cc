#include "metrics/registry.h"

#include <gtest/gtest.h>

namespace sluice::metrics {
namespace {

std::vector<prometheus::MetricFamily> one(const std::string& name, const std::string& pod) {
  auto f = family(name, "help", prometheus::MetricType::Gauge);
  f.metric.push_back(gauge_metric({{"pod_name", pod}}, 1));
  return {f};
}

// Two replicas' queue-proxy metrics, and the activator's of the same name, in one
// exposition: one HELP and TYPE line per name, every sample kept.
TEST(MergeFamilies, SameNamesBecomeOneFamilyWithEverySample) {
  auto all = one("breaker_pending_requests", "activator");
  merge_families(all, one("breaker_pending_requests", "hello-1"));
  merge_families(all, one("revision_request_count", "hello-1"));
  merge_families(all, one("breaker_pending_requests", "hello-2"));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "breaker_pending_requests");
  EXPECT_EQ(all[0].metric.size(), 3u);
  EXPECT_EQ(all[1].metric.size(), 1u);
  const std::string text = serialize(all);
  size_t types = 0;
  for (size_t at = 0; (at = text.find("# TYPE breaker_pending_requests", at)) != std::string::npos;
       ++at)
    ++types;
  EXPECT_EQ(types, 1u) << text;
  EXPECT_NE(text.find("pod_name=\"hello-2\""), std::string::npos) << text;
}

}  // namespace
}  // namespace sluice::metrics
