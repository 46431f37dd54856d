#include "kube/config.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <charconv>
#include <fstream>
#include <sstream>

#include "config/endpoints_file.h"
#include "config/yaml_tree.h"
#include "core/file.h"

namespace sluice::kube {

namespace {

using config::YamlNode;

// Splits "https://host:port" (IPv6 in brackets); the port defaults to 443.
std::optional<std::string> parse_server(std::string_view server, ClusterConfig& out) {
  constexpr std::string_view kScheme = "https://";
  if (!server.starts_with(kScheme))
    return fmt::format("server {:?}: only https:// is supported", std::string(server));
  std::string_view rest = server.substr(kScheme.size());
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    if (rest.substr(slash) != "/")
      return fmt::format("server {:?}: a path prefix is not supported", std::string(server));
    rest = rest.substr(0, slash);
  }
  std::string_view host = rest, port;
  if (rest.starts_with('[')) {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos)
      return fmt::format("server {:?}: unclosed [", std::string(server));
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':')
        return fmt::format("server {:?}: junk after ]", std::string(server));
      port = rest.substr(close + 2);
    }
  } else if (const size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty())
    return fmt::format("server {:?}: no host", std::string(server));
  out.host = std::string(host);
  out.port = 443;
  if (!port.empty()) {
    unsigned p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || end != port.data() + port.size() || p == 0 || p > 65535)
      return fmt::format("server {:?}: bad port", std::string(server));
    out.port = static_cast<uint16_t>(p);
  }
  return std::nullopt;
}

std::optional<std::string> base64_decode(std::string_view in) {
  std::string clean;
  for (char c : in)
    if (c != '\n' && c != '\r' && c != ' ')
      clean += c;
  if (clean.size() % 4 != 0)
    return std::nullopt;
  std::string out(clean.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(clean.data()),
                                static_cast<int>(clean.size()));
  if (n < 0)
    return std::nullopt;
  size_t len = static_cast<size_t>(n);
  for (size_t i = clean.size(); i > 0 && clean[i - 1] == '='; --i) --len;  // padding
  out.resize(len);
  return out;
}

std::string resolve(const std::string& base_file, const std::string& path) {
  if (path.empty() || path[0] == '/')
    return path;
  const size_t slash = base_file.rfind('/');
  return slash == std::string::npos ? path : base_file.substr(0, slash + 1) + path;
}

// The entry named `name` in a kubeconfig list (clusters, users, contexts) and its body.
YamlNode named(YamlNode list, std::string_view field, std::string_view name) {
  for (const YamlNode& item : list.items())
    if (item.get("name").text() == name)
      return item.get(field);
  return {};
}

}  // namespace

std::string ClusterConfig::server() const {
  return "https://" + config::join_host_port(host, port);
}

std::optional<std::string> read_whole_file(const std::string& path, std::string& error) {
  // A kubeconfig with its certificates inline, a token, a CA bundle: kilobytes.
  core::FileText read = core::read_file(path, size_t{16} << 20, "not a kubeconfig, token or CA");
  if (!read.text)
    error = fmt::format("{}: {}", path, read.error);
  return std::move(read.text);
}

