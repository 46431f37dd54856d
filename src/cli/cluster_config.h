// cli/cluster_config.h — how the Kubernetes-mode commands find the apiserver.
#pragma once

#include <optional>
#include <string>
#include <variant>

#include "kube/config.h"

namespace sluice::cli {

// An environment variable, unset: nullopt.
std::optional<std::string> env(const char* name);

// `kubeconfig` when given (out of cluster), else the pod's service account; or why not.
std::variant<kube::ClusterConfig, std::string> load_cluster_config(const std::string& kubeconfig);

}  // namespace sluice::cli
