#include "config/queue_proxy_config.h"

#include <gtest/gtest.h>

#include <map>

namespace sluice::config {
namespace {

using namespace std::chrono_literals;

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end())
      return std::nullopt;
    return it->second;
  };
}

std::map<std::string, std::string> knative_pod_env() {
  return {{"CONTAINER_CONCURRENCY", "4"},
          {"QUEUE_SERVING_PORT", "8012"},
          {"QUEUE_SERVING_TLS_PORT", "8112"},
          {"USER_PORT", "8080"},
          {"REVISION_TIMEOUT_SECONDS", "300"},
          {"SERVING_LOGGING_CONFIG", "{}"},
          {"SERVING_LOGGING_LEVEL", "info"},
          {"SERVING_NAMESPACE", "default"},
          {"SERVING_CONFIGURATION", "hello"},
          {"SERVING_REVISION", "hello-00001"},
          {"SERVING_POD", "hello-00001-deployment-abc"},
          {"SERVING_POD_IP", "10.0.0.7"},
          {"SERVING_SERVICE", "hello"},
          {"SERVING_READINESS_PROBE",
           R"({"tcpSocket":{"port":8080,"host":"127.0.0.1"},"successThreshold":1})"}};
}

TEST(QueueProxyConfig, ReadsKnativePodEnvironment) {
  auto r = load_queue_proxy_config(env_of(knative_pod_env()), {});
  ASSERT_TRUE(r.config) << (r.errors.empty() ? "" : r.errors[0]);
  const auto& c = *r.config;
  EXPECT_FALSE(c.local_mode);
  EXPECT_EQ(c.container_concurrency, 4u);
  EXPECT_EQ(c.port, 8012);
  EXPECT_EQ(c.user_port, 8080);
  EXPECT_EQ(c.revision_timeout, 300s);
  EXPECT_EQ(c.revision_name, "hello-00001");
  EXPECT_EQ(c.pod_name, "hello-00001-deployment-abc");
  EXPECT_EQ(c.admin_port, 8022);
  EXPECT_EQ(c.stats_port, 9090);
  EXPECT_EQ(c.metrics_port, 9091);
  ASSERT_EQ(c.readiness_probes.size(), 1u);
}

// How the app is reached: named (flag, then SLUICE_APP_PROTOCOL), else h2c on Knative's
// h2c port 8013, else detected when ENABLE_HTTP2_AUTO_DETECTION is true, else HTTP/1.1.
TEST(QueueProxyConfig, AppProtocolFollowsTheFlagTheEnvironmentAndKnativesPort) {
  struct Case {
    const char* what;
    std::map<std::string, std::string> env;
    std::optional<std::string> flag;
    bool h2c, detect;
  };
  const std::vector<Case> cases = {
      {"default", {}, std::nullopt, false, false},
      {"port 8013", {{"QUEUE_SERVING_PORT", "8013"}}, std::nullopt, true, false},
      {"auto-detection", {{"ENABLE_HTTP2_AUTO_DETECTION", "true"}}, std::nullopt, false, true},
      {"8013 beats auto-detection",
       {{"QUEUE_SERVING_PORT", "8013"}, {"ENABLE_HTTP2_AUTO_DETECTION", "true"}},
       std::nullopt,
       true,
       false},
      {"named http1 beats auto-detection",
       {{"ENABLE_HTTP2_AUTO_DETECTION", "true"}, {"SLUICE_APP_PROTOCOL", "http1"}},
       std::nullopt,
       false,
       false},
      {"env auto", {{"SLUICE_APP_PROTOCOL", "auto"}}, std::nullopt, false, true},
      {"flag beats env", {{"SLUICE_APP_PROTOCOL", "auto"}}, "h2c", true, false},
  };
  for (const auto& c : cases) {
    auto env = knative_pod_env();
    for (const auto& [k, v] : c.env) env[k] = v;
    QueueProxyFlags flags;
    flags.app_protocol = c.flag;
    auto r = load_queue_proxy_config(env_of(env), flags);
    ASSERT_TRUE(r.config) << c.what << ": " << (r.errors.empty() ? "" : r.errors[0]);
    EXPECT_EQ(r.config->app_h2c, c.h2c) << c.what;
    EXPECT_EQ(r.config->app_protocol_auto, c.detect) << c.what;
  }
  auto env = knative_pod_env();
  env["SLUICE_APP_PROTOCOL"] = "grpc";
  auto bad = load_queue_proxy_config(env_of(env), {});
  ASSERT_FALSE(bad.config);
  EXPECT_NE(bad.errors[0].find("expected h2c, http1 or auto"), std::string::npos) << bad.errors[0];
}

