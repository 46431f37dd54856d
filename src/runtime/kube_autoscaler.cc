#include "runtime/kube_autoscaler.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <malloc.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>

#include "config/endpoints_file.h"
#include "knative/autoscaler_link.h"
#include "knative/kpa.h"
#include "knative/stat_server.h"
#include "service/service_file.h"

namespace sluice::runtime {

namespace asio = boost::asio;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPaPath = "/apis/autoscaling.internal.knative.dev/v1alpha1";
constexpr const char* kSksPath = "/apis/networking.internal.knative.dev/v1alpha1";
constexpr const char* kRevisionLabel = "serving.knative.dev/revision";
constexpr const char* kLeaderAddress = "sluice.dev/leader-address";
constexpr std::string_view kMergePatch = "application/merge-patch+json";
constexpr std::string_view kJsonPatch = "application/json-patch+json";

std::string pa_status_url(const std::string& ns, const std::string& name) {
  return std::string(kPaPath) + "/namespaces/" + ns + "/podautoscalers/" + name + "/status";
}

// As Knative's applyScale: a JSON patch on the Deployment itself, not on /scale.
std::string replicas_patch(int32_t replicas) {
  return json::array({{{"op", "replace"}, {"path", "/spec/replicas"}, {"value", replicas}}}).dump();
}

std::string key_of(const json& obj) {
  const json& m = obj["metadata"];
  return m.value("namespace", "") + "/" + m.value("name", "");
}

std::string str(const json& obj, std::initializer_list<const char*> path) {
  const json* at = &obj;
  for (const char* p : path) {
    if (!at->is_object() || !at->contains(p))
      return {};
    at = &(*at)[p];
  }
  return at->is_string() ? at->get<std::string>() : std::string();
}

std::map<std::string, std::string> string_map(const json& j) {
  std::map<std::string, std::string> out;
  if (j.is_object())
    for (const auto& [k, v] : j.items())
      if (v.is_string())
        out[k] = v.get<std::string>();
  return out;
}

}  // namespace

// What the KPA reads and writes of a PodAutoscaler, typed: a thousand revisions are a
// thousand of these, and as parsed JSON each weighed about ten times as much.
struct KubeAutoscaler::Pa {
  std::string ns, name, uid;
  int64_t generation = 0;
  uint32_t cc = 0;  // spec.containerConcurrency
  std::string target, target_api_version, target_kind, protocol;
  std::map<std::string, std::string> labels, annotations;
  std::string status;  // serialized; parsed only to reconcile

  std::string spec_key;  // what the ScalingSpec was made from
  std::optional<std::string> invalid;
  autoscaler::ScalingSpec spec;
  int32_t initial_scale = 1;
  autoscaler::ScaleDecision pending;
  bool in_flight = false;
  bool dirty = false;
  bool invalid_written = false;
  // Bumped by every watched change that concerns the revision. A decision whose inputs
  // (this, want, held, burst sign) match the last fully written one needs no requests.
  uint64_t inputs = 0;
  std::optional<Fingerprint> reconciled;

  void read(const json& o) {
    const json& m = o["metadata"];
    ns = m.value("namespace", "");
    name = m.value("name", "");
    uid = m.value("uid", "");
    generation = m.value("generation", int64_t{0});
    labels = string_map(m.value("labels", json::object()));
    annotations = string_map(m.value("annotations", json::object()));
    annotations.erase("kubectl.kubernetes.io/last-applied-configuration");
    const json spec = o.value("spec", json::object());
    cc = spec.value("containerConcurrency", 0u);
    protocol = spec.value("protocolType", "http1");
    const json ref = spec.value("scaleTargetRef", json::object());
    target = ref.value("name", "");
    target_api_version = ref.value("apiVersion", "");
    target_kind = ref.value("kind", "");
    status = o.value("status", json::object()).dump();
  }
  json status_json() const {
    json j = json::parse(status, nullptr, false);
    return j.is_object() ? j : json::object();
  }
  // As much of the object as MakeSKS reads.
  json object() const {
    return {{"metadata",
             {{"name", name},
              {"namespace", ns},
              {"uid", uid},
              {"labels", labels},
              {"annotations", annotations}}},
            {"spec",
             {{"scaleTargetRef",
               {{"apiVersion", target_api_version}, {"kind", target_kind}, {"name", target}}},
              {"protocolType", protocol}}}};
  }
};

