#include "service/service_file.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "config/duration.h"
#include "config/readiness_probe.h"
#include "config/text_guard.h"
#include "config/yaml_tree.h"
#include "core/file.h"

namespace sluice::service {

namespace {

namespace fs = std::filesystem;
using config::YamlNode;
using namespace std::chrono_literals;

constexpr std::string_view kPrefix = "autoscaling.knative.dev/";
// Sluice's own scaling annotations (today one: sluice.dev/keep-alive).
constexpr std::string_view kSluicePrefix = "sluice.dev/";
constexpr std::string_view kKeepAlive = "sluice.dev/keep-alive";
// Largest service file read: Kubernetes objects are limited to about 1.5 MB by etcd.
constexpr size_t kMaxServiceFileBytes = 4 * 1024 * 1024;

// Where problems go, with the file and line they are about.
struct Report {
  std::string file;
  LoadResult& out;
  // A node that is not in the file (a missing key) has no position: line 1 then.
  void error(YamlNode at, std::string_view key, std::string_view what) {
    out.errors.push_back(fmt::format("{}:{}: {}: {}", file, at.line(), key, what));
  }
  void warn(YamlNode at, std::string_view key, std::string_view what) {
    out.warnings.push_back(fmt::format("{}:{}: {}: {}", file, at.line(), key, what));
  }
};

// A map's child, or a missing node when `n` is not a map or lacks the key: a wrong shape
// ("metadata: foo") is an error to report.
YamlNode child(YamlNode n, const char* key) {
  return n.get(key);
}

std::optional<int64_t> to_int(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty())
    return std::nullopt;
  return v;
}

std::optional<double> to_float(std::string_view s) {
  try {
    size_t used = 0;
    const double v = std::stod(std::string(s), &used);
    if (used != s.size() || !std::isfinite(v))
      return std::nullopt;
    return v;
  } catch (...) {
    return std::nullopt;
  }
}

std::optional<bool> to_bool(std::string_view s) {
  if (s == "true")
    return true;
  if (s == "false")
    return false;
  return std::nullopt;
}

// Knative's values, shared by the ConfigMap and the annotations.
struct AutoscalerConfig {
  bool enable_scale_to_zero = true;
  bool allow_zero_initial_scale = false;
  std::optional<int64_t> initial_scale;  // unset: Sluice starts at zero (see README)
  int64_t min_scale = 0;
  std::optional<int64_t> max_scale;  // unset: unbounded, but see ServiceSpec
  int64_t max_scale_limit = 0;
  double target_utilization = 0.7;
  double concurrency_target_default = 100;
  double rps_target_default = 200;
  double target_burst_capacity = 211;
  double max_scale_up_rate = 1000;
  double max_scale_down_rate = 2;
  core::Duration stable_window = 60s;
  double panic_window_percentage = 10;
  double panic_threshold_percentage = 200;
  core::Duration scale_to_zero_grace = 30s;
  core::Duration pod_retention = 0s;
  core::Duration scale_down_delay = 0s;
};

// What a revision's autoscaling annotations set, parsed once while they are validated;
// unset fields fall back to config-autoscaler.
struct Overrides {
  std::optional<autoscaler::Metric> metric;
  std::optional<autoscaler::Aggregation> aggregation;
  std::optional<double> target, target_utilization, target_burst_capacity;
  std::optional<double> panic_window_percentage, panic_threshold_percentage;
  std::optional<core::Duration> window, scale_down_delay, pod_retention;
  std::optional<int64_t> min_scale, max_scale, initial_scale, activation_scale, scale_buffer;
  std::optional<autoscaler::KeepAliveSpec> keep_alive;
};

struct DefaultsConfig {
  int64_t revision_timeout_seconds = 300;
  int64_t max_revision_timeout_seconds = 600;
  int64_t revision_response_start_timeout_seconds = 0;
  int64_t revision_idle_timeout_seconds = 0;
  int64_t container_concurrency = 0;
  int64_t container_concurrency_max_limit = 1000;
};

// A scalar's text; empty for a missing key, a null or a collection.
std::string scalar(YamlNode n) {
  return n.text();
}

// A value checker: parses `text` for `key` and reports what is wrong.
struct Values {
  Report& report;
  YamlNode at;
  std::string key;

