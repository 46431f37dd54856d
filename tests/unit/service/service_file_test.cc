#include "service/service_file.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace sluice::service {
namespace {

using namespace std::chrono_literals;

LoadResult load(const std::string& yaml) {
  return load_service_texts({{"/srv/app/service.yaml", yaml}});
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += s + "\n";
  return out;
}

const char* kHello = R"(apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/target: "4"
    spec:
      containerConcurrency: 10
      containers:
        - command: ["python3", "app.py"]
          env:
            - name: GREETING
              value: hi
)";

TEST(ServiceFileTest, AMinimalServiceGetsKnativesDefaults) {
  const LoadResult r = load(kHello);
  ASSERT_TRUE(r.errors.empty()) << joined(r.errors);
  ASSERT_EQ(r.services.size(), 1u);
  const ServiceSpec& s = r.services[0];
  EXPECT_EQ(s.name, "hello");
  EXPECT_EQ(s.namespace_name, "default");
  EXPECT_EQ(s.revision, "hello-00001");
  EXPECT_EQ(s.container_concurrency, 10u);
  EXPECT_EQ(s.timeout_seconds, 300);
  EXPECT_EQ(s.container.command, (std::vector<std::string>{"python3", "app.py"}));
  EXPECT_EQ(s.container.working_dir, "/srv/app") << "relative to the YAML file's folder";
  EXPECT_FALSE(s.container.port.has_value()) << "Sluice picks one";
  ASSERT_EQ(s.container.env.size(), 1u);
  EXPECT_EQ(s.container.env[0].second, "hi");
  // target 4 (≤ CC 10) × 0.7; stable window 60 s, panic 6 s; starts at zero.
  EXPECT_DOUBLE_EQ(s.scaling.decider.target, 2.8);
  EXPECT_DOUBLE_EQ(s.scaling.decider.total_target, 4);
  EXPECT_EQ(s.scaling.decider.stable_window, 60s);
  EXPECT_EQ(s.scaling.panic_window, 6s);
  EXPECT_EQ(s.scaling.initial_scale, 0);
  EXPECT_DOUBLE_EQ(s.scaling.decider.target_burst_capacity, 211);
  EXPECT_DOUBLE_EQ(s.scaling.decider.panic_threshold, 2.0);
}

// Whether a max-scale was given at all (sluice run caps the others): "0" counts, as an
// explicit unbounded; the ConfigMap's counts for every service.
TEST(ServiceFileTest, AMaxScaleIsDeclaredByAnAnnotationOrTheConfigMapEvenAsZero) {
  const LoadResult none = load(kHello);
  ASSERT_TRUE(none.errors.empty()) << joined(none.errors);
  EXPECT_FALSE(none.services[0].max_scale_declared);
  EXPECT_EQ(none.services[0].scaling.max_scale, 0);

  std::string zero = kHello;
  const std::string target = "        autoscaling.knative.dev/target: \"4\"\n";
  zero.replace(zero.find(target), target.size(),
               target + "        autoscaling.knative.dev/max-scale: \"0\"\n");
  const LoadResult annotated = load(zero);
  ASSERT_TRUE(annotated.errors.empty()) << joined(annotated.errors);
  EXPECT_TRUE(annotated.services[0].max_scale_declared);
  EXPECT_EQ(annotated.services[0].scaling.max_scale, 0);

  const LoadResult configured = load(
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-autoscaler\ndata:\n"
      "  max-scale: \"12\"\n---\n" +
      std::string(kHello));
  ASSERT_TRUE(configured.errors.empty()) << joined(configured.errors);
  EXPECT_TRUE(configured.services[0].max_scale_declared);
  EXPECT_EQ(configured.services[0].scaling.max_scale, 12);
}

