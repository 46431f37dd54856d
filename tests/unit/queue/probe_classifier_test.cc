#include "queue/probe_classifier.h"

#include <gtest/gtest.h>

#include "http/parsed_head.h"
#include "queue/queue_metrics.h"

namespace sluice::queue {
namespace {

using Head = http::ParsedHead;

TEST(ProbeClassifier, KnativeProbeKinds) {
  struct Case {
    std::string headers;
    ProbeKind kind;
  } cases[] = {
      {"User-Agent: kube-probe/1.30\r\nK-Network-Probe: queue\r\n", ProbeKind::HealthCheck},
      {"User-Agent: kube-probe/1.30\r\n", ProbeKind::HealthCheck},  // value "" → 400 later
      {"User-Agent: Knative-Activator-Probe\r\nK-Network-Probe: queue\r\n", ProbeKind::HealthCheck},
      {"User-Agent: Knative-Autoscaling-Probe\r\n", ProbeKind::HealthCheck},
      {"User-Agent: curl/8\r\nK-Network-Probe: queue\r\n", ProbeKind::HealthCheck},
      {"K-Network-Probe: probe\r\nK-Network-Hash: abc\r\n", ProbeKind::NetworkProbe},
      {"K-Network-Probe: activator\r\n", ProbeKind::BadValue},
      {"User-Agent: curl/8\r\n", ProbeKind::None},
  };
  for (size_t i = 0; i < std::size(cases); ++i) {
    Head h(cases[i].headers);
    EXPECT_EQ(classify_probe(h.head).kind, cases[i].kind)
        << "case " << i << ": " << cases[i].headers;
  }
  Head np("K-Network-Probe: probe\r\nK-Network-Hash: abc\r\n");
  EXPECT_EQ(classify_probe(np.head).hash, "abc");
}

TEST(RouteTag, KnativeCategories) {
  EXPECT_EQ(route_tag_of(Head("").head), RouteTag::Disabled);
  EXPECT_EQ(route_tag_of(Head("Knative-Serving-Default-Route: true\r\n").head), RouteTag::Default);
  EXPECT_EQ(route_tag_of(Head("Knative-Serving-Tag: blue\r\n").head), RouteTag::Tagged);
  EXPECT_EQ(route_tag_of(
                Head("Knative-Serving-Tag: blue\r\nKnative-Serving-Default-Route: true\r\n").head),
            RouteTag::Undefined);
}

}  // namespace
}  // namespace sluice::queue
