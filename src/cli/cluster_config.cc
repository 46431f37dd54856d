#include "cli/cluster_config.h"

#include <cstdlib>

namespace sluice::cli {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::nullopt : std::optional<std::string>(v);
}

std::variant<kube::ClusterConfig, std::string> load_cluster_config(const std::string& kubeconfig) {
  if (kubeconfig.empty())
    return kube::in_cluster_config(env, kube::kServiceAccountDir, kube::read_whole_file);
  std::string error;
  auto text = kube::read_whole_file(kubeconfig, error);
  if (!text)
    return "--kubeconfig " + kubeconfig + ": " + error;
  return kube::parse_kubeconfig(*text, kubeconfig, kube::read_whole_file);
}

}  // namespace sluice::cli
