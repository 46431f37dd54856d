// config/readiness_probe.h
//
// SERVING_READINESS_PROBE: the user container's readiness probe as Knative's reconciler
// serialises it (a corev1.Probe in JSON, or an array of them for multi-container
// probing), already rewritten to target 127.0.0.1 and the user port.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::config {

struct ProbeSpec {
  enum class Kind { Tcp, Http, Grpc };
  Kind kind = Kind::Tcp;
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  // HTTP only.
  std::string path = "/";
  bool https = false;
  std::vector<std::pair<std::string, std::string>> headers;
  // gRPC only.
  std::string grpc_service;
  // Timing, as in the Kubernetes probe (int32 seconds there; kept in chrono types so no
  // conversion can overflow). period 0 = Knative's aggressive mode (50 ms polling).
  std::chrono::seconds period{0};
  std::chrono::seconds timeout{0};
  int success_threshold = 1;
  int failure_threshold = 3;
};

// Longest probe period or timeout accepted: a day. Kubernetes allows any int32, but a
// readiness probe that waits longer than a day is a typo, and the bound keeps every
// duration the prober computes far from overflow.
inline constexpr int64_t kMaxProbeSeconds = 24 * 3600;

struct ProbeParseResult {
  std::vector<ProbeSpec> probes;  // empty = no probe configured: always ready
  std::string error;              // non-empty when the JSON is not a valid probe
};

// default_port fills probes that name no port (Knative always fills it; local use may not).
ProbeParseResult parse_readiness_probe(std::string_view json, uint16_t default_port);

// The probe Knative's defaulting gives a container that has none: TCP on the user port.
ProbeSpec default_tcp_probe(uint16_t port);

}  // namespace sluice::config