namespace {

SksRecord sks_record(const json& sks) {
  SksRecord out;
  const json spec = sks.value("spec", json::object());
  out.mode = spec.value("mode", "");
  out.activators = spec.value("numActivators", 0);
  const json st = sks.value("status", json::object());
  out.service_name = st.value("serviceName", "");
  out.private_service_name = st.value("privateServiceName", "");
  for (const auto& c : st.value("conditions", json::array()))
    if (c.is_object() && c.value("type", "") == "Ready") {
      out.ready = c.value("status", "") == "True";
      out.ready_message = c.value("message", "");
    }
  return out;
}

}  // namespace

KubeAutoscaler::KubeAutoscaler(asio::io_context& io,
                               kube::ClusterConfig config,
                               core::TimeSource& time,
                               KubeAutoscalerOptions options)
    : io_(io),
      time_(time),
      opts_(std::move(options)),
      client_(io.get_executor(), std::move(config)),
      random_(core::os_seed()),
      scraper_(io.get_executor()),
      loop_(time_, io.get_executor(), *this, scraper_, random_),
      elector_(std::make_unique<knative::LeaseElector>(opts_.identity, opts_.lease_duration)) {}

KubeAutoscaler::~KubeAutoscaler() {
  for (auto& r : reflectors_) r->stop();
}

std::optional<std::string> KubeAutoscaler::start() {
  boost::system::error_code ec;
  const auto bind = asio::ip::make_address(opts_.bind, ec);
  if (ec)
    return "bind address " + opts_.bind + ": " + ec.message();
  stats_ = std::make_unique<knative::StatServer>(
      io_.get_executor(),
      [this](const stats::wire::WireStatMessages& m, bool forwarded) { on_frame(m, forwarded); });
  if (auto e = stats_->listen({bind, opts_.port}))
    return fmt::format("stats websocket port {}: {}", opts_.port, e.message());
  metrics_ = std::make_unique<knative::StatServer>(io_.get_executor(), nullptr);
  metrics_->set_get_handler([this] { return metrics_text(); });
  if (auto e = metrics_->listen({bind, opts_.metrics_port}))
    return fmt::format("metrics port {}: {}", opts_.metrics_port, e.message());

  auto reflect = [&](kube::Collection c, kube::ReflectorHandler h) {
    reflectors_.push_back(
        std::make_unique<kube::Reflector>(client_, time_, random_, std::move(c), std::move(h)));
  };
  reflect({std::string(kPaPath) + "/podautoscalers", "", ""},
          {[this](const json& pa) { upsert_pa(pa); },
           [this](const std::string& ns, const std::string& name) {
             const std::string key = ns + "/" + name;
             pas_.erase(key);
             loop_.remove(key);
           },
           nullptr});
  reflect({"/api/v1/pods", kRevisionLabel, ""},
          {[this](const json& pod) {
             const json& m = pod["metadata"];
             const std::string rev =
                 m.value("namespace", "") + "/" + str(m, {"labels", kRevisionLabel});
             Pod p{rev, str(pod, {"status", "podIP"}), false};
             if (!m.contains("deletionTimestamp") && pod.contains("status") &&
                 pod["status"].contains("conditions"))
               for (const auto& c : pod["status"]["conditions"])
                 if (c.value("type", "") == "Ready" && c.value("status", "") == "True")
                   p.ready = !p.ip.empty();
             const std::string key = key_of(pod);
             auto old = pods_.find(key);
             const std::string old_rev = old == pods_.end() ? "" : old->second.revision;
             if (old != pods_.end() && old->second.ready == p.ready && old->second.ip == p.ip &&
                 old_rev == rev)
               return;  // a status change that does not move capacity
             pods_[key] = p;
             revision_pods_[rev].insert(key);
             if (!old_rev.empty() && old_rev != rev) {
               forget_pod(old_rev, key);
               refresh_pods(old_rev);
             }
             refresh_pods(rev);
           },
           [this](const std::string& ns, const std::string& name) {
             auto it = pods_.find(ns + "/" + name);
             if (it == pods_.end())
               return;
             const std::string rev = it->second.revision;
             forget_pod(rev, it->first);
             pods_.erase(it);
             refresh_pods(rev);
           },
           nullptr});
  reflect({std::string(kSksPath) + "/serverlessservices", "", ""},
          {[this](const json& s) {
             const std::string key = key_of(s);
             sks_[key] = sks_record(s);
             touch(key);
           },
           [this](const std::string& ns, const std::string& name) {
             sks_.erase(ns + "/" + name);
             touch(ns + "/" + name);
           },
           nullptr});
  reflect({"/apis/apps/v1/deployments", kRevisionLabel, ""},
          {[this](const json& d) {
             deployments_[key_of(d)] =
                 d.contains("spec") ? d["spec"].value("replicas", 1) : 1;  // Kubernetes' default
             touch(str(d, {"metadata", "namespace"}) + "/" +
                   str(d, {"metadata", "labels", kRevisionLabel}));
           },
           [this](const std::string& ns, const std::string& name) {
             deployments_.erase(ns + "/" + name);
             for (auto& [key, pa] : pas_)
               if (pa->ns == ns && pa->target == name)
                 touch(key);
           },
           nullptr});
  reflect({"/api/v1/namespaces/" + opts_.system_namespace + "/configmaps", "",
           "metadata.name=config-autoscaler"},
          {[this](const json& cm) {
             config_ = string_map(cm.value("data", json::object()));
             config_version_ = str(cm, {"metadata", "resourceVersion"});
             for (auto& [key, pa] : pas_) respec(*pa);
           },
           [this](const std::string&, const std::string&) {
             config_.clear();
             config_version_.clear();
             for (auto& [key, pa] : pas_) respec(*pa);
           },
           nullptr});
  for (auto& r : reflectors_) asio::co_spawn(io_, r->run(), asio::detached);
  asio::co_spawn(io_, lease_loop(), asio::detached);
  asio::co_spawn(io_, trim_loop(), asio::detached);
  loop_.start();
  spdlog::info("autoscaler {}: stats websocket on port {}, metrics on {}, lease {}/{}",
               opts_.identity, opts_.port, opts_.metrics_port, opts_.system_namespace,
               opts_.lease_name);
  return std::nullopt;
}