  std::optional<int64_t> integer(const std::string& text, int64_t lo, int64_t hi) {
    auto v = to_int(text);
    if (!v) {
      report.error(at, key, fmt::format("\"{}\" is not an integer", text));
    } else if (*v < lo || *v > hi) {
      report.error(at, key,
                   hi >= INT32_MAX ? fmt::format("{} must be at least {}", *v, lo)
                                   : fmt::format("{} is not in [{}, {}]", *v, lo, hi));
      return std::nullopt;
    }
    return v;
  }
  std::optional<double> number(const std::string& text, double lo, double hi) {
    auto v = to_float(text);
    if (!v) {
      report.error(at, key, fmt::format("\"{}\" is not a number", text));
    } else if (*v < lo || *v > hi) {
      report.error(at, key, fmt::format("{} is not in [{}, {}]", text, lo, hi));
      return std::nullopt;
    }
    return v;
  }
  std::optional<core::Duration> duration(const std::string& text,
                                         core::Duration lo,
                                         core::Duration hi,
                                         bool whole_seconds) {
    std::string why;
    auto v = config::parse_duration(text, &why);
    if (!v) {
      report.error(at, key, fmt::format("\"{}\" is not a duration ({})", text, why));
      return std::nullopt;
    }
    if (whole_seconds && v->count() % 1000 != 0) {
      report.error(at, key, fmt::format("{} must be a whole number of seconds", text));
      return std::nullopt;
    }
    if (*v < lo || *v > hi) {
      report.error(
          at, key,
          fmt::format("{} is not in [{}, {}]", text,
                      config::format_duration(std::chrono::duration_cast<config::Millis>(lo)),
                      config::format_duration(std::chrono::duration_cast<config::Millis>(hi))));
      return std::nullopt;
    }
    return *v;
  }
  std::optional<bool> boolean(const std::string& text) {
    auto v = to_bool(text);
    if (!v)
      report.error(at, key, fmt::format("\"{}\" is not true or false", text));
    return v;
  }
};

constexpr core::Duration kHour = std::chrono::hours(1);
constexpr core::Duration kForever = std::chrono::hours(24 * 365);

void parse_autoscaler_configmap(YamlNode data, Report& r, AutoscalerConfig& c) {
  for (const auto& kv : data.entries()) {
    const std::string key = scalar(kv.first);  // "" for a complex key: reported as unknown
    const std::string text = scalar(kv.second);
    Values v{r, kv.first, key};
    if (key == "_example") {
    } else if (key == "pod-autoscaler-class") {
      if (text != "kpa.autoscaling.knative.dev")
        r.error(kv.first, key, "only kpa.autoscaling.knative.dev runs locally");
    } else if (key == "enable-scale-to-zero") {
      if (auto b = v.boolean(text))
        c.enable_scale_to_zero = *b;
    } else if (key == "allow-zero-initial-scale") {
      if (auto b = v.boolean(text))
        c.allow_zero_initial_scale = *b;
    } else if (key == "initial-scale") {
      if (auto i = v.integer(text, 0, INT32_MAX))
        c.initial_scale = *i;
    } else if (key == "min-scale") {
      if (auto i = v.integer(text, 0, INT32_MAX))
        c.min_scale = *i;
    } else if (key == "max-scale") {
      if (auto i = v.integer(text, 0, INT32_MAX))
        c.max_scale = *i;
    } else if (key == "max-scale-limit") {
      if (auto i = v.integer(text, 0, INT32_MAX))
        c.max_scale_limit = *i;
    } else if (key == "container-concurrency-target-percentage") {
      if (auto f = v.number(text, 0, 100)) {
        const double fraction = *f > 1 ? *f / 100 : *f;
        if (fraction <= 0)
          r.error(kv.first, key, fmt::format("{} must be in (0, 100]", text));
        else
          c.target_utilization = fraction;
      }
    } else if (key == "container-concurrency-target-default") {
      if (auto f = v.number(text, 0.01, 1e9))
        c.concurrency_target_default = *f;
    } else if (key == "requests-per-second-target-default") {
      if (auto f = v.number(text, 0.01, 1e9))
        c.rps_target_default = *f;
    } else if (key == "target-burst-capacity") {
      if (auto f = v.number(text, -1, 1e9)) {
        if (*f < 0 && *f != -1)
          r.error(kv.first, key, fmt::format("{} must be ≥ 0 or exactly -1", text));
        else
          c.target_burst_capacity = *f;
      }
    } else if (key == "activator-capacity") {
      v.number(text, 1, 1e9);
    } else if (key == "max-scale-up-rate") {
      if (auto f = v.number(text, 1, 1e9)) {
        if (*f <= 1)
          r.error(kv.first, key, fmt::format("{} must be greater than 1", text));
        else
          c.max_scale_up_rate = *f;
      }
    } else if (key == "max-scale-down-rate") {
      if (auto f = v.number(text, 1, 1e9)) {
        if (*f <= 1)
          r.error(kv.first, key, fmt::format("{} must be greater than 1", text));
        else
          c.max_scale_down_rate = *f;
      }
    } else if (key == "stable-window") {
      if (auto d = v.duration(text, 6s, kHour, true))
        c.stable_window = *d;
    } else if (key == "panic-window-percentage") {
      if (auto f = v.number(text, 1, 100))
        c.panic_window_percentage = *f;
    } else if (key == "panic-threshold-percentage") {
      if (auto f = v.number(text, 0, 1e9))  // not range-checked by Knative's ConfigMap
        c.panic_threshold_percentage = *f;
    } else if (key == "scale-to-zero-grace-period") {
      if (auto d = v.duration(text, 1ms, kForever, false))
        c.scale_to_zero_grace = *d;
    } else if (key == "scale-to-zero-pod-retention-period") {
      if (auto d = v.duration(text, 0s, kForever, false))
        c.pod_retention = *d;
    } else if (key == "scale-down-delay") {
      if (auto d = v.duration(text, 0s, kForever, true))
        c.scale_down_delay = *d;
    } else {
      r.error(kv.first, key, "unknown config-autoscaler key");
    }
  }
}

void parse_defaults_configmap(YamlNode data, Report& r, DefaultsConfig& c) {
  const std::pair<const char*, int64_t*> keys[] = {
      {"revision-timeout-seconds", &c.revision_timeout_seconds},
      {"max-revision-timeout-seconds", &c.max_revision_timeout_seconds},
      {"revision-response-start-timeout-seconds", &c.revision_response_start_timeout_seconds},
      {"revision-idle-timeout-seconds", &c.revision_idle_timeout_seconds},
      {"container-concurrency", &c.container_concurrency},
      {"container-concurrency-max-limit", &c.container_concurrency_max_limit},
  };
  for (const auto& kv : data.entries()) {
    const std::string key = scalar(kv.first);  // "" for a complex key: reported as unknown
    if (key == "_example")
      continue;
    auto it = std::find_if(std::begin(keys), std::end(keys),
                           [&](const auto& k) { return key == k.first; });
    if (it == std::end(keys)) {
      r.error(kv.first, key, "unknown config-defaults key");
      continue;
    }
    Values v{r, kv.first, key};
    if (auto i = v.integer(scalar(kv.second), 0, INT32_MAX))
      *it->second = *i;
  }
}

// The annotation names Knative accepts, with their legacy camelCase aliases.
const std::map<std::string, std::string>& annotation_aliases() {
  static const std::map<std::string, std::string> m = {
      {"class", "class"},
      {"metric", "metric"},
      {"target", "target"},
      {"target-utilization-percentage", "target-utilization-percentage"},
      {"targetUtilizationPercentage", "target-utilization-percentage"},
      {"target-burst-capacity", "target-burst-capacity"},
      {"targetBurstCapacity", "target-burst-capacity"},
      {"window", "window"},
      {"panic-window-percentage", "panic-window-percentage"},
      {"panicWindowPercentage", "panic-window-percentage"},
      {"panic-threshold-percentage", "panic-threshold-percentage"},
      {"panicThresholdPercentage", "panic-threshold-percentage"},
      {"min-scale", "min-scale"},
      {"minScale", "min-scale"},
      {"max-scale", "max-scale"},
      {"maxScale", "max-scale"},
      {"initial-scale", "initial-scale"},
      {"initialScale", "initial-scale"},
      {"activation-scale", "activation-scale"},
      {"scale-down-delay", "scale-down-delay"},
      {"scale-to-zero-pod-retention-period", "scale-to-zero-pod-retention-period"},
      {"metric-aggregation-algorithm", "metric-aggregation-algorithm"},
      {"metricAggregationAlgorithm", "metric-aggregation-algorithm"},
      {"scale-buffer", "scale-buffer"},
  };
  return m;
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string did_you_mean(std::string_view name) {
  std::string best;
  size_t best_d = 4;  // suggest only close matches
  for (const auto& [alias, canonical] : annotation_aliases()) {
    const size_t d = edit_distance(name, alias);
    if (d < best_d) {
      best_d = d;
      best = canonical;
    }
  }
  return best.empty() ? "" : fmt::format(" (did you mean {}{}?)", kPrefix, best);
}

bool dns_label(std::string_view s) {
  if (s.empty() || s.size() > 63 || !std::islower(static_cast<unsigned char>(s.front())) ||
      s.back() == '-')
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::islower(static_cast<unsigned char>(c)) ||
           std::isdigit(static_cast<unsigned char>(c)) || c == '-';
  });
}