TEST(ServiceFileTest, ConfigMapsAndAnnotationsSetTheScaling) {
  const std::string dir = ::testing::TempDir() + "service-file-test";
  std::filesystem::create_directories(dir + "/bin");
  const LoadResult r = load_service_texts({{dir + "/service.yaml", R"(apiVersion: v1
kind: ConfigMap
metadata:
  name: config-autoscaler
data:
  stable-window: "6s"
  scale-to-zero-grace-period: "2s"
  container-concurrency-target-percentage: "50"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: config-defaults
data:
  revision-timeout-seconds: "30"
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: api
  namespace: team
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/minScale: "1"
        autoscaling.knative.dev/max-scale: "5"
        autoscaling.knative.dev/scale-buffer: "2"
        autoscaling.knative.dev/metric-aggregation-algorithm: weighted-exponential
        autoscaling.knative.dev/scale-down-delay: "10s"
        sluice.dev/keep-alive: fixed:10m
    spec:
      containers:
        - command: ["./server", "--fast"]
          workingDir: bin
          ports:
            - containerPort: 9000
          readinessProbe:
            httpGet:
              path: /ready
)"}});
  ASSERT_TRUE(r.errors.empty()) << joined(r.errors);
  const ServiceSpec& s = r.services.at(0);
  EXPECT_EQ(s.namespace_name, "team");
  EXPECT_EQ(s.timeout_seconds, 30);
  EXPECT_EQ(s.scaling.decider.stable_window, 6s);
  EXPECT_EQ(s.scaling.panic_window, 1s);
  EXPECT_EQ(s.scaling.scale_to_zero_grace, 2s);
  EXPECT_DOUBLE_EQ(s.scaling.decider.target, 50) << "CC 0: 100 × 50%";
  EXPECT_EQ(s.scaling.min_scale, 1);
  EXPECT_EQ(s.scaling.max_scale, 5);
  EXPECT_EQ(s.scaling.scale_buffer, 2);
  EXPECT_EQ(s.scaling.aggregation, autoscaler::Aggregation::WeightedExponential);
  EXPECT_EQ(s.scaling.decider.scale_down_delay, 10s);
  EXPECT_EQ(s.scaling.keep_alive.mode, autoscaler::KeepAliveSpec::Mode::Fixed);
  EXPECT_EQ(s.scaling.keep_alive.fixed, 10min);
  EXPECT_EQ(s.container.command.front(), dir + "/server") << "relative to the YAML's folder";
  EXPECT_EQ(s.container.working_dir, dir + "/bin");
  EXPECT_EQ(s.container.port, 9000);
  EXPECT_NE(s.container.readiness_probe_json.find("\"/ready\""), std::string::npos);
}

// Each bad input and the message that names it.
TEST(ServiceFileTest, ValidationMessagesNameFileLineKeyAndRule) {
  const std::string head = R"(apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    metadata:
      annotations:
)";
  const std::string body = R"(    spec:
      containers:
        - command: ["python3", "app.py"]
)";
  const std::pair<std::string, std::string> cases[] = {
      {"        autoscaling.knative.dev/min-scale: \"5\"\n"
       "        autoscaling.knative.dev/max-scale: \"2\"\n",
       "/srv/app/service.yaml:9: autoscaling.knative.dev/min-scale: min-scale 5 > max-scale 2"},
      {"        autoscaling.knative.dev/min-scael: \"1\"\n",
       "/srv/app/service.yaml:9: autoscaling.knative.dev/min-scael: unknown autoscaling "
       "annotation (did you mean autoscaling.knative.dev/min-scale?)"},
      {"        autoscaling.knative.dev/window: \"3s\"\n",
       "/srv/app/service.yaml:9: autoscaling.knative.dev/window: 3s is not in [6s, 3600s]"},
      {"        autoscaling.knative.dev/target-utilization-percentage: \"120\"\n",
       "autoscaling.knative.dev/target-utilization-percentage: 120 is not in [1, 100]"},
      {"        autoscaling.knative.dev/panic-threshold-percentage: \"100\"\n",
       "autoscaling.knative.dev/panic-threshold-percentage: 100 is not in [110, 1000]"},
      {"        autoscaling.knative.dev/metric: cpu\n",
       "autoscaling.knative.dev/metric: \"cpu\" must be concurrency or rps"},
      {"        autoscaling.knative.dev/max-scale: lots\n",
       "autoscaling.knative.dev/max-scale: \"lots\" is not an integer"},
      {"        autoscaling.knative.dev/target-burst-capacity: \"-2\"\n",
       "target-burst-capacity: -2 is not in [-1,"},
      {"        autoscaling.knative.dev/initial-scale: \"0\"\n",
       "initial-scale 0 needs allow-zero-initial-scale"},
      {"        autoscaling.knative.dev/activation-scale: \"1\"\n",
       "autoscaling.knative.dev/activation-scale: 1 must be at least 2"},
      {"        sluice.dev/keep-alive: always\n",
       "/srv/app/service.yaml:9: sluice.dev/keep-alive: \"always\": one of kpa, fixed:DURATION"},
      {"        sluice.dev/keep-alive: fixed:0s\n",
       "sluice.dev/keep-alive: \"fixed:0s\": the keep-alive after fixed: must be a positive "
       "duration"},
      {"        sluice.dev/keepalive: histogram\n",
       "sluice.dev/keepalive: unknown Sluice annotation (the one there is: "
       "sluice.dev/keep-alive)"},
  };
  for (const auto& [annotations, message] : cases) {
    const LoadResult r = load(head + annotations + body);
    EXPECT_NE(joined(r.errors).find(message), std::string::npos)
        << "want: " << message << "\ngot:\n"
        << joined(r.errors);
  }
}

