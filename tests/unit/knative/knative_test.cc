#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "knative/autoscaler_link.h"
#include "knative/kube_discovery.h"
#include "stats/stat.pb.h"

namespace sluice::knative {
namespace {

using nlohmann::json;
using Strings = std::vector<std::string>;

// Private Endpoints as Knative's SKS reconciler writes them (ports by name).
const json kPrivate = json::parse(R"({
  "metadata": {"name": "hello-00001-private", "namespace": "default",
               "labels": {"serving.knative.dev/revision": "hello-00001"}},
  "subsets": [
    {"addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.1.4"}],
     "notReadyAddresses": [{"ip": "10.244.1.9"}],
     "ports": [{"name": "http-queueadm", "port": 8022}, {"name": "http", "port": 8012},
               {"name": "http-autometric", "port": 9090}]},
    {"addresses": [{"ip": "fd00::7"}], "ports": [{"name": "http2", "port": 8013}]}
  ]})");

TEST(KubeDiscovery, PodsAreTheHttpPortOfReadyAndNotReadyAddresses) {
  EXPECT_EQ(KubeDiscovery::addresses(kPrivate, {"http", "http2"}, true),
            (Strings{"10.244.1.4:8012", "10.244.1.5:8012", "10.244.1.9:8012", "[fd00::7]:8013"}));
  EXPECT_EQ(KubeDiscovery::addresses(kPrivate, {"http", "http2"}, false),
            (Strings{"10.244.1.4:8012", "10.244.1.5:8012", "[fd00::7]:8013"}));
  EXPECT_EQ(KubeDiscovery::addresses(kPrivate, {"nope"}, true), Strings{});
  for (
      const char* odd :
      {R"({})", R"({"subsets": 3})", R"({"subsets": [{"ports": [{"name": "http", "port": "x"}],
                          "addresses": [{"ip": "1.2.3.4"}]}]})",
       R"({"subsets": [{"ports": [{"name": "http", "port": 70000}], "addresses": [{"ip": "1.2.3.4"}]}]})",
       R"({"subsets": [{"ports": [{"name": "http", "port": 80}], "addresses": [{"host": "x"}]}]})"})
    EXPECT_EQ(KubeDiscovery::addresses(json::parse(odd), {"http"}, true), Strings{}) << odd;
}

TEST(KubeDiscovery, PeersAreTheActivatorsOfThePublicEndpointsOnOurPort) {
  const json pub =
      json::parse(R"({"subsets": [{"addresses": [{"ip": "10.244.1.3"}, {"ip": "10.244.1.2"}],
    "notReadyAddresses": [{"ip": "10.244.1.8"}], "ports": [{"name": "http", "port": 8012}]}]})");
  EXPECT_EQ(KubeDiscovery::peer_addresses(pub, 8012),
            (Strings{"10.244.1.2:8012", "10.244.1.3:8012"}));
}

TEST(KubeDiscovery, RevisionSettingsAndTheirRanges) {
  auto info = KubeDiscovery::revision_info(
      json::parse(R"({"metadata": {"labels": {"serving.knative.dev/service": "hello"}},
    "spec": {"containerConcurrency": 4, "timeoutSeconds": 30}})"));
  ASSERT_TRUE(info);
  EXPECT_EQ(info->service, "hello");
  EXPECT_EQ(info->container_concurrency, 4u);
  EXPECT_EQ(info->timeout, std::chrono::seconds(30));
  info = KubeDiscovery::revision_info(json::parse(R"({"spec": {}})"));  // defaults: CC 0, 300 s
  ASSERT_TRUE(info);
  EXPECT_EQ(info->container_concurrency, 0u);
  EXPECT_EQ(info->timeout, std::chrono::seconds(300));
  for (const char* bad :
       {R"({"spec": {"containerConcurrency": -1}})", R"({"spec": {"containerConcurrency": "4"}})",
        R"({"spec": {"timeoutSeconds": 0}})", R"({"spec": {"timeoutSeconds": 1e9}})"})
    EXPECT_FALSE(KubeDiscovery::revision_info(json::parse(bad))) << bad;
}

TEST(AutoscalerLink, FramesAreWireStatMessagesWithWhatKnativesActivatorFills) {
  activator::RevisionConcurrency a{"default/hello-00001", {}};
  a.report.average_concurrency = 2.5;
  a.report.request_count = 7;
  a.report.average_proxied_concurrency = 9;  // not sent: Knative's activator leaves it out
  activator::RevisionConcurrency b{"ml/big-00003", {}};
  b.report.average_concurrency = 1;
  b.report.request_count = 1;
  stats::wire::WireStatMessages msgs;
  ASSERT_TRUE(msgs.ParseFromString(AutoscalerLink::encode("activator-abc", {a, b})));
  ASSERT_EQ(msgs.messages_size(), 2);
  EXPECT_EQ(msgs.messages(0).namespace_(), "default");
  EXPECT_EQ(msgs.messages(0).name(), "hello-00001");
  EXPECT_EQ(msgs.messages(0).stat().pod_name(), "activator-abc");
  EXPECT_EQ(msgs.messages(0).stat().average_concurrent_requests(), 2.5);
  EXPECT_EQ(msgs.messages(0).stat().request_count(), 7);
  EXPECT_EQ(msgs.messages(0).stat().average_proxied_concurrent_requests(), 0);
  EXPECT_EQ(msgs.messages(0).stat().timestamp(), 0);  // the autoscaler stamps it
  EXPECT_EQ(msgs.messages(1).namespace_(), "ml");
  EXPECT_EQ(msgs.messages(1).name(), "big-00003");
}

}  // namespace
}  // namespace sluice::knative