TEST(QueueProxyConfig, EachMissingRequiredVariableIsNamed) {
  auto env = knative_pod_env();
  env.erase("SERVING_POD");
  env.erase("CONTAINER_CONCURRENCY");
  auto r = load_queue_proxy_config(env_of(env), {});
  EXPECT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 2u);
  std::string all = r.errors[0] + "\n" + r.errors[1];
  EXPECT_NE(all.find("SERVING_POD is not set"), std::string::npos) << all;
  EXPECT_NE(all.find("CONTAINER_CONCURRENCY is not set"), std::string::npos) << all;
}

TEST(QueueProxyConfig, FlagSatisfiesAndOverridesTheEnvironment) {
  auto env = knative_pod_env();
  env.erase("CONTAINER_CONCURRENCY");
  QueueProxyFlags flags;
  flags.container_concurrency = 8;
  flags.revision_timeout = "45s";
  flags.port = 18012;
  auto r = load_queue_proxy_config(env_of(env), flags);
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->container_concurrency, 8u);
  EXPECT_EQ(r.config->revision_timeout, 45s);
  EXPECT_EQ(r.config->port, 18012);
}

TEST(QueueProxyConfig, BadValuesAreReportedWithTheVariable) {
  auto env = knative_pod_env();
  env["CONTAINER_CONCURRENCY"] = "four";
  env["SERVING_ENABLE_REQUEST_LOG"] = "yes please";
  auto r = load_queue_proxy_config(env_of(env), {});
  EXPECT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_NE(r.errors[0].find("CONTAINER_CONCURRENCY=\"four\""), std::string::npos) << r.errors[0];
  EXPECT_NE(r.errors[1].find("SERVING_ENABLE_REQUEST_LOG"), std::string::npos) << r.errors[1];
}

TEST(QueueProxyConfig, LocalModeNeedsOnlyTheUserPort) {
  auto none = load_queue_proxy_config(env_of({}), {});
  ASSERT_FALSE(none.config);
  ASSERT_EQ(none.errors.size(), 1u);
  EXPECT_NE(none.errors[0].find("USER_PORT"), std::string::npos);

  QueueProxyFlags flags;
  flags.user_port = 8080;
  auto r = load_queue_proxy_config(env_of({}), flags);
  ASSERT_TRUE(r.config) << r.errors.at(0);
  EXPECT_TRUE(r.config->local_mode);
  EXPECT_EQ(r.config->container_concurrency, 0u);
  EXPECT_EQ(r.config->drain_quiet_period, 30s);
  EXPECT_EQ(r.config->threads, 1);
  ASSERT_EQ(r.config->readiness_probes.size(), 1u)
      << "a TCP probe on the user port, as Knative defaults";
  EXPECT_EQ(r.config->readiness_probes[0].port, 8080);
}

TEST(QueueProxyConfig, PartialPodIdentityIsAnErrorNotLocalMode) {
  auto r = load_queue_proxy_config(env_of({{"SERVING_REVISION", "x"}, {"USER_PORT", "8080"}}), {});
  EXPECT_FALSE(r.config);
  EXPECT_GE(r.errors.size(), 7u);
}

TEST(QueueProxyConfig, ResponseStartTimeoutOnlyWhenShorterThanRevisionTimeout) {
  auto env = knative_pod_env();
  env["REVISION_RESPONSE_START_TIMEOUT_SECONDS"] = "300";
  env["REVISION_IDLE_TIMEOUT_SECONDS"] = "20";
  auto r = load_queue_proxy_config(env_of(env), {});
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->response_start_timeout, 0s);
  EXPECT_EQ(r.config->idle_timeout, 20s);
}

TEST(QueueProxyConfig, KnowsEveryKnativeVariable) {
  const auto& names = queue_proxy_env_names();
  for (auto required : {"CONTAINER_CONCURRENCY", "QUEUE_SERVING_TLS_PORT", "SERVING_POD_IP",
                        "SERVING_READINESS_PROBE", "TRACING_CONFIG_ZIPKIN_ENDPOINT",
                        "SERVING_REQUEST_METRICS_REPORTING_PERIOD_SECONDS"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), required), names.end()) << required;
  }
}

