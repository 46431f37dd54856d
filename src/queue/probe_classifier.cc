#include "queue/probe_classifier.h"

namespace sluice::queue {

namespace {
bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}
}  // namespace

ProbeClass classify_probe(const http::MessageHead& head) {
  ProbeClass c;
  c.probe_value = head.get("K-Network-Probe").value_or(std::string_view{});
  const std::string_view ua = head.get(http::bhttp::field::user_agent).value_or(std::string_view{});
  const bool health_ua = starts_with(ua, "kube-probe/") ||
                         starts_with(ua, "Knative-Activator-Probe") ||
                         starts_with(ua, "Knative-Autoscaling-Probe");
  if (health_ua || c.probe_value == "queue") {
    c.kind = ProbeKind::HealthCheck;
  } else if (c.probe_value == "probe") {
    c.kind = ProbeKind::NetworkProbe;
    c.hash = head.get("K-Network-Hash").value_or(std::string_view{});
  } else if (!c.probe_value.empty()) {
    c.kind = ProbeKind::BadValue;
  }
  return c;
}

bool is_probe_for_metrics(const http::MessageHead& head) {
  if (head.get("K-Network-Probe"))
    return true;
  if (auto k = head.get("K-Kubelet-Probe"); k && !k->empty())
    return true;
  const std::string_view ua = head.get(http::bhttp::field::user_agent).value_or(std::string_view{});
  return starts_with(ua, "kube-probe/");
}

}  // namespace sluice::queue