// Recursion is bounded: the tree is at most YamlLimits::max_depth deep.
nlohmann::json to_json(YamlNode n) {
  if (n.is_map()) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& kv : n.entries())
      j[kv.first.is_scalar() ? kv.first.text() : "?"] = to_json(kv.second);
    return j;
  }
  if (n.is_sequence()) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& e : n.items()) j.push_back(to_json(e));
    return j;
  }
  if (n.is_scalar()) {
    const std::string& s = n.text();
    if (n.plain()) {  // unquoted: numbers and booleans keep their type
      if (auto i = to_int(s))
        return *i;
      if (auto b = to_bool(s))
        return *b;
    }
    return s;
  }
  return nullptr;
}

std::vector<std::string> string_list(YamlNode n, Report& r, std::string_view key) {
  std::vector<std::string> out;
  if (!n.is_sequence()) {
    r.error(n, key, "must be a list of strings");
    return out;
  }
  for (const auto& e : n.items()) {
    if (!e.is_scalar()) {
      r.error(e, key, "must be a list of strings");
      continue;
    }
    out.push_back(e.text());
  }
  return out;
}

struct Document {
  std::string file;
  std::string folder;
  YamlNode node;
};

class Loader {
 public:
  LoadResult run(const std::vector<std::pair<std::string, std::string>>& files);

