// tests/cluster/cluster_fixture.h — a real Kubernetes + Knative control plane per test.
//
// Starts tests/cluster/cluster.py (etcd, kube-apiserver, kube-controller-manager,
// Knative's controller and autoscaler, the activator Deployment and a stand-in kubelet)
// in this process's network namespace, and talks to the apiserver with Sluice's own
// Kubernetes client. The test binary re-executes itself under `unshare -n` (see
// cluster_main.cc), so every 10.244.x.y address it uses exists only in a namespace it
// made; the harness refuses to start anywhere else.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "kube/client.h"
#include "kube/reflector.h"

namespace cluster {

namespace kube = sluice::kube;
namespace core = sluice::core;

using nlohmann::json;
using namespace std::chrono_literals;

struct Options {
  std::string activator = "knative";    // whose image the activator Deployment runs
  std::string queue_proxy = "knative";  // whose image config-deployment names
  std::string autoscaler = "knative";   // whose autoscaler runs (at 10.244.0.2)
  int autoscalers = 1;                  // Sluice's: replicas (10.244.0.2, .11, .12, ...)
  int activators = 1;
  json config = json::object();  // ConfigMap name -> data, replacing Knative's defaults
};

class Cluster {
 public:
  explicit Cluster(Options options);
  ~Cluster();

  // Empty when the cluster came up; else why not (with the harness's output).
  const std::string& error() const { return error_; }

  kube::Response call(std::string_view method,
                      const std::string& path,
                      const json& body = nullptr,
                      std::string_view content_type = "application/json");
  // GET, parsed; null when it failed.
  json get(const std::string& path);
  // POST to the collection of `object` (Knative Service, ConfigMap, ...); "" or why not.
  std::string create(const std::string& collection, const json& object);

  // Polls until the condition `type` of `path`'s status is True.
  bool wait_condition(const std::string& path, const std::string& type, e2e::Millis timeout);
  // The pod IPs of ready pods matching `label_selector` in `ns`.
  std::vector<std::string> ready_pod_ips(const std::string& ns, const std::string& label_selector);

  // curl from inside the cluster's namespace: `url` may name a pod address.
  e2e::HttpResponse curl(const std::string& url, const std::string& extra = "");

  void restart_apiserver();
  // The tail of every log the harness wrote whose name contains `part`, for failures.
  std::string logs(const std::string& part, size_t tail_bytes = 3000) const;
  const std::string& dir() const { return dir_; }
  kube::Client& client() { return *client_; }
  const kube::ClusterConfig& config() const { return config_; }
  boost::asio::io_context& io() { return io_; }

 private:
  std::string dir_;
  std::optional<e2e::Process> harness_;
  std::string error_;
  boost::asio::io_context io_;
  kube::ClusterConfig config_;
  std::unique_ptr<kube::Client> client_;
};

// A Knative Service of the test app, with what a webhook would have defaulted
// (no webhook runs in the harness): KPA class, concurrency metric, probe, timeout.
json hello_service(const std::string& name,
                   int container_concurrency,
                   json annotations = json::object());

// A bounded load from inside the cluster's namespace: `concurrency` loops, each sending
// `request` (a whole HTTP/1.1 request) to the targets in turn, until stop() or
// `max_requests`; every answer's status is counted, every failure described.
class Load {
 public:
  Load(std::vector<std::string> targets, std::string request, int concurrency, int max_requests);
  ~Load();
  void stop();  // waits for the requests in flight
  int sent() const { return sent_.load(); }
  // After stop():
  std::map<int, int> statuses;  // 0: no answer (transport failure or timeout)
  std::vector<std::string> failures;
  int failed() const;

 private:
  boost::asio::io_context io_;
  std::atomic<bool> stop_{false};
  std::atomic<int> sent_{0};
  int max_requests_;
  std::mutex mu_;
  std::thread thread_;
};

// A request routed by Knative's headers, as the ingress sends it to the activator.
std::string revision_request(const std::string& revision, const std::string& target = "/");

// A pod's process ids by container, and its IP, from the stand-in kubelet.
struct PodProcesses {
  std::string ip;
  std::map<std::string, int> pids;
};
std::optional<PodProcesses> pod_processes(const Cluster& c,
                                          const std::string& ns,
                                          const std::string& pod);

// The autoscaler replicas the harness runs: pod name -> pid.
std::map<std::string, int> autoscaler_pids(const Cluster& c);

// status.conditions[type] is True.
bool condition_true(const json& object, const std::string& type);

// The revision's Ready condition, through the Knative activator or Sluice's.
std::string revision_path(const std::string& ns, const std::string& name);

}  // namespace cluster
