#include "cluster_fixture.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "http/client.h"

namespace cluster {

namespace {

std::string cluster_bin_dir() {
  if (const char* b = std::getenv("SLUICE_CLUSTER_BIN"); b != nullptr && *b != '\0')
    return b;
  // Builds once and caches outside the repo; a cached run prints the directory at once.
  auto r = e2e::run(std::string(SLUICE_SOURCE_DIR) + "/scripts/cluster-build.sh");
  std::string out = r.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return r.exit_code == 0 ? out.substr(out.rfind('\n') + 1) : std::string();
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

bool condition_true(const json& object, const std::string& type) {
  if (!object.is_object() || !object.contains("status") || !object["status"].is_object())
    return false;
  const json& status = object["status"];
  if (!status.contains("conditions") || !status["conditions"].is_array())
    return false;
  for (const auto& c : status["conditions"])
    if (c.is_object() && c.value("type", "") == type && c.value("status", "") == "True")
      return true;
  return false;
}

Cluster::Cluster(Options options) {
  char tmpl[] = "/tmp/sluice-cluster-XXXXXX";
  dir_ = ::mkdtemp(tmpl);
  const std::string bin = cluster_bin_dir();
  if (bin.empty()) {
    error_ = "scripts/cluster-build.sh failed: no cluster binaries";
    return;
  }
  harness_.emplace(std::vector<std::string>{"/usr/bin/env",
                                            "python3",
                                            std::string(CLUSTER_DIR) + "/cluster.py",
                                            "up",
                                            "--dir",
                                            dir_,
                                            "--bin",
                                            bin,
                                            "--activator",
                                            options.activator,
                                            "--queue-proxy",
                                            options.queue_proxy,
                                            "--autoscaler",
                                            options.autoscaler,
                                            "--autoscalers",
                                            std::to_string(options.autoscalers),
                                            "--activators",
                                            std::to_string(options.activators),
                                            "--sluice",
                                            SLUICE_BIN,
                                            "--testapp",
                                            TESTAPP_BIN,
                                            "--config",
                                            options.config.dump()});
  // A cold control plane comes up in ~10 s; a loaded 2-core CI machine may take minutes.
  const bool up = e2e::eventually(
      [&] { return std::filesystem::exists(dir_ + "/ready") || !harness_->running(); }, 300s);
  if (!up || !std::filesystem::exists(dir_ + "/ready")) {
    error_ = fmt::format("the cluster did not come up ({}): harness output:\n{}\n{}",
                         up ? "harness exited" : "not within 300 s", harness_->output(),
                         slurp(dir_ + "/failed"));
    return;
  }
  const json ready = json::parse(slurp(dir_ + "/ready"));
  // Sluice's own client reads the kubeconfig the harness wrote, as `--kubeconfig` would.
  const std::string kubeconfig = ready["kubeconfig"].get<std::string>();
  auto parsed = kube::parse_kubeconfig(slurp(kubeconfig), kubeconfig, kube::read_whole_file);
  if (auto* e = std::get_if<std::string>(&parsed)) {
    error_ = *e;
    return;
  }
  config_ = std::get<kube::ClusterConfig>(parsed);
  client_ = std::make_unique<kube::Client>(io_.get_executor(), config_);
}

Cluster::~Cluster() {
  if (harness_ && harness_->running()) {
    harness_->signal(SIGTERM);
    if (!harness_->wait(120s)) {
      harness_->signal(SIGKILL);
      harness_->wait(10s);
    }
  }
  // Sluice ran in pods, perhaps under a sanitizer: any report it wrote fails the test.
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/logs", ec)) {
    const std::string text = slurp(e.path().string());
    for (const char* mark : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                             "WARNING: ThreadSanitizer", "runtime error: "}) {
      const size_t at = text.find(mark);
      if (at != std::string::npos)
        ADD_FAILURE() << e.path().filename().string() << ": "
                      << text.substr(at > 200 ? at - 200 : 0, 3000);
    }
  }
  if (!::testing::Test::HasFailure() && !dir_.empty() &&
      std::getenv("SLUICE_KEEP_CLUSTER") == nullptr)
    std::filesystem::remove_all(dir_);
  else
    std::fprintf(stderr, "cluster logs kept in %s\n", dir_.c_str());
}

kube::Response Cluster::call(std::string_view method,
                             const std::string& path,
                             const json& body,
                             std::string_view content_type) {
  kube::Response out;
  out.error = boost::asio::error::not_connected;
  if (!client_)
    return out;
  boost::asio::co_spawn(
      io_,
      client_->request(method, path, body.is_null() ? std::string() : body.dump(), content_type),
      [&](std::exception_ptr e, kube::Response r) {
        if (!e)
          out = std::move(r);
      });
  io_.restart();
  io_.run();
  return out;
}

json Cluster::get(const std::string& path) {
  auto r = call("GET", path);
  return r.ok() ? json::parse(r.body, nullptr, false) : json();
}

std::string Cluster::create(const std::string& collection, const json& object) {
  auto r = call("POST", collection, object);
  return r.ok() ? std::string() : fmt::format("POST {}: {}", collection, r.describe());
}

bool Cluster::wait_condition(const std::string& path,
                             const std::string& type,
                             e2e::Millis timeout) {
  return e2e::eventually([&] { return condition_true(get(path), type); }, timeout);
}

std::vector<std::string> Cluster::ready_pod_ips(const std::string& ns,
                                                const std::string& label_selector) {
  std::vector<std::string> ips;
  json pods = get(fmt::format("/api/v1/namespaces/{}/pods?labelSelector={}", ns,
                              kube::query_escape(label_selector)));
  if (!pods.is_object())
    return ips;
  for (const auto& p : pods.value("items", json::array()))
    if (!p.contains("metadata") || !p["metadata"].contains("deletionTimestamp"))
      if (condition_true(p, "Ready"))
        ips.push_back(p["status"].value("podIP", ""));
  return ips;
}

e2e::HttpResponse Cluster::curl(const std::string& url, const std::string& extra) {
  e2e::HttpResponse out;
  auto r = e2e::run(fmt::format("curl -sS -m 30 -i {} '{}' 2>&1", extra, url));
  const size_t split = r.out.find("\r\n\r\n");
  if (r.out.rfind("HTTP/", 0) != 0 || split == std::string::npos) {
    out.body = r.out;
    return out;
  }
  out.head = r.out.substr(0, split);
  out.body = r.out.substr(split + 4);
  out.status = std::atoi(out.head.c_str() + out.head.find(' ') + 1);
  return out;
}

void Cluster::restart_apiserver() {
  if (harness_)
    harness_->signal(SIGUSR1);
}

std::string Cluster::logs(const std::string& part, size_t tail_bytes) const {
  std::string out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/logs", ec)) {
    const std::string name = e.path().filename().string();
    if (name.find(part) == std::string::npos)
      continue;
    std::string text = slurp(e.path().string());
    if (text.size() > tail_bytes)
      text = "..." + text.substr(text.size() - tail_bytes);
    out += fmt::format("--- {}\n{}\n", name, text);
  }
  return out;
}