void KubeAutoscaler::stop(std::function<void()> done) {
  stopping_ = true;
  loop_.stop();
  for (auto& r : reflectors_) r->stop();
  if (forward_)
    std::exchange(forward_, nullptr)->stop();
  if (stats_)
    stats_->stop();
  if (metrics_)
    metrics_->stop();
  asio::co_spawn(io_, release_lease(std::move(done)), asio::detached);
}

// ---------------------------------------------------------------------------------------
// Inputs

void KubeAutoscaler::on_frame(const stats::wire::WireStatMessages& msgs, bool forwarded) {
  if (!leader_ && !forwarded && forward_)
    forward_->send(msgs.SerializeAsString());
  for (const auto& m : msgs.messages())
    loop_.stat(m.namespace_() + "/" + m.name(), m.stat().average_concurrent_requests(),
               m.stat().request_count());
  for (const auto& p : msgs.sluice_pods())
    loop_.set_healthy(p.namespace_() + "/" + p.name(), p.activator(),
                      std::vector<std::string>(p.healthy().begin(), p.healthy().end()),
                      std::vector<std::string>(p.quarantined().begin(), p.quarantined().end()));
}

void KubeAutoscaler::upsert_pa(const json& object) {
  const std::string cls = str(object, {"metadata", "annotations", "autoscaling.knative.dev/class"});
  const std::string key = key_of(object);
  if (!cls.empty() && cls != "kpa.autoscaling.knative.dev") {
    pas_.erase(key);  // the HPA's, or someone else's
    loop_.remove(key);
    return;
  }
  auto& slot = pas_[key];
  if (!slot)
    slot = std::make_unique<Pa>();
  slot->read(object);
  ++slot->inputs;
  respec(*slot);
}