 private:
  void service(const Document& d);
  void container(YamlNode c, const Document& d, Report& r, ServiceSpec& s);
  void annotations(YamlNode a, Report& r);
  void check_keys(YamlNode map,
                  Report& r,
                  std::string_view where,
                  std::initializer_list<std::string_view> known,
                  std::initializer_list<std::string_view> ignored = {});

  LoadResult out_;
  std::map<std::string, YamlNode> annotation_keys_;  // canonical name → its key (lines)
  Overrides overrides_;                              // this service's annotations
  AutoscalerConfig as_;
  DefaultsConfig defaults_;
  std::vector<Document> services_;
  std::set<std::string> names_;
  std::deque<config::YamlStream> streams_;  // owns the nodes of every document (stable)
};

void Loader::check_keys(YamlNode map,
                        Report& r,
                        std::string_view where,
                        std::initializer_list<std::string_view> known,
                        std::initializer_list<std::string_view> ignored) {
  for (const auto& kv : map.entries()) {
    const std::string key = scalar(kv.first);  // "" for a complex key: reported as unknown
    const std::string path = fmt::format("{}.{}", where, key);
    if (std::find(known.begin(), known.end(), key) != known.end())
      continue;
    if (std::find(ignored.begin(), ignored.end(), key) != ignored.end()) {
      r.warn(kv.first, path, "ignored by the local runtime");
      continue;
    }
    r.error(kv.first, path, "unknown field");
  }
}

LoadResult Loader::run(const std::vector<std::pair<std::string, std::string>>& files) {
  for (const auto& [path, text] : files) {
    Report r{path, out_};
    if (auto bad = config::check_config_text(text, kMaxServiceFileBytes, /*yaml=*/true)) {
      out_.errors.push_back(fmt::format("{}:{}: file: {}", path, bad->line, bad->what));
      continue;
    }
    config::YamlResult parsed = config::parse_yaml(text, {config::kMaxNesting});
    if (!parsed.stream) {
      out_.errors.push_back(fmt::format("{}:{}: {}", path, parsed.error_line, parsed.error));
      continue;
    }
    const config::YamlStream& stream = streams_.emplace_back(std::move(*parsed.stream));
    const std::string folder = fs::absolute(fs::path(path)).parent_path().string();
    for (const YamlNode doc : stream.documents) {
      if (!doc || doc.is_null())
        continue;
      if (!doc.is_map()) {
        r.error(doc, "document", "must be a mapping (a Kubernetes object)");
        continue;
      }
      const std::string kind = scalar(child(doc, "kind"));
      const std::string api = scalar(child(doc, "apiVersion"));
      const std::string name = scalar(child(child(doc, "metadata"), "name"));
      if (kind == "ConfigMap") {
        const YamlNode data = child(doc, "data");
        if (name == "config-autoscaler" && data && data.is_map()) {
          parse_autoscaler_configmap(data, r, as_);
        } else if (name == "config-defaults" && data && data.is_map()) {
          parse_defaults_configmap(data, r, defaults_);
        } else if (name != "config-autoscaler" && name != "config-defaults") {
          r.warn(doc, "ConfigMap " + name, "not read (only config-autoscaler, config-defaults)");
        }
      } else if (kind == "Service") {
        if (api != "serving.knative.dev/v1") {
          r.error(child(doc, "apiVersion") ? child(doc, "apiVersion") : doc, "apiVersion",
                  fmt::format("\"{}\": a Service must be serving.knative.dev/v1", api));
          continue;
        }
        services_.push_back({path, folder, doc});
      } else {
        r.error(
            child(doc, "kind") ? child(doc, "kind") : doc, "kind",
            fmt::format("\"{}\": expected a serving.knative.dev/v1 Service or a ConfigMap", kind));
      }
    }
  }
  // Cross-checks of the ConfigMap, then every service against it.
  if (as_.max_scale_limit > 0 && as_.max_scale.value_or(0) > as_.max_scale_limit) {
    out_.errors.push_back(
        fmt::format("config-autoscaler: max-scale: max-scale {} > "
                    "max-scale-limit {}",
                    *as_.max_scale, as_.max_scale_limit));
  }
  for (const auto& d : services_) {
    service(d);
  }
  if (out_.errors.empty() && services_.empty())
    out_.errors.push_back("no serving.knative.dev/v1 Service in the input");
  return std::move(out_);
}

