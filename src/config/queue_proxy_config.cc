#include "config/queue_proxy_config.h"

#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <cstdlib>

#include "config/duration.h"

namespace sluice::config {

namespace {

constexpr std::string_view kRequiredWithFlag[] = {"CONTAINER_CONCURRENCY", "QUEUE_SERVING_PORT",
                                                  "USER_PORT", "REVISION_TIMEOUT_SECONDS"};
constexpr std::string_view kIdentity[] = {"QUEUE_SERVING_TLS_PORT",
                                          "SERVING_LOGGING_CONFIG",
                                          "SERVING_LOGGING_LEVEL",
                                          "SERVING_NAMESPACE",
                                          "SERVING_CONFIGURATION",
                                          "SERVING_REVISION",
                                          "SERVING_POD",
                                          "SERVING_POD_IP"};

class Reader {
 public:
  Reader(const EnvLookup& env, std::vector<std::string>& errors) : env_(env), errors_(errors) {}

  std::optional<std::string> get(std::string_view name) const {
    auto v = env_(name);
    if (v && v->empty())
      return std::nullopt;
    return v;
  }

  template <typename T>
  void integer(std::string_view name, T& out, long min, long max) const {
    auto v = get(name);
    if (!v)
      return;
    char* end = nullptr;
    long value = std::strtol(v->c_str(), &end, 10);
    if (end == v->c_str() || *end != '\0' || value < min || value > max) {
      errors_.push_back(std::string(name) + "=\"" + *v + "\": expected an integer in " +
                        std::to_string(min) + ".." + std::to_string(max));
      return;
    }
    out = static_cast<T>(value);
  }

  void seconds(std::string_view name, Millis& out) const {
    long s = -1;
    integer(name, s, 0, 365L * 24 * 3600);
    if (s >= 0)
      out = std::chrono::seconds(s);
  }

  void boolean(std::string_view name, bool& out) const {
    auto v = get(name);
    if (!v)
      return;
    if (*v == "true" || *v == "TRUE" || *v == "True" || *v == "1") {
      out = true;
    } else if (*v == "false" || *v == "FALSE" || *v == "False" || *v == "0") {
      out = false;
    } else {
      errors_.push_back(std::string(name) + "=\"" + *v + "\": expected true or false");
    }
  }

  void string(std::string_view name, std::string& out) const {
    if (auto v = get(name))
      out = *v;
  }

 private:
  const EnvLookup& env_;
  std::vector<std::string>& errors_;
};

void flag_duration(const std::optional<std::string>& text,
                   const char* flag,
                   Millis& out,
                   std::vector<std::string>& errors) {
  if (!text)
    return;
  std::string why;
  if (auto d = parse_duration(*text, &why)) {
    out = *d;
  } else {
    errors.push_back(std::string(flag) + ": " + why);
  }
}

}  // namespace

EnvLookup process_env() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr)
      return std::nullopt;
    return std::string(v);
  };
}

const std::vector<std::string_view>& queue_proxy_env_names() {
  static const std::vector<std::string_view> names = {
      "CONTAINER_CONCURRENCY",
      "QUEUE_SERVING_PORT",
      "QUEUE_SERVING_TLS_PORT",
      "USER_PORT",
      "REVISION_TIMEOUT_SECONDS",
      "SERVING_LOGGING_CONFIG",
      "SERVING_LOGGING_LEVEL",
      "SERVING_NAMESPACE",
      "SERVING_CONFIGURATION",
      "SERVING_REVISION",
      "SERVING_POD",
      "SERVING_POD_IP",
      "SERVING_SERVICE",
      "REVISION_RESPONSE_START_TIMEOUT_SECONDS",
      "REVISION_IDLE_TIMEOUT_SECONDS",
      "SERVING_READINESS_PROBE",
      "ENABLE_PROFILING",
      "ENABLE_HTTP_FULL_DUPLEX",
      "ENABLE_HTTP2_AUTO_DETECTION",
      "ENABLE_MULTI_CONTAINER_PROBES",
      "SERVING_REQUEST_LOG_TEMPLATE",
      "SERVING_ENABLE_REQUEST_LOG",
      "SERVING_ENABLE_PROBE_REQUEST_LOG",
      "SERVING_REQUEST_METRICS_BACKEND",
      "SERVING_REQUEST_METRICS_REPORTING_PERIOD_SECONDS",
      "METRICS_COLLECTOR_ADDRESS",
      "TRACING_CONFIG_BACKEND",
      "TRACING_CONFIG_DEBUG",
      "TRACING_CONFIG_SAMPLE_RATE",
      "TRACING_CONFIG_ZIPKIN_ENDPOINT",
      "SYSTEM_NAMESPACE",
      "METRICS_DOMAIN",
      "HOST_IP",
      "ROOT_CA",
      "SLUICE_ACTIVATORS"};
  return names;
}