void KubeAutoscaler::respec(Pa& pa) {
  const std::string key = pa.ns + "/" + pa.name;
  const auto& annotations = pa.annotations;
  const uint32_t cc = pa.cc;
  const std::string spec_key =
      json(annotations).dump() + "|" + std::to_string(cc) + "|" + config_version_;
  if (spec_key == pa.spec_key)
    return;
  pa.spec_key = spec_key;
  auto parsed = service::scaling_from_annotations(annotations, config_, cc);
  for (const auto& e : parsed.config_errors)
    spdlog::warn("config-autoscaler: {} (Knative's default used)", e);
  pa.initial_scale = parsed.initial_scale;
  ++pa.inputs;
  if (!parsed.errors.empty()) {
    std::string all;
    for (const auto& e : parsed.errors) all += (all.empty() ? "" : "; ") + e;
    if (pa.invalid != all)
      spdlog::error("PodAutoscaler {}: {}; not scaled until fixed", key, all);
    pa.invalid = all;
    pa.invalid_written = false;
    loop_.remove(key);
    if (leader_)
      asio::co_spawn(io_, write_invalid(key), asio::detached);
    return;
  }
  if (pa.invalid)
    spdlog::info("PodAutoscaler {}: annotations valid again", key);
  pa.invalid.reset();
  pa.spec = parsed.scaling;
  auto configuration = pa.labels.find("serving.knative.dev/configuration");
  loop_.add(key, configuration == pa.labels.end() ? "" : configuration->second, pa.spec);
  refresh_pods(key);
}

void KubeAutoscaler::forget_pod(const std::string& revision, const std::string& pod) {
  auto it = revision_pods_.find(revision);
  if (it == revision_pods_.end())
    return;
  it->second.erase(pod);
  if (it->second.empty())
    revision_pods_.erase(it);
}

int32_t KubeAutoscaler::ready_pods(const std::string& revision) const {
  int32_t n = 0;
  if (auto it = revision_pods_.find(revision); it != revision_pods_.end())
    for (const auto& key : it->second) n += pods_.at(key).ready;
  return n;
}

void KubeAutoscaler::touch(const std::string& revision) {
  if (auto it = pas_.find(revision); it != pas_.end())
    ++it->second->inputs;
}

void KubeAutoscaler::refresh_pods(const std::string& revision) {
  touch(revision);
  if (!loop_.has(revision))
    return;
  std::vector<std::string> targets;
  if (auto it = revision_pods_.find(revision); it != revision_pods_.end())
    for (const auto& key : it->second)
      if (const Pod& p = pods_.at(key); p.ready)
        targets.push_back(config::join_host_port(p.ip, 9090));
  loop_.set_pods(revision, std::move(targets));
}

KubeAutoscaler::Fingerprint KubeAutoscaler::fingerprint(const std::string& revision,
                                                        const Pa& pa,
                                                        const autoscaler::ScaleDecision& d) const {
  const int32_t want = d.has_data ? d.want : knative::kScaleUnknown;
  return {pa.inputs, want, want > 0 ? loop_.quarantined(revision) : 0,
          d.has_data && d.kpa.excess_burst_capacity < 0};
}

// ---------------------------------------------------------------------------------------
// Scaler

int32_t KubeAutoscaler::scale(const std::string& revision,
                              const autoscaler::ScaleDecision& d,
                              bool poke) {
  auto it = pas_.find(revision);
  const std::string target = it == pas_.end() ? "" : it->second->target;
  const std::string ns = revision.substr(0, revision.find('/'));
  auto dep = deployments_.find(ns + "/" + target);
  const int32_t current = dep == deployments_.end() ? 0 : dep->second;
  if (it == pas_.end() || !leader_ || stopping_)
    return current;
  Pa& pa = *it->second;
  pa.pending = d;
  if (poke)
    spdlog::info("{}: first request; scaling {} → {} at once", revision, current, d.want);
  if (pa.in_flight) {
    pa.dirty = true;
  } else if (pa.reconciled != fingerprint(revision, pa, d)) {
    pa.in_flight = true;
    asio::co_spawn(io_, reconcile(revision), asio::detached);
  }
  return d.has_data ? d.want : current;
}