std::variant<ClusterConfig, std::string> parse_kubeconfig(std::string_view text,
                                                          const std::string& path,
                                                          const ReadFile& read) {
  auto fail = [&](std::string what) { return fmt::format("kubeconfig {}: {}", path, what); };
  config::YamlResult parsed = config::parse_yaml(text);
  if (!parsed.stream)
    return fail(fmt::format("line {}: {}", parsed.error_line, parsed.error));
  if (parsed.stream->documents.size() != 1 || !parsed.stream->documents[0].is_map())
    return fail("not one YAML mapping");
  const YamlNode root = parsed.stream->documents[0];
  const std::string& current = root.get("current-context").text();
  if (current.empty())
    return fail("no current-context");
  const YamlNode context = named(root.get("contexts"), "context", current);
  if (!context.is_map())
    return fail(fmt::format("context {:?} not found", current));
  const std::string& cluster_name = context.get("cluster").text();
  const YamlNode cluster = named(root.get("clusters"), "cluster", cluster_name);
  if (!cluster.is_map())
    return fail(fmt::format("cluster {:?} of context {:?} not found", cluster_name, current));
  ClusterConfig out;
  if (auto err = parse_server(cluster.get("server").text(), out))
    return fail(*err);
  out.insecure_skip_verify = cluster.get("insecure-skip-tls-verify").text() == "true";
  if (const YamlNode data = cluster.get("certificate-authority-data"); data.is_scalar()) {
    auto pem = base64_decode(data.text());
    if (!pem)
      return fail("certificate-authority-data is not base64");
    out.ca_pem = std::move(*pem);
  } else if (const YamlNode file = cluster.get("certificate-authority"); file.is_scalar()) {
    std::string error;
    auto pem = read(resolve(path, file.text()), error);
    if (!pem)
      return fail(error);
    out.ca_pem = std::move(*pem);
  }
  if (out.ca_pem.empty() && !out.insecure_skip_verify)
    return fail(fmt::format("cluster {:?} has no certificate-authority", cluster_name));
  const std::string& user_name = context.get("user").text();
  const YamlNode user = named(root.get("users"), "user", user_name);
  if (!user_name.empty() && !user.is_map())
    return fail(fmt::format("user {:?} of context {:?} not found", user_name, current));
  for (const char* refused :
       {"client-certificate", "client-certificate-data", "exec", "auth-provider"})
    if (user.get(refused))
      return fail(fmt::format("user {:?}: {} is not supported (use a token)", user_name, refused));
  out.token = user.get("token").text();
  if (const YamlNode file = user.get("tokenFile"); file.is_scalar())
    out.token_file = resolve(path, file.text());
  out.namespace_ = context.get("namespace").text();
  if (out.namespace_.empty())
    out.namespace_ = "default";
  return out;
}

std::variant<ClusterConfig, std::string> in_cluster_config(const GetEnv& getenv,
                                                           const std::string& sa_dir,
                                                           const ReadFile& read) {
  const auto host = getenv("KUBERNETES_SERVICE_HOST");
  const auto port = getenv("KUBERNETES_SERVICE_PORT");
  if (!host || host->empty() || !port || port->empty())
    return std::string(
        "not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set "
        "(give --kubeconfig to run outside one)");
  ClusterConfig out;
  // The port is checked by parse_server, so it goes in as text.
  const std::string server = host->find(':') != std::string::npos
                                 ? "https://[" + *host + "]:" + *port
                                 : "https://" + *host + ":" + *port;
  if (auto err = parse_server(server, out))
    return fmt::format("in-cluster config: {}", *err);
  std::string error;
  auto ca = read(sa_dir + "/ca.crt", error);
  if (!ca)
    return fmt::format("in-cluster config: {}", error);
  out.ca_pem = std::move(*ca);
  out.token_file = sa_dir + "/token";
  if (auto ns = read(sa_dir + "/namespace", error)) {
    out.namespace_ = std::move(*ns);
    while (!out.namespace_.empty() &&
           (out.namespace_.back() == '\n' || out.namespace_.back() == ' '))
      out.namespace_.pop_back();
  }
  if (out.namespace_.empty())
    out.namespace_ = "default";
  return out;
}

TokenFile::TokenFile(const ClusterConfig& config)
    : path_(config.token_file), token_(config.token) {}

const std::string& TokenFile::get() {
  if (path_.empty())
    return token_;
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    error_ = fmt::format("cannot stat token file {}", path_);
    return token_;  // keep the last one: the kubelet may be mid-rotation
  }
  const int64_t mtime =
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  if (mtime == mtime_ns_ && st.st_size == size_)
    return token_;
  std::string error;
  if (auto text = read_whole_file(path_, error)) {
    while (!text->empty() && (text->back() == '\n' || text->back() == '\r' || text->back() == ' '))
      text->pop_back();
    token_ = std::move(*text);
    mtime_ns_ = mtime;
    size_ = st.st_size;
    error_.clear();
  } else {
    error_ = error;
  }
  return token_;
}

}  // namespace sluice::kube
