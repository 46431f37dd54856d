#include "knative/kube_discovery.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include "config/endpoints_file.h"

namespace sluice::knative {

using nlohmann::json;

namespace {

constexpr const char* kRevisionLabel = "serving.knative.dev/revision";
constexpr const char* kServiceLabel = "serving.knative.dev/service";

const json* field(const json& j, std::initializer_list<const char*> path) {
  const json* at = &j;
  for (const char* p : path) {
    if (!at->is_object())
      return nullptr;
    auto it = at->find(p);
    if (it == at->end())
      return nullptr;
    at = &*it;
  }
  return at;
}

std::string text(const json& j, std::initializer_list<const char*> path) {
  const json* f = field(j, path);
  return f != nullptr && f->is_string() ? f->get<std::string>() : std::string();
}

// Every "ip:port" of the address lists named, over all subsets, sorted and unique;
// `port_of(subset)` gives the subset's port (0: skip the subset).
template <typename PortOf>
std::vector<std::string> collect(const json& endpoints,
                                 std::initializer_list<const char*> lists,
                                 PortOf port_of) {
  std::vector<std::string> out;
  const json* subsets = field(endpoints, {"subsets"});
  if (subsets == nullptr || !subsets->is_array())
    return out;
  for (const json& subset : *subsets) {
    const int port = port_of(subset);
    if (port <= 0 || port > 65535)
      continue;
    for (const char* list : lists) {
      const json* addrs = field(subset, {list});
      if (addrs == nullptr || !addrs->is_array())
        continue;
      for (const json& a : *addrs)
        if (std::string ip = text(a, {"ip"}); !ip.empty())
          out.push_back(config::join_host_port(ip, static_cast<uint16_t>(port)));
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

std::vector<std::string> KubeDiscovery::peer_addresses(const json& endpoints, uint16_t port) {
  return collect(endpoints, {"addresses"}, [port](const json&) { return int{port}; });
}

KubeDiscovery::KubeDiscovery(kube::ClusterConfig config, std::string self_ip, uint16_t port)
    : config_(std::move(config)), self_ip_(std::move(self_ip)), port_(port) {}

KubeDiscovery::~KubeDiscovery() = default;

std::optional<KubeDiscovery::RevisionInfo> KubeDiscovery::revision_info(const json& revision) {
  RevisionInfo info;
  info.service = text(revision, {"metadata", "labels", kServiceLabel});
  if (const json* cc = field(revision, {"spec", "containerConcurrency"});
      cc != nullptr && !cc->is_null()) {
    if (!cc->is_number_integer() || cc->get<int64_t>() < 0 || cc->get<int64_t>() > 1'000'000)
      return std::nullopt;
    info.container_concurrency = static_cast<uint32_t>(cc->get<int64_t>());
  }
  if (const json* t = field(revision, {"spec", "timeoutSeconds"}); t != nullptr && !t->is_null()) {
    if (!t->is_number_integer() || t->get<int64_t>() <= 0 || t->get<int64_t>() > 24 * 3600)
      return std::nullopt;
    info.timeout = std::chrono::seconds(t->get<int64_t>());
  }
  if (const json* c = field(revision, {"spec", "containers"}); c != nullptr && c->is_array()) {
    // Knative's GetProtocol: the first port of the container that has ports.
    for (const auto& container : *c) {
      const auto ports = container.find("ports");
      if (ports == container.end() || !ports->is_array() || ports->empty())
        continue;
      const auto name = (*ports)[0].find("name");
      info.h2c = name != (*ports)[0].end() && name->is_string() && *name == "h2c";
      break;
    }
  }
  return info;
}

std::vector<std::string> KubeDiscovery::addresses(const json& endpoints,
                                                  const std::vector<std::string>& port_names,
                                                  bool include_not_ready) {
  auto named_port = [&](const json& subset) {
    const json* ports = field(subset, {"ports"});
    if (ports == nullptr || !ports->is_array())
      return 0;
    for (const std::string& want : port_names)  // the first name that is there
      for (const json& p : *ports)
        if (text(p, {"name"}) == want && p.contains("port") && p["port"].is_number_integer())
          return p["port"].get<int>();
    return 0;
  };
  if (include_not_ready)
    return collect(endpoints, {"addresses", "notReadyAddresses"}, named_port);
  return collect(endpoints, {"addresses"}, named_port);
}

bool KubeDiscovery::start(boost::asio::any_io_executor control,
                          core::TimeSource& time,
                          Publish publish) {
  publish_ = std::move(publish);
  control_ = control;
  client_ = std::make_unique<kube::Client>(control, config_);
  random_ = std::make_unique<core::FastRandom>(core::os_seed());
  const std::string self = config::join_host_port(self_ip_, port_);

  auto on_endpoints = [this, self](bool is_private) {
    return kube::ReflectorHandler{
        .upsert =
            [this, is_private, self](const json& eps) {
              const std::string ns = text(eps, {"metadata", "namespace"});
              const std::string rev = text(eps, {"metadata", "labels", kRevisionLabel});
              if (rev.empty())
                return;  // someone else's Endpoints with the same label
              const Key key{ns, rev};
              (is_private ? private_of_ : public_of_)[{ns, text(eps, {"metadata", "name"})}] = key;
              if (is_private) {
                pods_[key] = addresses(eps, {"http", "http2"}, /*include_not_ready=*/true);
              } else {
                // The activators in the revision's path, by address: they serve on our
                // port (the Endpoints list the Service's target ports).
                std::vector<std::string> ips = peer_addresses(eps, port_);
                if (std::find(ips.begin(), ips.end(), self) == ips.end())
                  return;  // not in this revision's path (Serve mode): keep what we had
                peers_[key] = std::move(ips);
              }
              publish_snapshot();
            },
        .remove =
            [this, is_private](const std::string& ns, const std::string& name) {
              auto& of = is_private ? private_of_ : public_of_;
              auto it = of.find({ns, name});
              if (it == of.end())
                return;
              (is_private ? pods_ : peers_).erase(it->second);
              of.erase(it);
              publish_snapshot();
            },
        .synced = [this] { publish_snapshot(); }};
  };
  kube::ReflectorHandler on_revision{
      .upsert =
          [this](const json& r) {
            const Key key{text(r, {"metadata", "namespace"}), text(r, {"metadata", "name"})};
            auto info = revision_info(r);
            if (!info) {
              spdlog::warn(
                  "revision {}/{}: containerConcurrency or timeoutSeconds out of range; ignored",
                  key.first, key.second);
              return;
            }
            revisions_[key] = std::move(*info);
            publish_snapshot();
          },
      .remove =
          [this](const std::string& ns, const std::string& name) {
            if (revisions_.erase({ns, name}) > 0)
              publish_snapshot();
          },
      .synced = [this] { publish_snapshot(); }};

  const std::string uid_label = "serving.knative.dev/revisionUID";
  const std::string type_label = "networking.internal.knative.dev/serviceType";
  reflectors_.push_back(std::make_unique<kube::Reflector>(
      *client_, time, *random_,
      kube::Collection{"/api/v1/endpoints", uid_label + "," + type_label + "=Private", ""},
      on_endpoints(true)));
  reflectors_.push_back(std::make_unique<kube::Reflector>(
      *client_, time, *random_,
      kube::Collection{"/api/v1/endpoints", uid_label + "," + type_label + "=Public", ""},
      on_endpoints(false)));
  reflectors_.push_back(std::make_unique<kube::Reflector>(
      *client_, time, *random_, kube::Collection{"/apis/serving.knative.dev/v1/revisions", "", ""},
      on_revision));
  for (auto& r : reflectors_) boost::asio::co_spawn(control, r->run(), boost::asio::detached);
  spdlog::info("discovery: watching Knative's Endpoints and Revisions at {} as {}",
               config_.server(), self);
  return true;
}

bool KubeDiscovery::ready(std::string& why) const {
  for (const auto& r : reflectors_)
    if (!r->synced()) {
      why = "Kubernetes discovery has not listed Endpoints and Revisions yet";
      return false;
    }
  return true;
}

void KubeDiscovery::publish_snapshot() {
  for (const auto& r : reflectors_)
    if (!r->synced())
      return;  // one snapshot once all three have listed, then one per burst of changes
  if (publish_pending_)
    return;
  publish_pending_ = true;
  boost::asio::post(control_, [this] {
    publish_pending_ = false;
    build_and_publish();
  });
}

void KubeDiscovery::build_and_publish() {
  config::EndpointsFile snapshot;
  for (const auto& [key, info] : revisions_) {
    config::RevisionEndpoints r;
    r.namespace_name = key.first;
    r.name = key.second;
    r.service = info.service;
    r.container_concurrency = info.container_concurrency;
    r.timeout = info.timeout;
    r.h2c = info.h2c;
    if (auto it = pods_.find(key); it != pods_.end())
      r.endpoints = it->second;
    if (auto it = peers_.find(key); it != peers_.end())
      r.activators = it->second;
    else
      r.activators = std::vector<std::string>{};  // not in a path we know: every pod, full CC
    snapshot.revisions.push_back(std::move(r));
  }
  publish_(std::move(snapshot));
}

}  // namespace sluice::knative