void Loader::service(const Document& d) {
  Report r{d.file, out_};
  const YamlNode doc = d.node;
  annotation_keys_.clear();
  overrides_ = {};
  ServiceSpec s;
  s.file = d.file;
  s.line = doc.line();
  check_keys(doc, r, "Service", {"apiVersion", "kind", "metadata", "spec"}, {"status"});
  const YamlNode meta = child(doc, "metadata");
  if (!meta || !meta.is_map() || !child(meta, "name")) {
    r.error(meta ? meta : doc, "metadata.name", "is required");
    return;
  }
  s.name = scalar(child(meta, "name"));
  if (!dns_label(s.name))
    r.error(child(meta, "name"), "metadata.name",
            fmt::format("\"{}\" must be a DNS label (lower-case letters, digits, '-')", s.name));
  if (child(meta, "namespace")) {
    s.namespace_name = scalar(child(meta, "namespace"));
    if (!dns_label(s.namespace_name))
      r.error(child(meta, "namespace"), "metadata.namespace",
              fmt::format("\"{}\" must be a DNS label", s.namespace_name));
  }
  check_keys(meta, r, "metadata", {"name", "namespace"}, {"labels", "annotations"});
  if (!names_.insert(s.namespace_name + "/" + s.name).second)
    r.error(child(meta, "name"), "metadata.name",
            fmt::format("service {}/{} is defined twice", s.namespace_name, s.name));
  s.revision = s.name + "-00001";

  const YamlNode spec = child(doc, "spec");
  const YamlNode tmpl = child(spec, "template");
  if (!tmpl || !tmpl.is_map()) {
    r.error(spec ? spec : doc, "spec.template", "is required");
    return;
  }
  check_keys(spec, r, "spec", {"template"}, {"traffic"});
  check_keys(tmpl, r, "spec.template", {"metadata", "spec"});
  if (const YamlNode tmeta = child(tmpl, "metadata")) {
    check_keys(tmeta, r, "spec.template.metadata", {"annotations", "name"}, {"labels"});
    if (child(tmeta, "name")) {
      s.revision = scalar(child(tmeta, "name"));
      if (!s.revision.starts_with(s.name + "-") || !dns_label(s.revision))
        r.error(
            child(tmeta, "name"), "spec.template.metadata.name",
            fmt::format("\"{}\" must be a DNS label starting with \"{}-\"", s.revision, s.name));
    }
    if (const YamlNode a = child(tmeta, "annotations"))
      annotations(a, r);
  }
  // Defaults from config-defaults, then the revision spec.
  s.container_concurrency = static_cast<uint32_t>(defaults_.container_concurrency);
  s.timeout_seconds = static_cast<int>(defaults_.revision_timeout_seconds);
  s.response_start_timeout_seconds =
      static_cast<int>(defaults_.revision_response_start_timeout_seconds);
  s.idle_timeout_seconds = static_cast<int>(defaults_.revision_idle_timeout_seconds);
  const YamlNode rs = child(tmpl, "spec");
  if (!rs || !rs.is_map()) {
    r.error(tmpl, "spec.template.spec", "is required");
    return;
  }
  check_keys(rs, r, "spec.template.spec",
             {"containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds",
              "idleTimeoutSeconds", "containers"},
             {"serviceAccountName", "enableServiceLinks", "imagePullSecrets", "volumes",
              "nodeSelector", "tolerations", "affinity"});
  auto int_field = [&](const char* key, int64_t lo, int64_t hi) -> std::optional<int64_t> {
    const YamlNode n = child(rs, key);
    if (!n)
      return std::nullopt;
    Values v{r, n, std::string("spec.template.spec.") + key};
    return v.integer(scalar(n), lo, hi);
  };
  if (auto cc = int_field("containerConcurrency", 0, defaults_.container_concurrency_max_limit))
    s.container_concurrency = static_cast<uint32_t>(*cc);
  if (auto t = int_field("timeoutSeconds", 0, defaults_.max_revision_timeout_seconds))
    s.timeout_seconds = static_cast<int>(*t);
  if (auto t = int_field("responseStartTimeoutSeconds", 0, s.timeout_seconds))
    s.response_start_timeout_seconds = static_cast<int>(*t);
  if (auto t = int_field("idleTimeoutSeconds", 0, defaults_.max_revision_timeout_seconds))
    s.idle_timeout_seconds = static_cast<int>(*t);
  const YamlNode cs = child(rs, "containers");
  if (!cs || !cs.is_sequence() || cs.size() != 1) {
    r.error(cs ? cs : rs, "spec.template.spec.containers",
            "exactly one container is supported by the local runtime");
  } else {
    container(cs.items()[0], d, r, s);
  }

  // Autoscaling: ConfigMap values overridden by annotations.
  const Overrides& o = overrides_;
  autoscaler::ScalingSpec& sc = s.scaling;
  sc.metric = o.metric.value_or(autoscaler::Metric::Concurrency);
  sc.aggregation = o.aggregation.value_or(autoscaler::Aggregation::Linear);
  const auto t = autoscaler::resolve_target(
      sc.metric, s.container_concurrency, o.target,
      o.target_utilization ? *o.target_utilization / 100 : as_.target_utilization,
      as_.concurrency_target_default, as_.rps_target_default);
  sc.decider.target = t.target;
  sc.decider.total_target = t.total;
  sc.decider.target_burst_capacity = o.target_burst_capacity.value_or(as_.target_burst_capacity);
  sc.decider.panic_threshold =
      o.panic_threshold_percentage.value_or(as_.panic_threshold_percentage) / 100;
  sc.decider.max_scale_up_rate = as_.max_scale_up_rate;
  sc.decider.max_scale_down_rate = as_.max_scale_down_rate;
  sc.decider.stable_window = o.window.value_or(as_.stable_window);
  sc.panic_window = autoscaler::panic_window_of(
      sc.decider.stable_window, o.panic_window_percentage.value_or(as_.panic_window_percentage));
  sc.decider.activation_scale = static_cast<int32_t>(o.activation_scale.value_or(1));
  sc.decider.scale_down_delay = o.scale_down_delay.value_or(as_.scale_down_delay);
  sc.min_scale = static_cast<int32_t>(o.min_scale.value_or(as_.min_scale));
  sc.max_scale = static_cast<int32_t>(o.max_scale.value_or(as_.max_scale.value_or(0)));
  s.max_scale_declared = o.max_scale.has_value() || as_.max_scale.has_value();
  const std::optional<int64_t> initial = o.initial_scale ? o.initial_scale : as_.initial_scale;
  sc.initial_scale = static_cast<int32_t>(initial.value_or(0));
  s.initial_scale_declared = initial.has_value();
  sc.scale_buffer = static_cast<int32_t>(o.scale_buffer.value_or(0));
  sc.enable_scale_to_zero = as_.enable_scale_to_zero;
  sc.scale_to_zero_grace = as_.scale_to_zero_grace;
  sc.pod_retention = o.pod_retention.value_or(as_.pod_retention);
  sc.keep_alive = o.keep_alive.value_or(autoscaler::KeepAliveSpec{});

  // Rules that relate several values.
  auto where_is = [&](const char* canonical) {
    auto it = annotation_keys_.find(canonical);
    return it != annotation_keys_.end() ? it->second : tmpl;
  };
  const std::string min_key = std::string(kPrefix) + "min-scale";
  if (sc.max_scale > 0 && sc.min_scale > sc.max_scale)
    r.error(where_is(o.min_scale ? "min-scale" : "max-scale"), min_key,
            fmt::format("min-scale {} > max-scale {}", sc.min_scale, sc.max_scale));
  if (as_.max_scale_limit > 0 && sc.max_scale > as_.max_scale_limit)
    r.error(where_is("max-scale"), std::string(kPrefix) + "max-scale",
            fmt::format("max-scale {} > max-scale-limit {}", sc.max_scale, as_.max_scale_limit));
  if (as_.max_scale_limit > 0 && sc.max_scale == 0 && o.max_scale)
    r.error(where_is("max-scale"), std::string(kPrefix) + "max-scale",
            fmt::format("max-scale 0 (unbounded) exceeds max-scale-limit {}", as_.max_scale_limit));
  if (o.initial_scale == 0 && !as_.allow_zero_initial_scale)
    r.error(where_is("initial-scale"), std::string(kPrefix) + "initial-scale",
            "initial-scale 0 needs allow-zero-initial-scale: \"true\" in config-autoscaler");
  if (o.activation_scale) {
    const int32_t act = sc.decider.activation_scale;
    if (act < sc.min_scale || (sc.max_scale > 0 && act > sc.max_scale))
      r.error(where_is("activation-scale"), std::string(kPrefix) + "activation-scale",
              fmt::format("activation-scale {} must be between min-scale {} and max-scale {}", act,
                          sc.min_scale, sc.max_scale));
  }
  if (s.container.port) {
    // One process per port on one machine: the runtime never runs more than one.
    for (auto [name, value] :
         {std::pair{"min-scale", sc.min_scale}, std::pair{"initial-scale", sc.initial_scale},
          std::pair{"activation-scale", sc.decider.activation_scale}}) {
      if (value > 1)
        r.warn(where_is(name), std::string(kPrefix) + name,
               fmt::format("{} replicas cannot share containerPort {} on one machine: one runs "
                           "(leave out ports to let Sluice pick a port per replica)",
                           value, *s.container.port));
    }
  }
  if (s.response_start_timeout_seconds > s.timeout_seconds)
    r.error(
        rs, "spec.template.spec.responseStartTimeoutSeconds",
        fmt::format("{} > timeoutSeconds {}", s.response_start_timeout_seconds, s.timeout_seconds));
  out_.services.push_back(std::move(s));
}