QueueProxyConfigResult load_queue_proxy_config(const EnvLookup& env, const QueueProxyFlags& flags) {
  QueueProxyConfigResult result;
  auto& errors = result.errors;
  Reader r(env, errors);
  QueueProxyConfig c;

  // Which identity variables are present decides between local mode and a pod.
  std::vector<std::string_view> identity_missing;
  // Present is enough, as for Knative's own queue-proxy: a stock install sets
  // SERVING_LOGGING_CONFIG and SERVING_LOGGING_LEVEL to "".
  for (auto name : kIdentity) {
    if (!env(name))
      identity_missing.push_back(name);
  }
  c.local_mode = identity_missing.size() == std::size(kIdentity);
  if (!c.local_mode) {
    for (auto name : identity_missing) {
      errors.push_back("required environment variable " + std::string(name) + " is not set");
    }
  }
  const bool flag_for[] = {flags.container_concurrency.has_value(), flags.port.has_value(),
                           flags.user_port.has_value(), flags.revision_timeout.has_value()};
  for (size_t i = 0; i < std::size(kRequiredWithFlag); ++i) {
    if (flag_for[i] || r.get(kRequiredWithFlag[i]))
      continue;
    // Outside a pod, sensible defaults exist for all but the user port.
    if (c.local_mode && kRequiredWithFlag[i] != "USER_PORT")
      continue;
    static const char* const kFlagNames[] = {"--container-concurrency", "--port", "--user-port",
                                             "--revision-timeout"};
    errors.push_back("required environment variable " + std::string(kRequiredWithFlag[i]) +
                     " is not set (or pass " + kFlagNames[i] + ")");
  }

  r.integer("CONTAINER_CONCURRENCY", c.container_concurrency, 0, 1'000'000);
  r.integer("QUEUE_SERVING_PORT", c.port, 1, 65535);
  r.integer("QUEUE_SERVING_TLS_PORT", c.tls_port, 1, 65535);
  r.integer("USER_PORT", c.user_port, 1, 65535);
  r.seconds("REVISION_TIMEOUT_SECONDS", c.revision_timeout);
  r.seconds("REVISION_RESPONSE_START_TIMEOUT_SECONDS", c.response_start_timeout);
  r.seconds("REVISION_IDLE_TIMEOUT_SECONDS", c.idle_timeout);
  r.string("SERVING_LOGGING_CONFIG", c.logging_config);
  r.string("SERVING_LOGGING_LEVEL", c.logging_level);
  r.string("SERVING_NAMESPACE", c.namespace_name);
  r.string("SERVING_CONFIGURATION", c.configuration_name);
  r.string("SERVING_REVISION", c.revision_name);
  r.string("SERVING_SERVICE", c.service_name);
  r.string("SERVING_POD", c.pod_name);
  r.string("SERVING_POD_IP", c.pod_ip);
  r.boolean("ENABLE_PROFILING", c.enable_profiling);
  r.boolean("ENABLE_HTTP_FULL_DUPLEX", c.full_duplex);
  r.boolean("ENABLE_HTTP2_AUTO_DETECTION", c.http2_autodetect);
  r.boolean("ENABLE_MULTI_CONTAINER_PROBES", c.multi_container_probes);
  r.string("SERVING_REQUEST_LOG_TEMPLATE", c.request_log_template);
  r.boolean("SERVING_ENABLE_REQUEST_LOG", c.request_log);
  r.boolean("SERVING_ENABLE_PROBE_REQUEST_LOG", c.probe_request_log);
  r.string("SERVING_REQUEST_METRICS_BACKEND", c.metrics_backend);
  r.integer("SERVING_REQUEST_METRICS_REPORTING_PERIOD_SECONDS", c.metrics_reporting_period_seconds,
            0, 3600);
  r.string("TRACING_CONFIG_BACKEND", c.tracing_backend);

  std::optional<std::string> app_protocol = flags.app_protocol;
  if (!app_protocol)
    app_protocol = env("SLUICE_APP_PROTOCOL");
  if (app_protocol && !app_protocol->empty()) {
    if (*app_protocol == "h2c") {
      c.app_h2c = true;
    } else if (*app_protocol == "auto") {
      c.app_protocol_auto = true;
    } else if (*app_protocol != "http1") {
      errors.push_back("app protocol (--app-protocol / SLUICE_APP_PROTOCOL) \"" + *app_protocol +
                       "\": expected h2c, http1 or auto");
    }
  } else {
    // Knative's controller serves an h2c revision's queue-proxy on 8013
    // (networking.BackendHTTP2Port) and every other on 8012.
    c.app_h2c = !c.local_mode && c.port == 8013;
    // Knative's autodetect-http2 feature: its prober tries HTTP/2 first; here the
    // answer also decides how requests reach the app.
    c.app_protocol_auto = !c.app_h2c && c.http2_autodetect;
  }

  if (flags.port)
    c.port = *flags.port;
  if (flags.user_port)
    c.user_port = *flags.user_port;
  if (flags.admin_port)
    c.admin_port = *flags.admin_port;
  if (flags.stats_port)
    c.stats_port = *flags.stats_port;
  if (flags.metrics_port)
    c.metrics_port = *flags.metrics_port;
  if (flags.container_concurrency)
    c.container_concurrency = *flags.container_concurrency;
  flag_duration(flags.revision_timeout, "--revision-timeout", c.revision_timeout, errors);
  flag_duration(flags.drain_quiet_period, "--drain-quiet-period", c.drain_quiet_period, errors);
  flag_duration(flags.startup_probe_interval, "--startup-probe-interval", c.startup_probe_interval,
                errors);
  if (c.startup_probe_interval < 1ms || c.startup_probe_interval > 10s)
    errors.push_back("--startup-probe-interval must be in 1ms..10s");
  flag_duration(flags.header_timeout, "--header-timeout", c.header_timeout, errors);
  if (flags.threads) {
    if (*flags.threads < 1 || *flags.threads > 256) {
      errors.push_back("--threads must be in 1..256, got " + std::to_string(*flags.threads));
    } else {
      c.threads = *flags.threads;
    }
  }

  if (flags.address) {
    boost::system::error_code bad;
    boost::asio::ip::make_address(*flags.address, bad);
    if (bad) {
      errors.push_back("--address " + *flags.address + ": not an IP address");
    } else {
      c.address = *flags.address;
    }
  }
  std::string activators;
  if (flags.activators) {
    activators = *flags.activators;
  } else if (auto v = r.get("SLUICE_ACTIVATORS")) {
    activators = *v;
  }
  for (size_t start = 0; start < activators.size();) {
    size_t comma = activators.find(',', start);
    std::string one =
        activators.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!one.empty()) {
      if (one.rfind(':') == std::string::npos || one.rfind(':') == one.size() - 1) {
        errors.push_back("--activator/SLUICE_ACTIVATORS: \"" + one + "\" is not HOST:PORT");
      } else {
        c.activators.push_back(one);
      }
    }
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }

  if (c.local_mode) {
    c.namespace_name = "default";
    c.revision_name = "local";
    c.configuration_name = "local";
    char host[256] = {0};
    c.pod_name = gethostname(host, sizeof(host) - 1) == 0 ? host : "local";
    c.pod_ip = "127.0.0.1";
  }
  if (c.revision_timeout.count() <= 0) {
    errors.push_back(
        "revision timeout must be positive (REVISION_TIMEOUT_SECONDS / --revision-timeout)");
  }
  if (c.header_timeout.count() <= 0)
    errors.push_back("--header-timeout must be positive");
  // Knative only applies a response-start timeout shorter than the revision timeout.
  if (c.response_start_timeout >= c.revision_timeout)
    c.response_start_timeout = 0ms;

  std::string probe_json;
  if (flags.readiness_probe) {
    probe_json = *flags.readiness_probe;
  } else if (auto v = r.get("SERVING_READINESS_PROBE")) {
    probe_json = *v;
  }
  if (!probe_json.empty()) {
    auto parsed = parse_readiness_probe(probe_json, c.user_port);
    if (!parsed.error.empty()) {
      errors.push_back(parsed.error);
    } else {
      c.readiness_probes = std::move(parsed.probes);
    }
  } else if (c.local_mode && c.user_port != 0) {
    // Knative's defaulting gives every container a TCP probe on its port; outside
    // Kubernetes nobody did that, so do it here rather than report a dead app as ready.
    c.readiness_probes.push_back(default_tcp_probe(c.user_port));
  }
  for (const auto& p : c.readiness_probes) {
    if (p.kind == ProbeSpec::Kind::Grpc) {
      c.notices.push_back("gRPC readiness probe on port " + std::to_string(p.port) +
                          " is checked as a TCP connect (no gRPC client in the queue-proxy)");
    }
    if (p.https) {
      c.notices.push_back("HTTPS readiness probe is checked as a TCP connect (no TLS client)");
    }
  }

  // Knative always sets the template; it matters only when the request log is on.
  if (c.request_log && !c.request_log_template.empty()) {
    c.notices.push_back(
        "SERVING_REQUEST_LOG_TEMPLATE: Go templates are not evaluated; the "
        "request log is one JSON line per request");
  }
  if (!c.tracing_backend.empty() && c.tracing_backend != "none") {
    c.notices.push_back("TRACING_CONFIG_BACKEND=" + c.tracing_backend +
                        ": tracing headers are passed through, no spans are exported");
  }
  if (c.enable_profiling)
    c.notices.push_back("ENABLE_PROFILING: no profiling server");

  if (errors.empty())
    result.config = std::move(c);
  return result;
}

}  // namespace sluice::config