// The exact environment Knative 1.18's controller writes for a CC=0 TCP-probe revision
// in a stock install (no zap-logger-config, no loglevel.queueproxy: both set to "").
TEST(QueueProxyConfig, StartsWithTheEnvironmentOfAStockKnativeInstall) {
  std::map<std::string, std::string> env = {
      {"SERVING_NAMESPACE", "default"},
      {"SERVING_SERVICE", "hello"},
      {"SERVING_CONFIGURATION", "hello"},
      {"SERVING_REVISION", "hello-00001"},
      {"QUEUE_SERVING_PORT", "8012"},
      {"QUEUE_SERVING_TLS_PORT", "8112"},
      {"CONTAINER_CONCURRENCY", "0"},
      {"REVISION_TIMEOUT_SECONDS", "300"},
      {"REVISION_RESPONSE_START_TIMEOUT_SECONDS", "0"},
      {"REVISION_IDLE_TIMEOUT_SECONDS", "0"},
      {"SERVING_POD", "hello-00001-deployment-7d4f-x2x"},
      {"SERVING_POD_IP", "10.244.0.7"},
      {"SERVING_LOGGING_CONFIG", ""},
      {"SERVING_LOGGING_LEVEL", ""},
      {"SERVING_REQUEST_LOG_TEMPLATE",
       R"({"httpRequest": {"requestMethod": "{{.Request.Method}}"}, "traceId": "{{index .Request.Header "X-B3-Traceid"}}"})"},
      {"SERVING_ENABLE_REQUEST_LOG", "false"},
      {"SERVING_REQUEST_METRICS_BACKEND", "prometheus"},
      {"SERVING_REQUEST_METRICS_REPORTING_PERIOD_SECONDS", "5"},
      {"TRACING_CONFIG_BACKEND", "none"},
      {"TRACING_CONFIG_ZIPKIN_ENDPOINT", ""},
      {"TRACING_CONFIG_DEBUG", "false"},
      {"TRACING_CONFIG_SAMPLE_RATE", "0.1"},
      {"USER_PORT", "8080"},
      {"SYSTEM_NAMESPACE", "knative-serving"},
      {"METRICS_DOMAIN", "knative.dev/internal/serving"},
      {"SERVING_READINESS_PROBE",
       R"({"tcpSocket":{"port":8080,"host":"127.0.0.1"},"successThreshold":1})"},
      {"ENABLE_PROFILING", "false"},
      {"SERVING_ENABLE_PROBE_REQUEST_LOG", "false"},
      {"METRICS_COLLECTOR_ADDRESS", ""},
      {"HOST_IP", "10.0.2.15"},
      {"ENABLE_HTTP2_AUTO_DETECTION", "false"},
      {"ENABLE_HTTP_FULL_DUPLEX", "false"},
      {"ROOT_CA", ""},
      {"ENABLE_MULTI_CONTAINER_PROBES", "false"},
  };
  auto r = load_queue_proxy_config(env_of(env), {});
  ASSERT_TRUE(r.config) << (r.errors.empty() ? "" : r.errors[0]);
  EXPECT_FALSE(r.config->local_mode);
  EXPECT_EQ(r.config->container_concurrency, 0u);
  EXPECT_EQ(r.config->revision_name, "hello-00001");
  // The template is always set; with the request log off it is not worth a warning.
  EXPECT_TRUE(r.config->notices.empty()) << r.config->notices[0];
  // Every value a variable of this list can take, empty included, is accepted.
  for (const auto& [name, value] : env) {
    if (name == "USER_PORT" || name == "SERVING_READINESS_PROBE")
      continue;
    auto emptied = env;
    emptied[name] = "";
    auto e = load_queue_proxy_config(env_of(emptied), {});
    // The four with a flag equivalent must have a value (Knative always writes one).
    const bool needs_value = name == "CONTAINER_CONCURRENCY" || name == "QUEUE_SERVING_PORT" ||
                             name == "REVISION_TIMEOUT_SECONDS";
    EXPECT_EQ(e.config.has_value(), !needs_value)
        << name << "=\"\": " << (e.errors.empty() ? "accepted" : e.errors[0]);
  }
}

}  // namespace
}  // namespace sluice::config