void Loader::annotations(YamlNode a, Report& r) {
  if (!a.is_map()) {
    r.error(a, "spec.template.metadata.annotations", "must be a map of strings");
    return;
  }
  for (const auto& kv : a.entries()) {
    const std::string key = scalar(kv.first);  // "" for a complex key: reported as unknown
    if (key.starts_with(kSluicePrefix)) {
      if (key != kKeepAlive) {
        r.error(kv.first, key,
                fmt::format("unknown Sluice annotation (the one there is: {})", kKeepAlive));
        continue;
      }
      std::string why;
      if (auto k = autoscaler::parse_keep_alive(scalar(kv.second), &why))
        overrides_.keep_alive = *k;
      else
        r.error(kv.first, key, why);
      continue;
    }
    if (!key.starts_with(kPrefix))
      continue;  // other annotations are the user's business
    const std::string name = key.substr(kPrefix.size());
    const std::string text = scalar(kv.second);
    const auto& aliases = annotation_aliases();
    auto it = aliases.find(name);
    if (it == aliases.end()) {
      r.error(kv.first, key, "unknown autoscaling annotation" + did_you_mean(name));
      continue;
    }
    const std::string& canonical = it->second;
    if (annotation_keys_.count(canonical)) {
      r.error(kv.first, key, fmt::format("set twice (also as {}{})", kPrefix, canonical));
      continue;
    }
    annotation_keys_[canonical] = kv.first;
    Values v{r, kv.first, key};
    Overrides& o = overrides_;
    if (canonical == "class") {
      if (text != "kpa.autoscaling.knative.dev")
        r.error(kv.first, key,
                fmt::format("\"{}\": only kpa.autoscaling.knative.dev runs locally", text));
    } else if (canonical == "metric") {
      if (text == "concurrency" || text == "rps")
        o.metric = text == "rps" ? autoscaler::Metric::Rps : autoscaler::Metric::Concurrency;
      else
        r.error(
            kv.first, key,
            fmt::format("\"{}\" must be concurrency or rps (cpu and memory need the HPA)", text));
    } else if (canonical == "target") {
      o.target = v.number(text, 0.01, 1e9);
    } else if (canonical == "target-utilization-percentage") {
      o.target_utilization = v.number(text, 1, 100);
    } else if (canonical == "target-burst-capacity") {
      auto f = v.number(text, -1, 1e9);
      if (f && *f < 0 && *f != -1)
        r.error(kv.first, key, fmt::format("{} must be ≥ 0 or exactly -1", text));
      else
        o.target_burst_capacity = f;
    } else if (canonical == "window") {
      o.window = v.duration(text, 6s, kHour, true);
    } else if (canonical == "panic-window-percentage") {
      o.panic_window_percentage = v.number(text, 1, 100);
    } else if (canonical == "panic-threshold-percentage") {
      o.panic_threshold_percentage = v.number(text, 110, 1000);
    } else if (canonical == "min-scale") {
      o.min_scale = v.integer(text, 0, INT32_MAX);
    } else if (canonical == "max-scale") {
      o.max_scale = v.integer(text, 0, INT32_MAX);
    } else if (canonical == "scale-buffer") {
      o.scale_buffer = v.integer(text, 0, INT32_MAX);
    } else if (canonical == "initial-scale") {
      o.initial_scale = v.integer(text, 0, INT32_MAX);
    } else if (canonical == "activation-scale") {
      o.activation_scale = v.integer(text, 2, INT32_MAX);
    } else if (canonical == "scale-down-delay") {
      o.scale_down_delay = v.duration(text, 0s, kHour, true);
    } else if (canonical == "scale-to-zero-pod-retention-period") {
      o.pod_retention = v.duration(text, 0s, kForever, false);
    } else if (canonical == "metric-aggregation-algorithm") {
      if (text == "linear")
        o.aggregation = autoscaler::Aggregation::Linear;
      else if (text == "weighted-exponential" || text == "weightedExponential")
        o.aggregation = autoscaler::Aggregation::WeightedExponential;
      else
        r.error(kv.first, key, fmt::format("\"{}\" must be linear or weighted-exponential", text));
    }
  }
}