http::Task<void> KubeAutoscaler::reconcile(std::string revision) {
  for (;;) {
    auto it = pas_.find(revision);
    if (it == pas_.end())
      co_return;
    Pa& pa = *it->second;
    pa.dirty = false;
    const autoscaler::ScaleDecision d = pa.pending;
    const Fingerprint fp = fingerprint(revision, pa, d);
    // Copies: the maps may change while a request below is in flight.
    const std::string ns = pa.ns, name = pa.name, target = pa.target;
    const int64_t generation = pa.generation;
    const json old_status = pa.status_json();
    auto sks_it = sks_.find(revision);
    const std::optional<SksRecord> sks_copy =
        sks_it == sks_.end() ? std::nullopt : std::optional<SksRecord>(sks_it->second);
    const SksRecord* sks = sks_copy ? &*sks_copy : nullptr;
    const int32_t min_scale = pa.spec.min_scale, initial_scale = pa.initial_scale;
    const bool sks_ready = sks != nullptr && sks->ready;
    const std::string sks_mode_now = sks == nullptr ? "" : sks->mode;
    const int32_t ready = ready_pods(revision);
    const json owner = sks == nullptr ? pa.object() : json();  // for a new SKS
    bool all_written = true;
    auto dep = deployments_.find(ns + "/" + target);
    const int32_t current = dep == deployments_.end() ? -1 : dep->second;

    int32_t want = d.has_data ? d.want : knative::kScaleUnknown;
    // Effective capacity: a pod the activators hold quarantined runs but serves nothing;
    // one more pod stands in for it while it lasts.
    const int32_t held = want > 0 ? loop_.quarantined(revision) : 0;
    const int32_t ebc = d.has_data ? d.kpa.excess_burst_capacity : -1;
    const bool inactive = knative::condition_is(old_status, "Active", "False");
    // To zero only once the activator is in the path (Knative probes it; the SKS in
    // Proxy mode and Ready is the same fact): until then hold what runs.
    bool apply = want >= 0;
    if (want == 0 && !(sks_mode_now == "Proxy" && sks_ready))
      apply = false;
    const std::string mode = want == 0 ? "Proxy" : knative::sks_mode(want, ebc, inactive);
    const int32_t activators = knative::num_activators(ready, pa.spec.decider.total_target,
                                                       pa.spec.decider.target_burst_capacity);
    loop_.set_proxied(revision, sks_mode_now == "Proxy");

    // The Deployment first: a pod asked for sooner is a cold start shorter.
    if (apply && current != want + held && !target.empty()) {
      const std::string patch = replicas_patch(want + held);
      const std::string url = "/apis/apps/v1/namespaces/" + ns + "/deployments/" + target;
      auto r = co_await client_.request("PATCH", url, patch, kJsonPatch);
      if (r.ok()) {
        spdlog::info("{}: {} → {} ({}{})", revision, current, want + held, d.reason.str(),
                     held > 0 ? fmt::format(" + {} for quarantined pod(s)", held) : "");
        deployments_[ns + "/" + target] = want + held;  // the watch confirms it
      } else {
        spdlog::warn("{}: scaling Deployment {} to {}: {}", revision, target, want, r.describe());
        all_written = false;
      }
    }
    if (sks == nullptr) {
      const std::string body = knative::make_sks(owner, mode, activators).dump();
      const std::string url = std::string(kSksPath) + "/namespaces/" + ns + "/serverlessservices";
      auto r = co_await client_.request("POST", url, body);
      if (!r.ok() && r.status != 409)
        spdlog::warn("{}: creating ServerlessService: {}", revision, r.describe());
      all_written = all_written && r.ok();
    } else if (sks_mode_now != mode || sks->activators != activators) {
      const std::string patch =
          json{{"spec", {{"mode", mode}, {"numActivators", activators}}}}.dump();
      const std::string url =
          std::string(kSksPath) + "/namespaces/" + ns + "/serverlessservices/" + name;
      auto r = co_await client_.request("PATCH", url, patch, kMergePatch);
      if (!r.ok())
        spdlog::warn("{}: ServerlessService mode {}: {}", revision, mode, r.describe());
      else if (sks_mode_now != mode)
        spdlog::info("{}: ServerlessService mode {} → {}", revision, sks_mode_now, mode);
      all_written = all_written && r.ok();
    }
    knative::PaObservation o;
    o.want = apply ? want : (want == 0 ? std::max(current, 0) : want);
    o.ready = ready;
    o.min_scale = min_scale;
    o.initial_scale = initial_scale;
    o.sks_exists = sks != nullptr;
    o.sks_ready = sks_ready;
    if (sks != nullptr) {
      o.sks_message = sks->ready_message;
      o.service_name = sks->service_name;
      o.private_service_name = sks->private_service_name;
    }
    const json status = knative::pa_status(old_status, o, generation, now_text());
    if (status != old_status) {
      const std::string body = json{{"status", status}}.dump();
      const std::string url = pa_status_url(ns, name);
      auto r = co_await client_.request("PATCH", url, body, kMergePatch);
      if (!r.ok())
        spdlog::warn("{}: PodAutoscaler status: {}", revision, r.describe());
      else if (auto again = pas_.find(revision); again != pas_.end())
        again->second->status = status.dump();  // until the watch says so
      all_written = all_written && r.ok();
    }
    it = pas_.find(revision);
    if (it == pas_.end())
      co_return;
    // Anything unwritten is retried at the next tick.
    it->second->reconciled = all_written ? std::optional(fp) : std::nullopt;
    if (!it->second->dirty) {
      it->second->in_flight = false;
      co_return;
    }
  }
}

