#include "config/endpoints_file.h"

#include <charconv>
#include <nlohmann/json.hpp>
#include <set>

#include "config/text_guard.h"

namespace sluice::config {

using nlohmann::json;

std::string join_host_port(std::string_view host, uint16_t port) {
  std::string out =
      host.find(':') != std::string_view::npos ? "[" + std::string(host) + "]" : std::string(host);
  return out + ":" + std::to_string(port);
}

bool split_host_port(std::string_view address, std::string& host, uint16_t& port) {
  size_t colon;
  if (!address.empty() && address.front() == '[') {
    size_t close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return false;
    }
    host = std::string(address.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = address.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
      return false;
    host = std::string(address.substr(0, colon));
    if (host.find(':') != std::string::npos)
      return false;  // bare IPv6 needs brackets
  }
  std::string_view p = address.substr(colon + 1);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (ec != std::errc() || end != p.data() + p.size() || value == 0 || value > 65535)
    return false;
  port = static_cast<uint16_t>(value);
  return true;
}

namespace {

bool check_addresses(const json& list,
                     const std::string& path,
                     std::vector<std::string>& out,
                     std::vector<std::string>& errors) {
  if (!list.is_array()) {
    errors.push_back(path + ": expected a list of \"host:port\" strings, got " + list.dump());
    return false;
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string where = path + "[" + std::to_string(i) + "]";
    if (!list[i].is_string()) {
      errors.push_back(where + ": expected \"host:port\", got " + list[i].dump());
      continue;
    }
    std::string address = list[i].get<std::string>();
    std::string host;
    uint16_t port;
    if (!split_host_port(address, host, port)) {
      errors.push_back(where + ": \"" + address + "\" is not host:port");
      continue;
    }
    if (!seen.insert(address).second) {
      errors.push_back(where + ": \"" + address + "\" is listed twice");
      continue;
    }
    out.push_back(address);
  }
  return true;
}

}  // namespace

EndpointsParseResult parse_endpoints_file(std::string_view text) {
  EndpointsParseResult result;
  auto& errors = result.errors;
  if (auto bad = check_config_text(text, kMaxEndpointsFileBytes, /*yaml=*/false)) {
    errors.push_back(bad->message());
    return result;
  }
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    errors.push_back("not valid JSON");
    return result;
  }
  if (!root.is_object()) {
    errors.push_back("top level: expected an object with \"revisions\"");
    return result;
  }
  static const std::set<std::string> kTop = {"activators", "revisions"};
  for (const auto& [key, value] : root.items()) {
    if (!kTop.count(key))
      errors.push_back("unknown key \"" + key + "\" (expected activators, revisions)");
  }
  EndpointsFile file;
  if (root.contains("activators"))
    check_addresses(root["activators"], "activators", file.activators, errors);
  if (!root.contains("revisions") || !root["revisions"].is_array()) {
    errors.push_back("revisions: missing or not a list");
    return result;
  }
  static const std::set<std::string> kRevisionKeys = {
      "namespace",           "service",   "name",    "containerConcurrency", "timeoutSeconds",
      "loadBalancingPolicy", "endpoints", "protocol"};
  static const std::set<std::string> kPolicies = {"random-choice-2", "first-available",
                                                  "round-robin", "least-connections"};
  std::set<std::string> names;
  const json& revisions = root["revisions"];
  for (size_t i = 0; i < revisions.size(); ++i) {
    const json& r = revisions[i];
    const std::string path = "revisions[" + std::to_string(i) + "]";
    if (!r.is_object()) {
      errors.push_back(path + ": expected an object");
      continue;
    }
    for (const auto& [key, value] : r.items()) {
      if (!kRevisionKeys.count(key))
        errors.push_back(path + ": unknown key \"" + key + "\"");
    }
    RevisionEndpoints rev;
    auto str = [&](const char* key, std::string& out, bool required) {
      if (!r.contains(key)) {
        if (required)
          errors.push_back(path + ": missing \"" + key + "\"");
        return;
      }
      if (!r[key].is_string() || r[key].get<std::string>().empty()) {
        errors.push_back(path + "." + key + ": expected a non-empty string");
        return;
      }
      out = r[key].get<std::string>();
    };
    str("namespace", rev.namespace_name, true);
    str("name", rev.name, true);
    str("service", rev.service, false);
    str("loadBalancingPolicy", rev.load_balancing_policy, false);
    std::string protocol;
    str("protocol", protocol, false);
    if (protocol == "h2c") {
      rev.h2c = true;
    } else if (!protocol.empty() && protocol != "http1") {
      errors.push_back(path + ".protocol: \"" + protocol + "\": expected \"http1\" or \"h2c\"");
    }
    if (!rev.load_balancing_policy.empty() && !kPolicies.count(rev.load_balancing_policy)) {
      errors.push_back(path + ".loadBalancingPolicy: \"" + rev.load_balancing_policy +
                       "\" is not one of random-choice-2, first-available, round-robin, "
                       "least-connections");
    }
    if (!r.contains("containerConcurrency")) {
      errors.push_back(path + ": missing \"containerConcurrency\"");
    } else if (!r["containerConcurrency"].is_number_integer() ||
               r["containerConcurrency"].get<long>() < 0 ||
               r["containerConcurrency"].get<long>() > 1000) {
      errors.push_back(path + ".containerConcurrency: expected an integer in 0..1000");
    } else {
      rev.container_concurrency = r["containerConcurrency"].get<uint32_t>();
    }
    if (r.contains("timeoutSeconds")) {
      if (!r["timeoutSeconds"].is_number_integer() || r["timeoutSeconds"].get<long>() < 1 ||
          r["timeoutSeconds"].get<long>() > 3600) {
        errors.push_back(path + ".timeoutSeconds: expected an integer in 1..3600");
      } else {
        rev.timeout = std::chrono::seconds(r["timeoutSeconds"].get<long>());
      }
    }
    if (!r.contains("endpoints")) {
      errors.push_back(path + ": missing \"endpoints\" (use [] for none)");
    } else {
      check_addresses(r["endpoints"], path + ".endpoints", rev.endpoints, errors);
    }
    if (!rev.namespace_name.empty() && !rev.name.empty() &&
        !names.insert(rev.namespace_name + "/" + rev.name).second) {
      errors.push_back(path + ": revision " + rev.namespace_name + "/" + rev.name +
                       " is listed twice");
    }
    file.revisions.push_back(std::move(rev));
  }
  if (errors.empty())
    result.file = std::move(file);
  return result;
}

}  // namespace sluice::config