Load::Load(std::vector<std::string> targets, std::string request, int concurrency, int max_requests)
    : max_requests_(max_requests) {
  for (int i = 0; i < concurrency; ++i) {
    boost::asio::co_spawn(
        io_,
        [this, targets, request, i]() -> boost::asio::awaitable<void> {
          auto ex = co_await boost::asio::this_coro::executor;
          for (size_t n = static_cast<size_t>(i); !stop_.load(); ++n) {
            if (sent_.fetch_add(1) >= max_requests_)
              break;
            const std::string& t = targets[n % targets.size()];
            const size_t colon = t.rfind(':');
            boost::system::error_code ec;
            const boost::asio::ip::tcp::endpoint ep(
                boost::asio::ip::make_address(t.substr(0, colon), ec),
                static_cast<uint16_t>(std::stoi(t.substr(colon + 1))));
            auto r = co_await sluice::http::fetch(ex, ep, request, std::chrono::seconds(120));
            std::lock_guard l(mu_);
            ++statuses[r.error ? 0 : r.status];
            if ((r.error || r.status != 200) && failures.size() < 20)
              failures.push_back(fmt::format("{}: {} {} {}", t, r.status, r.error.message(),
                                             r.body.substr(0, 200)));
          }
        },
        boost::asio::detached);
  }
  thread_ = std::thread([this] { io_.run(); });
}

Load::~Load() {
  stop();
}

void Load::stop() {
  stop_.store(true);
  if (thread_.joinable())
    thread_.join();
}

int Load::failed() const {
  int n = 0;
  for (const auto& [status, count] : statuses)
    if (status != 200)
      n += count;
  return n;
}

std::string revision_request(const std::string& revision, const std::string& target) {
  return fmt::format(
      "GET {} HTTP/1.1\r\nHost: hello.default.example.com\r\nKnative-Serving-Namespace: default\r\n"
      "Knative-Serving-Revision: {}\r\nConnection: close\r\n\r\n",
      target, revision);
}

std::optional<PodProcesses> pod_processes(const Cluster& c,
                                          const std::string& ns,
                                          const std::string& pod) {
  const std::string path = c.dir() + "/pods/" + ns + "_" + pod + "/pids.json";
  if (!std::filesystem::exists(path))
    return std::nullopt;
  json j = json::parse(slurp(path), nullptr, false);
  if (!j.is_object())
    return std::nullopt;
  PodProcesses p;
  p.ip = j.value("ip", "");
  for (const auto& [name, pid] : j["pids"].items()) p.pids[name] = pid.get<int>();
  return p;
}

std::map<std::string, int> autoscaler_pids(const Cluster& c) {
  std::map<std::string, int> out;
  json j = json::parse(slurp(c.dir() + "/autoscalers.json"), nullptr, false);
  if (j.is_object())
    for (const auto& [name, v] : j.items()) out[name] = v.value("pid", -1);
  return out;
}

json hello_service(const std::string& name, int container_concurrency, json annotations) {
  json a = {{"autoscaling.knative.dev/class", "kpa.autoscaling.knative.dev"},
            {"autoscaling.knative.dev/metric", "concurrency"},
            // The activator stays in the path: the harness has no Service VIPs, so the
            // autoscaler's probe of the public Service before scaling to zero cannot
            // be answered; with -1 Knative skips it.
            {"autoscaling.knative.dev/target-burst-capacity", "-1"}};
  a.update(annotations);
  return {{"apiVersion", "serving.knative.dev/v1"},
          {"kind", "Service"},
          {"metadata", {{"name", name}, {"namespace", "default"}}},
          {"spec",
           {{"template",
             {{"metadata", {{"annotations", a}}},
              {"spec",
               {{"containerConcurrency", container_concurrency},
                {"timeoutSeconds", 300},
                {"containers",
                 json::array({{{"image", "dev.local/sluice/testapp"},
                               {"ports", json::array({{{"containerPort", 8080}}})},
                               {"readinessProbe",
                                {{"tcpSocket", {{"port", 0}}}, {"successThreshold", 1}}}}})}}}}}}}};
}

std::string revision_path(const std::string& ns, const std::string& name) {
  return fmt::format("/apis/serving.knative.dev/v1/namespaces/{}/revisions/{}", ns, name);
}

}  // namespace cluster