http::Task<void> KubeAutoscaler::write_invalid(std::string revision) {
  auto it = pas_.find(revision);
  if (it == pas_.end() || !it->second->invalid || it->second->invalid_written)
    co_return;
  Pa& pa = *it->second;
  pa.invalid_written = true;
  knative::PaObservation o;
  o.invalid = pa.invalid;
  const json status = knative::pa_status(pa.status_json(), o, pa.generation, now_text());
  const std::string body = json{{"status", status}}.dump();
  const std::string url = pa_status_url(pa.ns, pa.name);
  auto r = co_await client_.request("PATCH", url, body, kMergePatch);
  if (!r.ok()) {
    spdlog::warn("{}: PodAutoscaler status: {}", revision, r.describe());
    if (auto again = pas_.find(revision); again != pas_.end())
      again->second->invalid_written = false;  // the next leadership tick retries
  }
}

// Lists and watch events are parsed into short-lived JSON trees; glibc keeps the freed
// pages (a list of a thousand PodAutoscalers leaves megabytes behind). Hand them back.
http::Task<void> KubeAutoscaler::trim_loop() {
  core::Timer timer(time_, io_.get_executor());
  while (!stopping_) {
    timer.expires_after(30s);
    co_await timer.async_wait(http::kUseTuple);
    ::malloc_trim(0);
  }
}

// ---------------------------------------------------------------------------------------
// Lease

std::string KubeAutoscaler::now_text() const {
  const auto now = std::chrono::time_point_cast<std::chrono::microseconds>(time_.wall_now());
  const auto secs = std::chrono::time_point_cast<std::chrono::seconds>(now);
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:06d}Z",
                     fmt::gmtime(std::chrono::system_clock::to_time_t(secs)), (now - secs).count());
}

