// config/endpoints_file.h
//
// The activator's static discovery file (issue 3):
//
//   {"activators": ["127.0.0.1:8101", "127.0.0.1:8102"],
//    "revisions": [{"namespace": "default", "service": "hello", "name": "hello-00001",
//                   "containerConcurrency": 4, "timeoutSeconds": 300,
//                   "loadBalancingPolicy": "round-robin", "protocol": "h2c",
//                   "endpoints": ["127.0.0.1:40001", "127.0.0.1:40002"]}]}
//
// `activators`, `service`, `timeoutSeconds`, `loadBalancingPolicy` and `protocol` are
// optional. `protocol` is what the queue-proxies speak: "http1" (default) or "h2c" (the
// revision's app speaks HTTP/2: the activator reaches the queue-proxy over h2c too).
// Endpoints are queue-proxy addresses (host:port, IPv4 or [IPv6]). Parsing validates
// everything and reports each problem with its JSON path, so a typo never half-applies.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::config {

struct RevisionEndpoints {
  std::string namespace_name;
  std::string service;
  std::string name;
  uint32_t container_concurrency = 0;
  std::chrono::seconds timeout{300};
  std::string load_balancing_policy;  // empty: Knative's default for the CC
  bool h2c = false;                   // "protocol": "h2c"
  std::vector<std::string> endpoints;
  // The activators that share this revision's pods, when they differ per revision (in
  // Kubernetes: the revision's public Endpoints); unset: the file's `activators`. Not
  // read from the file.
  std::optional<std::vector<std::string>> activators;
};

struct EndpointsFile {
  std::vector<std::string> activators;
  std::vector<RevisionEndpoints> revisions;
};

struct EndpointsParseResult {
  std::optional<EndpointsFile> file;
  std::vector<std::string> errors;
};

// Largest endpoints file read (thousands of revisions and pods fit in far less); larger,
// too deeply nested or non-UTF-8 text is an error before any JSON parsing.
inline constexpr size_t kMaxEndpointsFileBytes = 16 * 1024 * 1024;

EndpointsParseResult parse_endpoints_file(std::string_view json);

// "127.0.0.1:8012" or "[::1]:8012" → host and port; false if malformed.
bool split_host_port(std::string_view address, std::string& host, uint16_t& port);
// The inverse: "10.0.0.1:8012", "[fd00::1]:8012" (an IPv6 host gets its brackets).
std::string join_host_port(std::string_view host, uint16_t port);

}  // namespace sluice::config
