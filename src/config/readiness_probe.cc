#include "config/readiness_probe.h"

#include <nlohmann/json.hpp>

#include "config/text_guard.h"

namespace sluice::config {

namespace {

using nlohmann::json;

// A probe port is an IntOrString; Knative writes a number, a string of digits is accepted.
bool read_port(const json& j, uint16_t default_port, uint16_t& out, std::string& error) {
  if (!j.contains("port")) {
    out = default_port;
    return true;
  }
  const json& p = j["port"];
  long value = -1;
  if (p.is_number_integer()) {
    value = p.get<long>();
  } else if (p.is_string()) {
    const std::string s = p.get<std::string>();
    if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos && s.size() < 6) {
      value = std::stol(s);
    } else {
      error = "probe port \"" + s + "\" is a named port; Sluice needs a number";
      return false;
    }
  }
  if (value == 0 && default_port != 0)
    value = default_port;
  if (value <= 0 || value > 65535) {
    error = "probe port " + p.dump() + " is not in 1..65535";
    return false;
  }
  out = static_cast<uint16_t>(value);
  return true;
}

// Kubernetes' probe fields are int32; Knative's webhook allows 0 for the period and
// timeout (aggressive probing) and Kubernetes requires thresholds of at least 1 (0 here
// means "not set"). `max` bounds what the prober turns into timer durations.
bool read_int(const json& j, const char* key, int64_t max, int& out, std::string& error) {
  if (!j.contains(key))
    return true;
  const json& v = j[key];
  // An unsigned JSON number above INT64_MAX reads back negative as int64: check the kind.
  const bool in_range = v.is_number_unsigned()  ? v.get<uint64_t>() <= static_cast<uint64_t>(max)
                        : v.is_number_integer() ? v.get<int64_t>() >= 0 && v.get<int64_t>() <= max
                                                : false;
  if (!in_range) {
    error = std::string("probe field ") + key + " must be an integer in 0.." + std::to_string(max) +
            ", got " + v.dump();
    return false;
  }
  out = static_cast<int>(v.get<int64_t>());
  return true;
}

bool read_seconds(const json& j, const char* key, std::chrono::seconds& out, std::string& error) {
  int s = 0;
  if (!read_int(j, key, kMaxProbeSeconds, s, error))
    return false;
  if (j.contains(key))
    out = std::chrono::seconds(s);
  return true;
}

bool parse_one(const json& j, uint16_t default_port, ProbeSpec& spec, std::string& error) {
  if (!j.is_object()) {
    error = "probe must be a JSON object, got " + std::string(j.type_name());
    return false;
  }
  if (j.contains("httpGet")) {
    const json& h = j["httpGet"];
    spec.kind = ProbeSpec::Kind::Http;
    if (!read_port(h, default_port, spec.port, error))
      return false;
    if (h.contains("host") && h["host"].is_string() && !h["host"].get<std::string>().empty()) {
      spec.host = h["host"].get<std::string>();
    }
    if (h.contains("path") && h["path"].is_string())
      spec.path = h["path"].get<std::string>();
    if (spec.path.empty() || spec.path[0] != '/')
      spec.path = "/" + spec.path;
    if (h.contains("scheme") && h["scheme"].is_string()) {
      const std::string scheme = h["scheme"].get<std::string>();
      if (scheme == "HTTPS" || scheme == "https") {
        spec.https = true;
      } else if (scheme != "HTTP" && scheme != "http") {
        error = "probe scheme \"" + scheme + "\" is neither HTTP nor HTTPS";
        return false;
      }
    }
    if (h.contains("httpHeaders") && h["httpHeaders"].is_array()) {
      for (const json& hh : h["httpHeaders"]) {
        if (!hh.contains("name") || !hh["name"].is_string()) {
          error = "probe httpHeaders entry without a name: " + hh.dump();
          return false;
        }
        if (hh.contains("value") && !hh["value"].is_string()) {
          error = "probe httpHeaders entry " + hh["name"].get<std::string>() +
                  ": value must be a string, got " + hh["value"].dump();
          return false;
        }
        spec.headers.emplace_back(hh["name"].get<std::string>(), hh.value("value", std::string()));
      }
    }
  } else if (j.contains("tcpSocket")) {
    const json& t = j["tcpSocket"];
    spec.kind = ProbeSpec::Kind::Tcp;
    if (!read_port(t, default_port, spec.port, error))
      return false;
    if (t.contains("host") && t["host"].is_string() && !t["host"].get<std::string>().empty()) {
      spec.host = t["host"].get<std::string>();
    }
  } else if (j.contains("grpc")) {
    const json& g = j["grpc"];
    spec.kind = ProbeSpec::Kind::Grpc;
    if (!read_port(g, default_port, spec.port, error))
      return false;
    if (g.contains("service") && g["service"].is_string()) {
      spec.grpc_service = g["service"].get<std::string>();
    }
  } else if (j.contains("exec")) {
    // Knative turns exec probes into TCP probes on the user port before they reach us.
    spec.kind = ProbeSpec::Kind::Tcp;
    spec.port = default_port;
  } else {
    error = "probe has none of httpGet, tcpSocket, grpc, exec: " + j.dump();
    return false;
  }
  constexpr int64_t kInt32Max = 2147483647;
  if (!read_seconds(j, "periodSeconds", spec.period, error) ||
      !read_seconds(j, "timeoutSeconds", spec.timeout, error) ||
      !read_int(j, "successThreshold", kInt32Max, spec.success_threshold, error) ||
      !read_int(j, "failureThreshold", kInt32Max, spec.failure_threshold, error)) {
    return false;
  }
  if (spec.success_threshold < 1)
    spec.success_threshold = 1;
  if (spec.failure_threshold < 1)
    spec.failure_threshold = 3;  // Kubernetes' default
  if (spec.period.count() > 0 && spec.timeout.count() < 1)
    spec.timeout = std::chrono::seconds(1);
  if (spec.port == 0) {
    error = "probe names no port and no user port is known";
    return false;
  }
  return true;
}

}  // namespace

ProbeSpec default_tcp_probe(uint16_t port) {
  ProbeSpec spec;
  spec.port = port;
  return spec;
}

ProbeParseResult parse_readiness_probe(std::string_view text, uint16_t default_port) {
  ProbeParseResult result;
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos)
    return result;
  if (auto bad = check_config_text(text, 64 * 1024, /*yaml=*/false)) {
    result.error = "SERVING_READINESS_PROBE: " + bad->what;
    return result;
  }
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    result.error = "SERVING_READINESS_PROBE is not valid JSON: " + std::string(text.substr(0, 200));
    return result;
  }
  std::vector<json> items;
  if (j.is_array()) {
    items.assign(j.begin(), j.end());
  } else {
    items.push_back(j);
  }
  for (const json& item : items) {
    ProbeSpec spec;
    bool ok = false;
    try {
      ok = parse_one(item, default_port, spec, result.error);
    } catch (const json::exception& e) {
      // A shape parse_one does not check for yet: still an error, never a crash.
      result.error = std::string("unexpected probe field type (") + e.what() + ")";
    }
    if (!ok) {
      result.error = "SERVING_READINESS_PROBE: " + result.error;
      result.probes.clear();
      return result;
    }
    result.probes.push_back(std::move(spec));
  }
  return result;
}

}  // namespace sluice::config
