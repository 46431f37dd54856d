#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <memory>
#include <thread>
#include <variant>

#include "activator/activator.h"
#include "activator/file_discovery.h"
#include "cli/cluster_config.h"
#include "cli/commands.h"
#include "config/duration.h"
#include "core/logging.h"
#include "knative/autoscaler_link.h"
#include "knative/kube_discovery.h"
#include "kube/config.h"

namespace sluice::cli {

namespace {

struct KubeFlags {
  std::string kubeconfig;
  std::string autoscaler;
};

// Started as Knative's activator Deployment starts its image: POD_NAME, POD_IP and
// SYSTEM_NAMESPACE from the downward API, the service account for the API, the
// autoscaler by its Service name. CONFIG_LOGGING_NAME, CONFIG_OBSERVABILITY_NAME,
// METRICS_DOMAIN and GOGC are accepted and not needed.
int run_in_kubernetes(activator::ActivatorOptions opts, const KubeFlags& flags) {
  auto config = load_cluster_config(flags.kubeconfig);
  if (auto* e = std::get_if<std::string>(&config)) {
    std::fprintf(stderr, "sluice activator: no --endpoints-file, and %s\n", e->c_str());
    return 1;
  }
  for (const char* required : {"POD_NAME", "POD_IP", "SYSTEM_NAMESPACE"}) {
    if (!env(required) || env(required)->empty()) {
      std::fprintf(stderr,
                   "sluice activator: %s is not set (Knative's activator Deployment sets it from "
                   "the downward API)\n",
                   required);
      return 1;
    }
  }
  const std::string pod_ip = *env("POD_IP");
  http::error_code ec;
  boost::asio::ip::make_address(pod_ip, ec);
  if (ec) {
    std::fprintf(stderr, "sluice activator: POD_IP %s is not an IP address\n", pod_ip.c_str());
    return 1;
  }
  std::string autoscaler = flags.autoscaler;
  if (autoscaler.empty()) {
    const std::string domain = env("CLUSTER_DOMAIN").value_or("cluster.local");
    autoscaler = "autoscaler." + *env("SYSTEM_NAMESPACE") + ".svc." + domain + ":8080";
  }
  std::string as_host;
  uint16_t as_port = 0;
  if (!config::split_host_port(autoscaler, as_host, as_port)) {
    std::fprintf(stderr, "sluice activator: --autoscaler %s: want HOST:PORT\n", autoscaler.c_str());
    return 1;
  }
  core::SteadyTimeSource time;
  auto link = std::make_shared<knative::AutoscalerLink>(as_host, as_port, *env("POD_NAME"), time);
  opts.listener = link.get();
  opts.ready = [link](std::string& why) {
    if (link->connected())
      return true;
    why = "the autoscaler websocket ws://" + link->where() + " is not connected";
    return false;
  };
  opts.id = config::join_host_port(pod_ip, opts.port);
  opts.discovery = std::make_shared<knative::KubeDiscovery>(std::get<kube::ClusterConfig>(config),
                                                            pod_ip, opts.port);
  // The link has a thread of its own: a slow autoscaler never holds the activator up.
  boost::asio::io_context link_io;
  auto work = boost::asio::make_work_guard(link_io);
  link->start(link_io.get_executor());
  std::thread link_thread([&] { link_io.run(); });
  int rc = 0;
  {
    activator::Activator a(opts);
    rc = a.run();
  }
  work.reset();
  link_io.stop();
  link_thread.join();
  return rc;
}

}  // namespace

Action add_activator_command(CLI::App& app) {
  auto opts = std::make_shared<activator::ActivatorOptions>();
  opts->threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  struct Raw {
    std::string probe_interval = "50ms";
    std::string drain_timeout = "45s";
    std::string header_timeout = "60s";
    std::string log_level = "info";
    bool json_logs = false;
  };
  auto raw = std::make_shared<Raw>();
  app.add_option("--port", opts->port, "Serving port (default 8012)");
  app.add_option("--metrics-port", opts->metrics_port, "Prometheus metrics port (default 9090)");
  app.add_option("--threads", opts->threads, "Worker threads (default: cores)")
      ->check(CLI::Range(1, 256));
  auto endpoints_file = std::make_shared<std::string>();
  app.add_option("--endpoints-file", *endpoints_file,
                 "JSON file with revisions and their queue-proxy endpoints; re-read on change. "
                 "Without it: Kubernetes (in a pod, or with --kubeconfig)");
  auto kube = std::make_shared<KubeFlags>();
  app.add_option(
      "--kubeconfig", kube->kubeconfig,
      "Kubernetes: a kubeconfig file (out of cluster); in a pod the service account is used");
  app.add_option("--autoscaler", kube->autoscaler,
                 "Kubernetes: Knative's autoscaler stats websocket HOST:PORT (default "
                 "autoscaler.$SYSTEM_NAMESPACE.svc.$CLUSTER_DOMAIN:8080)");
  auto* h2c_flag = app.add_option("--h2c-port", opts->h2c_port,
                                  "Knative's h2c port, served like --port: HTTP/2 (prior "
                                  "knowledge or Upgrade: h2c) and HTTP/1 (Kubernetes default "
                                  "8013; 0: none)");
  app.add_option("--id", opts->id,
                 "This activator's HOST:PORT in the file's \"activators\" list (subsetting)");
  app.add_option("--queue-depth", opts->queue_depth,
                 "Requests that may wait per revision (default 10000); beyond: 503")
      ->check(CLI::Range(1u, 10'000'000u));
  app.add_option("--probe-interval", raw->probe_interval,
                 "Health-check cadence for pending pods (default 50ms)");
  app.add_option("--drain-timeout", raw->drain_timeout,
                 "On SIGTERM, fail readiness this long before closing (default 45s)");
  app.add_option("--header-timeout", raw->header_timeout,
                 "Cut clients that take longer than this to send a request head (default 60s)");
  app.add_option("--log-level", raw->log_level, "trace|debug|info|warn|error (default info)");
  app.add_flag("--json-logs", raw->json_logs, "Log one JSON object per line");
  return [=]() -> int {
    core::setup_logging("activator", raw->log_level, raw->json_logs);
    struct {
      const std::string& text;
      const char* flag;
      std::chrono::milliseconds& out;
    } durations[] = {{raw->probe_interval, "--probe-interval", opts->probe_interval},
                     {raw->drain_timeout, "--drain-timeout", opts->drain_timeout},
                     {raw->header_timeout, "--header-timeout", opts->header_timeout}};
    for (auto& d : durations) {
      std::string why;
      auto parsed = config::parse_duration(d.text, &why);
      if (!parsed) {
        std::fprintf(stderr, "sluice activator: %s: %s\n", d.flag, why.c_str());
        return 1;
      }
      d.out = *parsed;
    }
    if (opts->probe_interval.count() < 1) {
      std::fprintf(stderr, "sluice activator: --probe-interval must be at least 1ms\n");
      return 1;
    }
    if (!endpoints_file->empty()) {
      opts->discovery = std::make_shared<activator::FileDiscovery>(*endpoints_file, opts->id);
      activator::Activator a(*opts);
      return a.run();
    }
    if (h2c_flag->count() == 0)
      opts->h2c_port = 8013;  // as Knative's activator Deployment declares it
    return run_in_kubernetes(*opts, *kube);
  };
}

}  // namespace sluice::cli
