// config/queue_proxy_config.h
//
// The queue-proxy's configuration: every environment variable Knative 1.18's
// reconciler gives its queue-proxy container (spec §1.9), with command-line flags
// overriding them for local use.
//
// Required variables (CONTAINER_CONCURRENCY, QUEUE_SERVING_PORT, ...) stop start-up with
// an error naming each one that is missing, unless its flag supplies it. The pod-identity
// variables (namespace, revision, pod, ...) have no flags: when *none* of them is set the
// process is taken to run outside Kubernetes ("local mode") and they get local defaults;
// when only some are set, each missing one is an error, since that is a broken pod spec.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/readiness_probe.h"

namespace sluice::config {

using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;

struct QueueProxyConfig {
  // Identity (metric labels, Stat.pod_name, probe answers).
  std::string namespace_name;
  std::string configuration_name;
  std::string revision_name;
  std::string service_name;
  std::string pod_name;
  std::string pod_ip;
  bool local_mode = false;

  // Ports. 0 is not allowed for the main and user ports; tests pass free ports.
  uint16_t port = 8012;
  uint16_t tls_port = 8112;
  uint16_t user_port = 0;
  uint16_t admin_port = 8022;
  uint16_t stats_port = 9090;
  uint16_t metrics_port = 9091;

  uint32_t container_concurrency = 0;   // 0 = unlimited, no breaker
  Millis revision_timeout = 300s;       // until the response starts
  Millis response_start_timeout = 0ms;  // 0 = off
  Millis idle_timeout = 0ms;            // 0 = off
  Millis drain_quiet_period = 30s;
  // Readiness polling until the app is first ready (Knative's aggressive mode: 50 ms);
  // `sluice run` polls faster because cold-start latency is what a developer sees.
  Millis startup_probe_interval = 50ms;
  Millis header_timeout = 60s;  // Knative's ReadHeaderTimeout
  int threads = 1;
  std::string address;  // empty: every address of the pod

  std::vector<ProbeSpec> readiness_probes;  // empty: always ready

  std::string logging_level = "info";
  std::string logging_config;  // zap JSON; kept for reference, level comes from *_LEVEL
  bool request_log = false;
  bool probe_request_log = false;
  std::string request_log_template;
  std::string metrics_backend = "prometheus";
  int metrics_reporting_period_seconds = 0;
  bool enable_profiling = false;
  bool full_duplex = false;
  bool http2_autodetect = false;
  // The app speaks HTTP/2 cleartext: every request reaches it as a stream of a shared
  // h2c session (gRPC needs this). SLUICE_APP_PROTOCOL / --app-protocol (h2c, http1);
  // unset in a pod: h2c when QUEUE_SERVING_PORT is 8013, the port Knative's controller
  // gives the queue-proxy of a revision whose first container port is named h2c.
  bool app_h2c = false;
  // Detect it instead (`--app-protocol auto`, or ENABLE_HTTP2_AUTO_DETECTION=true with no
  // protocol given): once the app is first ready, one connection offers it the HTTP/2
  // preface; readiness waits for the answer.
  bool app_protocol_auto = false;
  bool multi_container_probes = false;
  std::string tracing_backend;

  // Activators to tell at once when the app becomes ready / not ready and when draining
  // starts (Sluice extension; `--activator` / SLUICE_ACTIVATORS, comma-separated).
  std::vector<std::string> activators;

  // Accepted but not acted on (e.g. HTTP/2 auto-detection), logged at start-up.
  std::vector<std::string> notices;
};

// What flags the user gave; unset optionals leave the environment's value.
struct QueueProxyFlags {
  std::optional<uint16_t> port, user_port, admin_port, stats_port, metrics_port;
  std::optional<uint32_t> container_concurrency;
  std::optional<std::string> revision_timeout;  // duration text
  std::optional<std::string> readiness_probe;   // JSON, as SERVING_READINESS_PROBE
  std::optional<std::string> drain_quiet_period;
  std::optional<std::string> startup_probe_interval;
  std::optional<std::string> header_timeout;
  std::optional<int> threads;
  std::optional<std::string> activators;    // comma-separated HOST:PORT list
  std::optional<std::string> address;       // listen address; absent: every address
  std::optional<std::string> app_protocol;  // "h2c", "http1" or "auto"
};

using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;
EnvLookup process_env();

struct QueueProxyConfigResult {
  std::optional<QueueProxyConfig> config;
  std::vector<std::string> errors;  // each names the variable or flag at fault
};

QueueProxyConfigResult load_queue_proxy_config(const EnvLookup& env, const QueueProxyFlags& flags);

// Every variable the queue-proxy reads, for --help and docs.
const std::vector<std::string_view>& queue_proxy_env_names();

}  // namespace sluice::config
