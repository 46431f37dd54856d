// runtime/kube_autoscaler.h
//
// `sluice autoscaler` in a cluster: Knative 1.18's autoscaler Deployment, replaced. The
// scaling itself is autoscaler::ScalingLoop (the one `sluice run` uses); this is its
// Kubernetes Scaler and what feeds it:
//
//   activators ──ws :8080 WireStatMessages──▶ StatServer ─┐
//   Pods (label serving.knative.dev/revision) ─ready IPs:9090─▶ ScalingLoop ──scale()──▶
//   PodAutoscalers (class kpa) ─annotations + config-autoscaler─▶ │     PATCH Deployment
//                                                                 │     /spec/replicas,
//                                 ServerlessServices, Deployments ┘     PA status, SKS
//
// Only the holder of the Lease `lease_name` (SYSTEM_NAMESPACE) writes; a standby runs
// the same loop on the same stats (so a takeover starts with warm windows) and writes
// nothing. The leader publishes its address on the lease (annotation
// sluice.dev/leader-address); a standby relays every frame its activators send to it
// there (ws path /forwarded), so the leader hears every activator wherever the
// autoscaler Service sent it. A PodAutoscaler whose annotations are invalid gets the message
// `sluice run` would print on its status (Active/Ready False, reason InvalidAnnotation) and is not
// scaled.
//
// Threading: one io_context thread (run()); everything here lives on it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "autoscaler/scaling_loop.h"
#include "core/random.h"
#include "kube/client.h"
#include "kube/reflector.h"
#include "stats/stat.pb.h"

namespace sluice::knative {
class StatServer;
class LeaseElector;
class AutoscalerLink;
}  // namespace sluice::knative

namespace sluice::runtime {

struct KubeAutoscalerOptions {
  std::string system_namespace = "knative-serving";
  std::string identity;  // POD_NAME
  // POD_IP: published in the lease so that standbys forward their activators' stats to
  // the leader (the autoscaler Service may send an activator to any replica).
  std::string pod_ip;
  std::string lease_name = "sluice-autoscaler";
  core::Duration lease_duration = std::chrono::seconds(10);
  core::Duration lease_retry = std::chrono::seconds(2);
  uint16_t port = 8080;          // stats websocket and probes
  uint16_t metrics_port = 9090;  // Prometheus
  std::string bind = "::";
};

// What the KPA reads of a ServerlessService.
struct SksRecord {
  std::string mode;
  int32_t activators = 0;
  bool ready = false;         // its Ready condition is True
  std::string ready_message;  // that condition's message
  std::string service_name, private_service_name;
};

class KubeAutoscaler final : public autoscaler::Scaler {
 public:
  KubeAutoscaler(boost::asio::io_context& io,
                 kube::ClusterConfig config,
                 core::TimeSource& time,
                 KubeAutoscalerOptions options);
  ~KubeAutoscaler();

  // Binds the ports and starts the watches, the lease and the loop; an error names what
  // failed (e.g. "port 8080: Address already in use").
  std::optional<std::string> start();
  // Stops scaling and gives the lease up (a standby takes over at once); `done` after.
  void stop(std::function<void()> done);

  int32_t scale(const std::string& revision,
                const autoscaler::ScaleDecision& d,
                bool poke) override;

 private:
  struct Pa;
  void on_frame(const stats::wire::WireStatMessages& msgs, bool forwarded);
  void follow_leader(const std::string& holder, const std::string& address);
  void upsert_pa(const nlohmann::json& pa);
  void respec(Pa& pa);
  void refresh_pods(const std::string& revision);
  // A watched object that concerns `revision` changed: its next decision is reconciled
  // even if the decision itself did not change.
  void touch(const std::string& revision);
  void forget_pod(const std::string& revision, const std::string& pod);
  int32_t ready_pods(const std::string& revision) const;
  // A decision's inputs: the revision's watched-change count, want, held pods, whether
  // burst capacity is short. Equal to the last fully written one: nothing to write.
  using Fingerprint = std::tuple<uint64_t, int32_t, int32_t, bool>;
  Fingerprint fingerprint(const std::string& revision,
                          const Pa& pa,
                          const autoscaler::ScaleDecision& d) const;
  http::Task<void> trim_loop();
  http::Task<void> reconcile(std::string revision);
  http::Task<void> write_invalid(std::string revision);
  http::Task<void> lease_loop();
  http::Task<void> release_lease(std::function<void()> done);
  std::string metrics_text() const;
  std::string now_text() const;

  boost::asio::io_context& io_;
  core::TimeSource& time_;
  KubeAutoscalerOptions opts_;
  kube::Client client_;
  core::FastRandom random_;
  autoscaler::HttpStatScraper scraper_;
  autoscaler::ScalingLoop loop_;
  std::unique_ptr<knative::StatServer> stats_, metrics_;
  std::unique_ptr<knative::LeaseElector> elector_;
  std::vector<std::unique_ptr<kube::Reflector>> reflectors_;
  std::map<std::string, std::unique_ptr<Pa>> pas_;  // "ns/name"
  struct Pod {
    std::string revision;  // "ns/name"
    std::string ip;
    bool ready = false;
  };
  std::map<std::string, Pod> pods_;                             // "ns/pod"
  std::map<std::string, std::set<std::string>> revision_pods_;  // revision -> its pods' keys
  std::map<std::string, SksRecord> sks_;                        // "ns/name"
  std::map<std::string, int32_t> deployments_;                  // "ns/name" -> spec.replicas
  std::map<std::string, std::string> config_;                   // config-autoscaler data
  std::string config_version_;
  bool leader_ = false;
  bool stopping_ = false;
  std::string lease_version_;   // resourceVersion of the lease as we last wrote it
  std::string leader_address_;  // where a standby forwards ("ip:port"); "" when leading
  std::shared_ptr<knative::AutoscalerLink> forward_;
};

}  // namespace sluice::runtime
