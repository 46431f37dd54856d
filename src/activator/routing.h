// activator/routing.h
//
// Which revision a request is for: the Knative-Serving-Revision and
// Knative-Serving-Namespace headers when both are present; otherwise the Host,
// `<revision>.<namespace>[.anything][:port]` or `<service>.<namespace>[...]` (the
// service's revision). Pure: a lookup in an immutable table built from discovery.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "http/parser.h"

namespace sluice::activator {

class RouteTable {
 public:
  // Later revisions of a service win (the file lists the current one last).
  void add(const std::string& ns, const std::string& revision, const std::string& service);
  // "ns/revision" key or nullopt.
  std::optional<std::string> find_revision(std::string_view ns, std::string_view name) const;
  std::optional<std::string> find_service(std::string_view ns, std::string_view service) const;

 private:
  std::map<std::string, std::string, std::less<>> revisions_;  // "ns/rev" → "ns/rev"
  std::map<std::string, std::string, std::less<>> services_;   // "ns/svc" → "ns/rev"
};

struct RouteResult {
  std::optional<std::string> revision;  // "ns/name"
  std::string looked_up;                // for the 404 body: what was tried (only on a miss)
};

RouteResult route(const http::MessageHead& head, const RouteTable& table);

}  // namespace sluice::activator
