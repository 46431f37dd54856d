// knative/kube_discovery.h
//
// The activator's discovery in a Knative cluster, as Knative 1.18's activator does it
// (pkg/activator/net/revision_backends.go, throttler.go), from three watches over all
// namespaces:
//   - private Endpoints (labels serving.knative.dev/revisionUID and
//     networking.internal.knative.dev/serviceType=Private): a revision's pods, the port
//     named "http" (or "http2"), ready and not-ready addresses alike: the activator's
//     own health checks decide when a pod takes traffic, so a pod serves as soon as its
//     queue-proxy says so, not a kubelet probe period later;
//   - public Endpoints (serviceType=Public): the activators the ServerlessService put in
//     the revision's path, i.e. this revision's peers for subsetting. Ignored while this
//     activator is not among them (Knative does the same: it is not in the path);
//   - Revisions: containerConcurrency, timeoutSeconds, the service label.
// A revision appears in the snapshot once its Revision is known; every change publishes
// a new snapshot.
//
// Threading: the activator's control executor (the reflectors and publish run there).
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "activator/discovery.h"
#include "core/random.h"
#include "kube/client.h"
#include "kube/config.h"
#include "kube/reflector.h"

namespace sluice::knative {

class KubeDiscovery final : public activator::Discovery {
 public:
  // `self`: this activator's "POD_IP:8012", as it appears among the peers.
  KubeDiscovery(kube::ClusterConfig config, std::string self_ip, uint16_t port);
  ~KubeDiscovery() override;

  bool start(boost::asio::any_io_executor control,
             core::TimeSource& time,
             Publish publish) override;
  bool ready(std::string& why) const override;

  // Pure pieces, for tests.
  struct RevisionInfo {
    std::string service;
    uint32_t container_concurrency = 0;
    std::chrono::seconds timeout{300};
    // The first container port is named h2c (Knative's rule, revision_helpers.go): the
    // queue-proxy then serves 8013 and the revision speaks HTTP/2 end to end.
    bool h2c = false;
  };
  static std::optional<RevisionInfo> revision_info(const nlohmann::json& revision);
  // The addresses ("ip:port") of the port named `port_name` (ready and, if asked, not ready).
  static std::vector<std::string> addresses(const nlohmann::json& endpoints,
                                            const std::vector<std::string>& port_names,
                                            bool include_not_ready);
  // The ready addresses of public Endpoints as "ip:port" with the activators' `port`.
  static std::vector<std::string> peer_addresses(const nlohmann::json& endpoints, uint16_t port);

 private:
  using Key = std::pair<std::string, std::string>;  // namespace, revision name
  void publish_snapshot();  // coalesces a burst of changes into one snapshot
  void build_and_publish();

  kube::ClusterConfig config_;
  std::string self_ip_;
  uint16_t port_;
  Publish publish_;
  boost::asio::any_io_executor control_;
  bool publish_pending_ = false;
  std::unique_ptr<kube::Client> client_;
  std::unique_ptr<core::FastRandom> random_;
  std::vector<std::unique_ptr<kube::Reflector>> reflectors_;
  std::map<Key, RevisionInfo> revisions_;
  std::map<Key, std::vector<std::string>> pods_;   // by the Endpoints' revision label
  std::map<Key, std::vector<std::string>> peers_;  // "ip:port" of the activators in path
  std::map<Key, Key> private_of_;                  // (ns, Endpoints name) -> revision
  std::map<Key, Key> public_of_;
};

}  // namespace sluice::knative