TEST(ServiceFileTest, StructuralMistakes) {
  const std::pair<std::string, std::string> cases[] = {
      {"apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: hello\nspec:\n"
       "  template:\n    spec:\n      containers:\n        - image: ghcr.io/me/hello\n",
       "service.yaml:9: spec.template.spec.containers[0].command: the local runtime runs "
       "commands, not images"},
      {"apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: Hello\nspec:\n"
       "  template:\n    spec:\n      containers:\n        - command: [a]\n",
       "service.yaml:4: metadata.name: \"Hello\" must be a DNS label"},
      {"apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: hello\nspec:\n"
       "  template:\n    spec:\n      containerConcurency: 3\n      containers:\n"
       "        - command: [a]\n",
       "service.yaml:8: spec.template.spec.containerConcurency: unknown field"},
      {"apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: hello\nspec:\n"
       "  template:\n    spec:\n      timeoutSeconds: 900\n      containers:\n"
       "        - command: [a]\n",
       "spec.template.spec.timeoutSeconds: 900 is not in [0, 600]"},
      {"apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: hello\nspec:\n"
       "  template:\n    spec:\n      containers:\n        - command: [a]\n          ports:\n"
       "            - containerPort: 70000\n",
       "containers[0].ports[0].containerPort: 70000 is not in [1, 65535]"},
      {"apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: hello\n"
       "spec: [unclosed\n",
       "service.yaml:6: YAML syntax error"},
      {"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-autoscaler\ndata:\n"
       "  stable-windw: 10s\n",
       "service.yaml:6: stable-windw: unknown config-autoscaler key"},
      {"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n",
       "service.yaml:2: kind: \"Deployment\": expected a serving.knative.dev/v1 Service"},
  };
  for (const auto& [yaml, message] : cases) {
    const LoadResult r = load(yaml);
    EXPECT_NE(joined(r.errors).find(message), std::string::npos)
        << "want: " << message << "\ngot:\n"
        << joined(r.errors);
  }
}

TEST(ServiceFileTest, IgnoredFieldsAreWarningsNotErrors) {
  const LoadResult r = load(std::string(kHello) +
                            "          resources:\n            limits:\n"
                            "              cpu: \"1\"\n");
  EXPECT_TRUE(r.errors.empty()) << joined(r.errors);
  EXPECT_NE(joined(r.warnings).find("resources: ignored by the local runtime"), std::string::npos)
      << joined(r.warnings);
}

// Every field of a file that uses them all, missing or holding the wrong kind of YAML
// value, gives errors (or a service), never an exception: `sluice run` must name what is
// wrong instead of aborting.
TEST(ServiceFileTest, AnyFieldMissingOrOfTheWrongKindIsReportedNotThrown) {
  const std::string full = R"(apiVersion: v1
kind: ConfigMap
metadata:
  name: config-autoscaler
data:
  stable-window: 30s
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: config-defaults
data:
  container-concurrency: "2"
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
  namespace: demo
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/target: "4"
        autoscaling.knative.dev/min-scale: "0"
    spec:
      containerConcurrency: 10
      timeoutSeconds: 60
      responseStartTimeoutSeconds: 30
      idleTimeoutSeconds: 0
      containers:
        - name: app
          command: ["python3", "app.py"]
          args: ["--quiet"]
          workingDir: /
          env:
            - name: GREETING
              value: hi
          ports:
            - containerPort: 8081
          readinessProbe:
            periodSeconds: 1
            httpGet:
              path: /healthz
              port: 8081
              httpHeaders:
                - name: X-Probe
                  value: "1"
)";
  std::vector<std::string> lines;
  for (size_t at = 0, nl; at < full.size(); at = nl + 1) {
    nl = full.find('\n', at);
    lines.push_back(full.substr(at, nl - at));
  }
  ASSERT_TRUE(load(full).errors.empty()) << joined(load(full).errors);
  const char* replacements[] = {"~", "[]", "{}", "[a, b]", "{a: b}", "x", "-3", "\"\""};
  int variants = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    std::vector<std::string> mutated_lines;
    mutated_lines.push_back("");  // the line dropped
    const auto colon = line.find(": ");
    const auto dash = line.find("- ");
    const size_t value_at = colon != std::string::npos  ? colon + 2
                            : dash != std::string::npos ? dash + 2
                                                        : std::string::npos;
    if (value_at != std::string::npos)
      for (const char* r : replacements) mutated_lines.push_back(line.substr(0, value_at) + r);
    else if (line.back() == ':')
      for (const char* r : replacements) mutated_lines.push_back(line + " " + r);
    for (const auto& mutated : mutated_lines) {
      std::string text;
      for (size_t j = 0; j < lines.size(); ++j) text += (j == i ? mutated : lines[j]) + "\n";
      ++variants;
      LoadResult r;
      EXPECT_NO_THROW(r = load(text)) << "line " << i + 1 << " as `" << mutated << "`";
      EXPECT_TRUE(!r.errors.empty() || !r.services.empty())
          << "line " << i + 1 << " as `" << mutated << "`: neither a service nor an error";
    }
  }
  EXPECT_GT(variants, 300);
}