http::Task<void> KubeAutoscaler::lease_loop() {
  core::Timer timer(time_, io_.get_executor());
  const std::string path =
      fmt::format("/apis/coordination.k8s.io/v1/namespaces/{}/leases", opts_.system_namespace);
  core::TimePoint renewed{};
  std::string lease_failure;
  while (!stopping_) {
    auto got =
        co_await client_.request("GET", path + "/" + opts_.lease_name, {}, "application/json", 5s);
    knative::LeaseView view;
    json lease;
    bool wrote = false;
    if (got.ok()) {
      lease = json::parse(got.body, nullptr, false);
      view.exists = lease.is_object();
      view.holder = str(lease, {"spec", "holderIdentity"});
      view.renew_time = str(lease, {"spec", "renewTime"});
      if (lease.is_object() && lease.contains("spec"))
        view.duration_seconds = lease["spec"].value("leaseDurationSeconds", 0);
    }
    const std::string my_address =
        opts_.pod_ip.empty() ? "" : config::join_host_port(opts_.pod_ip, opts_.port);
    if (got.ok() || got.status == 404) {
      const auto action = elector_->decide(view, time_.now());
      const std::string now = now_text();
      if (action == knative::LeaseAction::Wait)
        follow_leader(view.holder, str(lease, {"metadata", "annotations", kLeaderAddress}));
      const int32_t seconds = static_cast<int32_t>(
          std::chrono::duration_cast<std::chrono::seconds>(opts_.lease_duration).count());
      if (action == knative::LeaseAction::Create) {
        const json body = {{"apiVersion", "coordination.k8s.io/v1"},
                           {"kind", "Lease"},
                           {"metadata",
                            {{"name", opts_.lease_name},
                             {"namespace", opts_.system_namespace},
                             {"annotations", {{kLeaderAddress, my_address}}}}},
                           {"spec",
                            {{"holderIdentity", opts_.identity},
                             {"leaseDurationSeconds", seconds},
                             {"acquireTime", now},
                             {"renewTime", now},
                             {"leaseTransitions", 0}}}};
        wrote = (co_await client_.request("POST", path, body.dump())).ok();
      } else if (action != knative::LeaseAction::Wait) {
        json& spec = lease["spec"];
        if (action == knative::LeaseAction::Take) {
          spec["acquireTime"] = now;
          spec["leaseTransitions"] = spec.value("leaseTransitions", 0) + 1;
        }
        spec["holderIdentity"] = opts_.identity;
        lease["metadata"]["annotations"][kLeaderAddress] = my_address;
        spec["leaseDurationSeconds"] = seconds;
        spec["renewTime"] = now;
        // resourceVersion in the body: a PUT that lost a race gets 409.
        auto r = co_await client_.request("PUT", path + "/" + opts_.lease_name, lease.dump());
        wrote = r.ok();
        if (r.ok())
          lease_version_ =
              str(json::parse(r.body, nullptr, false), {"metadata", "resourceVersion"});
      }
    } else if (got.describe() != lease_failure) {
      lease_failure = got.describe();  // each distinct failure once, not every retry
      spdlog::warn("lease {}: {}; retrying every {} s", opts_.lease_name, lease_failure,
                   std::chrono::duration_cast<std::chrono::seconds>(opts_.lease_retry).count());
    }
    if (got.ok() || got.status == 404)
      lease_failure.clear();
    if (wrote)
      renewed = time_.now();
    // Lead while the last renewal is younger than the lease (a standby waits that long).
    const bool lead = !stopping_ && renewed != core::TimePoint{} &&
                      time_.now() - renewed < opts_.lease_duration - opts_.lease_retry;
    if (lead && forward_) {
      std::exchange(forward_, nullptr)->stop();  // we are where the stats go now
      leader_address_.clear();
    }
    if (lead != leader_) {
      leader_ = lead;
      spdlog::info("autoscaler {}: {} lease {}", opts_.identity,
                   lead ? "leading: holds" : "standby: lost", opts_.lease_name);
      for (auto& [key, pa] : pas_) {
        pa->reconciled.reset();  // what a leader wrote before may have moved since
        if (lead && pa->invalid)
          asio::co_spawn(io_, write_invalid(key), asio::detached);
      }
    }
    if (!wrote)
      renewed = leader_ ? renewed : core::TimePoint{};
    timer.expires_after(opts_.lease_retry);
    co_await timer.async_wait(http::kUseTuple);
  }
}

void KubeAutoscaler::follow_leader(const std::string& holder, const std::string& address) {
  if (address == leader_address_ || holder == opts_.identity)
    return;
  if (forward_)
    std::exchange(forward_, nullptr)->stop();
  leader_address_ = address;
  std::string host;
  uint16_t port = 0;
  if (address.empty() || !config::split_host_port(address, host, port)) {
    spdlog::warn(
        "autoscaler {}: the leader {} publishes no address: stats sent here are not "
        "relayed to it",
        opts_.identity, holder);
    return;
  }
  spdlog::info("autoscaler {}: standby; relaying activator stats to the leader {} at {}",
               opts_.identity, holder, address);
  forward_ =
      std::make_shared<knative::AutoscalerLink>(host, port, opts_.identity, time_, "/forwarded");
  forward_->start(io_.get_executor());
}

http::Task<void> KubeAutoscaler::release_lease(std::function<void()> done) {
  if (leader_) {
    leader_ = false;
    const std::string url = "/apis/coordination.k8s.io/v1/namespaces/" + opts_.system_namespace +
                            "/leases/" + opts_.lease_name;
    auto got = co_await client_.request("GET", url, {}, "application/json", 3s);
    json lease = got.ok() ? json::parse(got.body, nullptr, false) : json();
    if (lease.is_object() && str(lease, {"spec", "holderIdentity"}) == opts_.identity) {
      lease["spec"]["holderIdentity"] = "";
      const std::string body = lease.dump();
      auto r = co_await client_.request("PUT", url, body, "application/json", 3s);
      spdlog::info("autoscaler {}: lease {} {}", opts_.identity, opts_.lease_name,
                   r.ok() ? "released" : "not released: " + r.describe());
    }
  }
  done();
}

std::string KubeAutoscaler::metrics_text() const {
  return loop_.metrics_text() +
         fmt::format(
             "# HELP sluice_autoscaler_leader 1 while this replica holds the lease and scales\n"
             "# TYPE sluice_autoscaler_leader gauge\nsluice_autoscaler_leader {}\n",
             leader_ ? 1 : 0);
}

}  // namespace sluice::runtime
