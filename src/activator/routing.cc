#include "activator/routing.h"

#include <array>

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

// "ns/name" for a lookup, on the stack when it fits (a namespace and a name are DNS labels,
// at most 63 bytes each): routing runs for every request and allocates nothing on a hit.
class LookupKey {
 public:
  LookupKey(std::string_view ns, std::string_view name) {
    const size_t n = ns.size() + 1 + name.size();
    if (n > buf_.size()) {
      long_ = key(ns, name);
      view_ = long_;
      return;
    }
    ns.copy(buf_.data(), ns.size());
    buf_[ns.size()] = '/';
    name.copy(buf_.data() + ns.size() + 1, name.size());
    view_ = std::string_view(buf_.data(), n);
  }
  LookupKey(const LookupKey&) = delete;
  LookupKey& operator=(const LookupKey&) = delete;
  std::string_view view() const { return view_; }

 private:
  std::array<char, 160> buf_;
  std::string long_;
  std::string_view view_;
};
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
  const LookupKey k(ns, name);
  auto it = revisions_.find(k.view());
  if (it == revisions_.end())
    return std::nullopt;
  return it->second;
}

std::optional<std::string> RouteTable::find_service(std::string_view ns,
                                                    std::string_view service) const {
  const LookupKey k(ns, service);
  auto it = services_.find(k.view());
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
    if (!r.revision)
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
  if (!r.revision)
    r.looked_up = "revision or service " + key(namespace_part, first) + " (from Host \"" +
                  std::string(host) + "\")";
  return r;
}

}  // namespace sluice::activator