void Loader::container(YamlNode c, const Document& d, Report& r, ServiceSpec& s) {
  const std::string at = "spec.template.spec.containers[0]";
  if (!c.is_map()) {
    r.error(c, at, "must be a map");
    return;
  }
  check_keys(c, r, at,
             {"name", "image", "command", "args", "env", "workingDir", "ports", "readinessProbe"},
             {"resources", "imagePullPolicy", "livenessProbe", "startupProbe", "securityContext",
              "volumeMounts", "terminationMessagePolicy"});
  ContainerSpec& k = s.container;
  if (!child(c, "command")) {
    r.error(c, at + ".command",
            child(c, "image")
                ? fmt::format("the local runtime runs commands, not images: add "
                              "`command:` (and `args:`) that start {} on this machine",
                              scalar(child(c, "image")))
                : std::string("is required (the local runtime runs a command)"));
    return;
  }
  k.command = string_list(child(c, "command"), r, at + ".command");
  if (child(c, "args")) {
    auto args = string_list(child(c, "args"), r, at + ".args");
    k.command.insert(k.command.end(), args.begin(), args.end());
  }
  if (k.command.empty() || k.command.front().empty()) {
    r.error(child(c, "command"), at + ".command", "must name a program");
    return;
  }
  k.working_dir = d.folder;
  if (child(c, "workingDir")) {
    fs::path wd = scalar(child(c, "workingDir"));
    k.working_dir = (wd.is_absolute() ? wd : fs::path(d.folder) / wd).lexically_normal();
    if (!fs::is_directory(k.working_dir))
      r.error(child(c, "workingDir"), at + ".workingDir",
              fmt::format("{} is not a directory", k.working_dir));
  }
  // A relative program path resolves against the YAML file's folder.
  std::string& program = k.command.front();
  if (program.find('/') != std::string::npos && !fs::path(program).is_absolute())
    program = (fs::path(d.folder) / program).lexically_normal().string();
  if (const YamlNode env = child(c, "env")) {
    if (!env.is_sequence()) {
      r.error(env, at + ".env", "must be a list of {name, value}");
    } else {
      for (const auto& e : env.items()) {
        if (!e.is_map() || !child(e, "name")) {
          r.error(e, at + ".env", "each entry needs a name");
          continue;
        }
        if (child(e, "valueFrom")) {
          r.error(child(e, "valueFrom"), at + ".env." + scalar(child(e, "name")) + ".valueFrom",
                  "not supported by the local runtime: use value");
          continue;
        }
        k.env.emplace_back(scalar(child(e, "name")), scalar(child(e, "value")));
      }
    }
  }
  if (const YamlNode ports = child(c, "ports")) {
    if (!ports.is_sequence() || ports.size() > 1) {
      r.error(ports, at + ".ports", "at most one port (the one Sluice routes to)");
    } else if (ports.size() == 1) {
      const YamlNode port = child(ports.items()[0], "containerPort");
      // Knative's port names: h2c (the app speaks HTTP/2 cleartext; gRPC needs it) or
      // http1; a named port may leave the number to Sluice.
      const YamlNode name = child(ports.items()[0], "name");
      if (name) {
        const std::string n = scalar(name);
        if (n == "h2c") {
          k.h2c = true;
        } else if (n != "http1") {
          r.error(name, at + ".ports[0].name", "\"" + n + "\": expected h2c or http1");
        }
      }
      if (!port && !name) {
        r.error(ports.items()[0], at + ".ports[0].containerPort", "is required");
      } else if (port) {
        Values v{r, port, at + ".ports[0].containerPort"};
        if (auto p = v.integer(scalar(port), 1, 65535))
          k.port = static_cast<uint16_t>(*p);
      }
    }
  }
  if (const YamlNode probe = child(c, "readinessProbe")) {
    k.readiness_probe_json = to_json(probe).dump();
    auto parsed = config::parse_readiness_probe(k.readiness_probe_json, k.port.value_or(1));
    if (!parsed.error.empty())
      r.error(probe, at + ".readinessProbe", parsed.error);
  }
}

}  // namespace

