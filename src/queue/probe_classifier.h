// queue/probe_classifier.h
//
// Which requests the queue-proxy answers itself (Knative's drainer + health handler,
// spec §1.2 step 2 and §1.4). Pure: looks only at the head.
#pragma once

#include <string_view>

#include "http/parser.h"

namespace sluice::queue {

enum class ProbeKind {
  None,          // an ordinary request: goes to the app
  HealthCheck,   // kubelet/activator/autoscaler probe UA, or K-Network-Probe: queue
  NetworkProbe,  // K-Network-Probe: probe (needs K-Network-Hash, echoed back)
  BadValue,      // some other K-Network-Probe value: 400
};

struct ProbeClass {
  ProbeKind kind = ProbeKind::None;
  std::string_view probe_value;  // K-Network-Probe, possibly empty
  std::string_view hash;         // K-Network-Hash, for NetworkProbe
};

ProbeClass classify_probe(const http::MessageHead& head);

// True for requests that must not count in request metrics (any probe marker).
bool is_probe_for_metrics(const http::MessageHead& head);

}  // namespace sluice::queue
