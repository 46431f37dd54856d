#include "activator/routing.h"

#include "http/headers.h"

namespace sluice::activator {

namespace {
std::string key(std::string_view ns, std::string_view name) {
  std::string k;
  k.reserve(ns.size() + name.size() + 1);
  k.append(ns);
  k.push_back('/');
  k.append(name);
  return k;
}
}  // namespace

void RouteTable::add(const std::string& ns,
                     const std::string& revision,
                     const std::string& service) {
  const std::string k = key(ns, revision);
  revisions_[k] = k;
  if (!service.empty())
    services_[key(ns, service)] = k;
}

std::optional<std::string> RouteTable::find_revision(std::string_view ns,
                                                     std::string_view name) const {
  auto it = revisions_.find(key(ns, name));
  if (it == revisions_.end())
    return std::nullopt;
  return it->second;
}

std::optional<std::string> RouteTable::find_service(std::string_view ns,
                                                    std::string_view service) const {
  auto it = services_.find(key(ns, service));
  if (it == services_.end())
    return std::nullopt;
  return it->second;
}

RouteResult route(const http::MessageHead& head, const RouteTable& table) {
  RouteResult r;
  auto rev = head.get("Knative-Serving-Revision");
  auto ns = head.get("Knative-Serving-Namespace");
  if (rev && ns && !rev->empty() && !ns->empty()) {
    r.revision = table.find_revision(*ns, *rev);
    r.looked_up = "revision " + key(*ns, *rev) + " (Knative-Serving-Revision/-Namespace headers)";
    return r;
  }
  std::string_view host = http::request_authority(head);
  const std::string_view full_host = host;
  if (auto colon = host.find(':'); colon != std::string_view::npos && host.front() != '[')
    host = host.substr(0, colon);
  const bool ipv4 =
      !host.empty() && host.find_first_not_of("0123456789.") == std::string_view::npos;
  if ((!host.empty() && host.front() == '[') || ipv4) {
    r.looked_up = "Host \"" + std::string(full_host) +
                  "\" (an IP address names no revision: use <service>.<namespace>[...] or the "
                  "Knative-Serving-Revision and Knative-Serving-Namespace headers)";
    return r;
  }
  auto dot = host.find('.');
  if (dot == std::string_view::npos || dot == 0) {
    r.looked_up = "Host \"" + std::string(host) +
                  "\" (expected <revision-or-service>.<namespace>[...], or the "
                  "Knative-Serving-Revision and Knative-Serving-Namespace headers)";
    return r;
  }
  std::string_view first = host.substr(0, dot);
  std::string_view rest = host.substr(dot + 1);
  std::string_view namespace_part = rest.substr(0, rest.find('.'));
  r.revision = table.find_revision(namespace_part, first);
  if (!r.revision)
    r.revision = table.find_service(namespace_part, first);
  r.looked_up = "revision or service " + key(namespace_part, first) + " (from Host \"" +
                std::string(host) + "\")";
  return r;
}

}  // namespace sluice::activator