LoadResult load_service_texts(const std::vector<std::pair<std::string, std::string>>& files) {
  return Loader().run(files);
}

AnnotationScaling scaling_from_annotations(const std::map<std::string, std::string>& annotations,
                                           const std::map<std::string, std::string>& config,
                                           uint32_t container_concurrency) {
  // The same Loader on a synthetic input (JSON is YAML): the Service's annotations all on
  // line 7, the ConfigMap after line 9, so each message says what it is about.
  nlohmann::json a = nlohmann::json::object();
  for (const auto& [k, v] : annotations)
    if (k.starts_with(kPrefix) || k == kKeepAlive)
      a[k] = v;
  const nlohmann::json data(config);
  const std::string text = fmt::format(
      "apiVersion: serving.knative.dev/v1\n"
      "kind: Service\n"
      "metadata: {{name: pa}}\n"
      "spec:\n"
      "  template:\n"
      "    metadata:\n"
      "      annotations: {}\n"
      "    spec: {{containerConcurrency: {}, containers: [{{command: [sluice]}}]}}\n"
      "---\n"
      "{{apiVersion: v1, kind: ConfigMap, metadata: {{name: config-autoscaler}}, data: {}}}\n",
      a.dump(), container_concurrency, data.dump());
  LoadResult loaded = load_service_texts({{"PodAutoscaler", text}});
  AnnotationScaling out;
  if (!loaded.services.empty()) {
    const ServiceSpec& svc = loaded.services.front();
    out.scaling = svc.scaling;
    out.initial_scale = svc.initial_scale_declared ? svc.scaling.initial_scale : 1;
  }
  for (const std::string& e : loaded.errors) {
    if (e.starts_with("config-autoscaler: ")) {
      out.config_errors.push_back(e);
      continue;
    }
    // "PodAutoscaler:LINE: KEY: what"
    const size_t colon = e.find(':', sizeof "PodAutoscaler");
    const int line = colon == std::string::npos ? 0 : std::atoi(e.c_str() + sizeof "PodAutoscaler");
    const std::string what = colon == std::string::npos ? e : e.substr(colon + 2);
    (line >= 10 ? out.config_errors : out.errors).push_back(what);
  }
  if (loaded.services.empty() && out.errors.empty())
    out.errors.push_back("annotations: not understood");
  return out;
}

LoadResult load_service_files(const std::vector<std::string>& paths) {
  std::vector<std::pair<std::string, std::string>> files;
  LoadResult failed;
  for (const auto& p : paths) {
    core::FileText read = core::read_file(p, kMaxServiceFileBytes, "not a Service file");
    if (!read.text) {
      failed.errors.push_back(fmt::format("{}: {}", p, read.error));
      continue;
    }
    files.emplace_back(p, std::move(*read.text));
  }
  if (!failed.errors.empty())
    return failed;
  return load_service_texts(files);
}

}  // namespace sluice::service
