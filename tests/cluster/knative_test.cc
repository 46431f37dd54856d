// The harness proven with Knative's own data plane, and Sluice's queue-proxy run from
// the pod spec Knative's controller generates, behind Knative's activator.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <mutex>
#include <thread>

#include "cluster_fixture.h"
#include "kube/reflector.h"

namespace cluster {
namespace {

constexpr const char* kServices = "/apis/serving.knative.dev/v1/namespaces/default/services";

// Requests through an activator pod, routed by Knative's headers.
e2e::HttpResponse via_activator(Cluster& c,
                                const std::string& revision,
                                const std::string& query = "") {
  auto ips = c.ready_pod_ips("knative-serving", "app=activator");
  if (ips.empty())
    return {};
  return c.curl(
      fmt::format("http://{}:8012/{}", ips[0], query),
      fmt::format("-H 'Knative-Serving-Namespace: default' -H 'Knative-Serving-Revision: {}'",
                  revision));
}

TEST(KnativeDataPlane, ServesAServiceThroughItsActivatorAndQueueProxy) {
  Cluster c({.activator = "knative", .queue_proxy = "knative"});
  ASSERT_EQ(c.error(), "");
  ASSERT_EQ(c.create(kServices, hello_service("hello", 0)), "");
  ASSERT_TRUE(c.wait_condition(revision_path("default", "hello-00001"), "Ready", 180s))
      << c.logs("controller") << c.logs("hello");
  auto r = via_activator(c, "hello-00001");
  EXPECT_EQ(r.status, 200) << r.head << r.body << c.logs("activator");
  EXPECT_EQ(r.body, "hello from sluice-testapp\n");
}

// Every Service shape below makes Knative's controller write a different queue-proxy
// env; Sluice's queue-proxy must start from each exactly as the pod spec gives it.
TEST(SluiceQueueProxy, RunsFromThePodSpecKnativeGeneratesBehindKnativesActivator) {
  Cluster c({.activator = "knative", .queue_proxy = "sluice"});
  ASSERT_EQ(c.error(), "");
  json cc1 = hello_service("one", 1);
  json http_probe = hello_service("probe", 0);
  http_probe["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
      {"httpGet", {{"path", "/healthz"}, {"port", 0}}}, {"periodSeconds", 1}};
  json short_timeout = hello_service("short", 0);
  short_timeout["spec"]["template"]["spec"]["timeoutSeconds"] = 2;
  json h2c = hello_service("h2c", 0);
  h2c["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] = "h2c";
  for (const json* s : {&cc1, &http_probe, &short_timeout, &h2c})
    ASSERT_EQ(c.create(kServices, *s), "");
  for (const char* rev : {"one-00001", "probe-00001", "short-00001", "h2c-00001"})
    ASSERT_TRUE(c.wait_condition(revision_path("default", rev), "Ready", 180s))
        << rev << "\n"
        << c.logs(std::string(rev).substr(0, std::string(rev).find('-')))
        << c.logs("controller", 1500);

  // What Sluice's queue-proxy ran with is what the Deployment says.
  json dep = c.get("/apis/apps/v1/namespaces/default/deployments/one-00001-deployment");
  ASSERT_TRUE(dep.is_object());
  const json& qp = dep["spec"]["template"]["spec"]["containers"][1];
  EXPECT_EQ(qp["name"], "queue-proxy");
  EXPECT_EQ(qp["image"], "dev.local/sluice:0.1.0") << "deploy/base/config-deployment.yaml";
  bool saw_cc = false;
  for (const auto& e : qp["env"])
    if (e["name"] == "CONTAINER_CONCURRENCY")
      saw_cc = e.value("value", "") == "1";
  EXPECT_TRUE(saw_cc) << qp.dump();

  for (const char* rev : {"one-00001", "probe-00001", "short-00001"}) {
    auto r = via_activator(c, rev);
    EXPECT_EQ(r.status, 200) << rev << ": " << r.head << r.body << c.logs("activator", 1500);
    EXPECT_EQ(r.body, "hello from sluice-testapp\n");
  }
  // timeoutSeconds reaches the queue-proxy: a slower answer is cut there, with 504.
  auto slow = via_activator(c, "short-00001", "?delay=6000");
  EXPECT_EQ(slow.status, 504) << slow.head << slow.body;
}

// Sluice's Kubernetes client against the real apiserver: a watch sees every change,
// and picks up where it was after the apiserver restarts.
TEST(KubeClient, ReflectorFollowsChangesAcrossAnApiserverRestart) {
  Cluster c({});
  ASSERT_EQ(c.error(), "");
  boost::asio::io_context wio;
  kube::Client wc(wio.get_executor(), c.config());
  core::SteadyTimeSource time;
  core::FastRandom random(1);
  std::mutex mu;
  std::map<std::string, std::string> seen;  // name -> data.v, "" when removed
  int synced = 0;
  kube::Reflector reflector(
      wc, time, random,
      {.path = "/api/v1/namespaces/default/configmaps",
       .label_selector = "test=watch",
       .field_selector = ""},
      {.upsert =
           [&](const json& o) {
             std::lock_guard l(mu);
             seen[o["metadata"]["name"]] = o["data"].value("v", "");
           },
       .remove =
           [&](const std::string&, const std::string& name) {
             std::lock_guard l(mu);
             seen[name] = "";
           },
       .synced =
           [&] {
             std::lock_guard l(mu);
             ++synced;
           }},
      kube::WatchPolicy{std::chrono::milliseconds(200), std::chrono::seconds(2)});
  boost::asio::co_spawn(wio, reflector.run(), boost::asio::detached);
  std::thread t([&] { wio.run(); });
  struct Join {
    kube::Reflector& r;
    boost::asio::io_context& io;
    std::thread& t;
    ~Join() {
      r.stop();
      io.stop();
      t.join();
    }
  } join{reflector, wio, t};
  auto value = [&](const std::string& name) {
    std::lock_guard l(mu);
    auto it = seen.find(name);
    return it == seen.end() ? std::string("<none>") : it->second;
  };
  auto cm = [](const std::string& name, const std::string& v, const std::string& label) {
    return json{{"apiVersion", "v1"},
                {"kind", "ConfigMap"},
                {"metadata", {{"name", name}, {"labels", {{"test", label}}}}},
                {"data", {{"v", v}}}};
  };
  constexpr const char* kCms = "/api/v1/namespaces/default/configmaps";
  ASSERT_EQ(c.create(kCms, cm("a", "1", "watch")), "");
  ASSERT_EQ(c.create(kCms, cm("other", "1", "not-this")), "");
  EXPECT_TRUE(e2e::eventually([&] { return value("a") == "1"; }, 30s));
  ASSERT_TRUE(c.call("PATCH", std::string(kCms) + "/a", json{{"data", {{"v", "2"}}}},
                     "application/merge-patch+json")
                  .ok());
  EXPECT_TRUE(e2e::eventually([&] { return value("a") == "2"; }, 30s));

  c.restart_apiserver();
  // Wait until the apiserver is back (the restart is asynchronous), then change things.
  EXPECT_TRUE(e2e::eventually([&] { return c.call("GET", "/readyz").status == 0; }, 30s))
      << "never went down";
  EXPECT_TRUE(e2e::eventually([&] { return c.call("GET", "/readyz").ok(); }, 120s))
      << "never came back";
  ASSERT_EQ(c.create(kCms, cm("b", "1", "watch")), "");
  ASSERT_TRUE(c.call("DELETE", std::string(kCms) + "/a").ok());
  EXPECT_TRUE(e2e::eventually([&] { return value("b") == "1" && value("a").empty(); }, 60s))
      << "a=" << value("a") << " b=" << value("b");
  EXPECT_EQ(value("other"), "<none>");  // the label selector held
  std::lock_guard l(mu);
  EXPECT_GE(synced, 1);
}

}  // namespace
}  // namespace cluster