// Inputs that escaped as exceptions ("internal error", exit 70) or made yaml-cpp 0.7
// allocate without limit (","): each is a FILE:LINE: KEY: rule error now that libyaml
// parses (config/yaml_tree.h).
TEST(ServiceFileTest, HostileAndOddFilesAreErrorsWithALine) {
  struct Case {
    std::string yaml;
    std::string expect;
  };
  const std::string head = "apiVersion: serving.knative.dev/v1\nkind: Service\n";
  const std::vector<Case> cases = {
      {",", "service.yaml:1: YAML syntax error"},
      {"a: 1\n,\n", "service.yaml:2: YAML syntax error"},
      {"[", "YAML syntax error"},
      {"kind: Service\n", "service.yaml:1: apiVersion: \"\": a Service must be"},
      {"metadata: foo\n", "kind"},
      {head + "metadata: foo\n", "metadata.name: is required"},
      {head + "metadata: {name: x}\nspec: {template: {spec: {containers: [{command: [a], "
              "ports: [8080]}]}}}\n",
       "ports[0].containerPort: is required"},
      {head + "metadata: {name: x}\nspec: {template: {spec: {containers: [{command: [a], "
              "readinessProbe: {httpGet: {path: \"/\xff\xfe\"}}}]}}}\n",
       "service.yaml:4: file: not valid UTF-8"},
      {"a: " + std::string(100000, '[') + std::string(100000, ']') + "\n",
       "service.yaml:1: file: nested more than 64 levels deep"},
      {head + "metadata: {name: x}\nspec: {template: {spec: {containers: [{command: [a], "
              "readinessProbe: {httpGet: {[a]: b}}}]}}}\n",
       ""},
      // A complex key (found by fuzz_service): yaml-cpp threw "bad conversion".
      {head + "metadata:\n  name: x\nspec:\n  template:\n    metadata:\n     ? annotations:\n", ""},
      {head + "metadata:\n  ? [name]\n  : x\n", ""},
      // yaml-cpp 0.7 allocated without bound on this one (fuzz_service timeout).
      {"!v ;;;,;;v\n", "service.yaml:1: document: must be a mapping"},
      {head + "kind: Service\n", "service.yaml:3: YAML error: duplicate key \"kind\""},
      {head + "metadata:\n" +
           [] {
             std::string s;
             for (int i = 2; i < 80; ++i) s += std::string(i, ' ') + "k:\n";
             return s;
           }(),
       "YAML error: nested deeper than 64 levels"},
  };
  for (const auto& c : cases) {
    LoadResult r;
    ASSERT_NO_THROW(r = load(c.yaml)) << c.yaml.substr(0, 200);
    if (c.expect.empty())
      continue;  // only: no exception
    ASSERT_FALSE(r.errors.empty()) << c.yaml.substr(0, 200);
    EXPECT_NE(joined(r.errors).find(c.expect), std::string::npos) << c.yaml.substr(0, 200) << "\n"
                                                                  << joined(r.errors);
  }
}

TEST(ServiceFileTest, SeveralReplicasOnAFixedPortAreAWarning) {
  const LoadResult r = load(
      "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: hello\nspec:\n"
      "  template:\n    metadata:\n      annotations:\n"
      "        autoscaling.knative.dev/min-scale: \"3\"\n    spec:\n      containers:\n"
      "        - command: [a]\n          ports:\n            - containerPort: 8081\n");
  EXPECT_TRUE(r.errors.empty()) << joined(r.errors);
  EXPECT_NE(joined(r.warnings)
                .find("service.yaml:9: autoscaling.knative.dev/min-scale: 3 "
                      "replicas cannot share containerPort 8081"),
            std::string::npos)
      << joined(r.warnings);
}

TEST(ServiceFileTest, TheBundledExampleIsValid) {
  const LoadResult r =
      load_service_files({std::string(SLUICE_SOURCE_DIR) + "/examples/hello/service.yaml"});
  ASSERT_TRUE(r.errors.empty()) << joined(r.errors);
  ASSERT_EQ(r.services.size(), 1u);
  EXPECT_EQ(r.services[0].scaling.decider.stable_window, 6s);
  EXPECT_DOUBLE_EQ(r.services[0].scaling.decider.target, 1.4);
}

}  // namespace
}  // namespace sluice::service
