// kube/config.h
//
// Where the Kubernetes API is and how to authenticate to it: from a kubeconfig file
// (out of cluster, `--kubeconfig`) or from a pod's environment (in cluster:
// KUBERNETES_SERVICE_HOST/PORT and the service-account files). Pure: files are read by
// the caller-supplied reader, so tests feed text.
//
// The bearer token of an in-cluster config lives in a file the kubelet rewrites when it
// rotates (projected service-account tokens expire): ClusterConfig keeps the path and
// TokenFile re-reads it when the file changes, so a long-running watch never sends a
// stale token.
//
// Threading: values; TokenFile is used from one thread (the client's executor).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace sluice::kube {

struct ClusterConfig {
  std::string host;  // an IP address or a DNS name, no brackets
  uint16_t port = 443;
  std::string ca_pem;  // the CA that signed the apiserver's cert
  bool insecure_skip_verify = false;
  std::string token;           // a static bearer token, or
  std::string token_file;      // a file holding it, re-read when it changes
  std::string namespace_;      // in cluster: the pod's namespace; else the context's, or "default"
  std::string server() const;  // "https://host:port", for messages
};

// Reads a file whole; nullopt when it cannot (the error goes to `error`).
using ReadFile =
    std::function<std::optional<std::string>(const std::string& path, std::string& error)>;
std::optional<std::string> read_whole_file(const std::string& path, std::string& error);

// A kubeconfig file: the current context's cluster (server, certificate-authority or
// certificate-authority-data, insecure-skip-tls-verify) and user (token, tokenFile).
// Client certificates and exec plugins are refused by name. Relative paths are relative
// to the kubeconfig's own directory, as kubectl resolves them.
std::variant<ClusterConfig, std::string> parse_kubeconfig(std::string_view text,
                                                          const std::string& path,
                                                          const ReadFile& read);

// In cluster: KUBERNETES_SERVICE_HOST and _PORT from `getenv`, the files under
// `sa_dir` (/var/run/secrets/kubernetes.io/serviceaccount): token (kept as a path),
// ca.crt, namespace.
using GetEnv = std::function<std::optional<std::string>(const char*)>;
std::variant<ClusterConfig, std::string> in_cluster_config(const GetEnv& getenv,
                                                           const std::string& sa_dir,
                                                           const ReadFile& read);
inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

// The current bearer token: the static one, or the token file's content, re-read when
// its modification time or size changes (checked at most once per `get()` call: a stat).
class TokenFile {
 public:
  explicit TokenFile(const ClusterConfig& config);
  // The token; empty when the file cannot be read (error() then says why).
  const std::string& get();
  const std::string& error() const { return error_; }

 private:
  std::string path_;
  std::string token_;
  std::string error_;
  int64_t mtime_ns_ = -1;
  int64_t size_ = -1;
};

}  // namespace sluice::kube
