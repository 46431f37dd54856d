// service/service_file.h
//
// `sluice run`'s input: multi-document YAML with Knative `serving.knative.dev/v1` Service
// documents and the `config-autoscaler` / `config-defaults` ConfigMaps, validated as
// strictly as Knative's webhook. Every problem is reported as
// `FILE:LINE: KEY: what is wrong` (e.g. `service.yaml:9: autoscaling.knative.dev/min-scale:
// min-scale 5 > max-scale 2`), all of them at once, before anything starts.
//
// What the local runtime cannot honour is an error when it changes behaviour (an
// image-only container, the HPA class) and is ignored when it does not (resources).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "autoscaler/revision_autoscaler.h"

namespace sluice::service {

struct ContainerSpec {
  std::vector<std::string> command;  // command + args, paths resolved
  std::vector<std::pair<std::string, std::string>> env;
  std::string working_dir;           // absolute
  std::optional<uint16_t> port;      // ports[0].containerPort; absent: Sluice picks one
  bool h2c = false;                  // ports[0].name is h2c: the app speaks HTTP/2 cleartext
  std::string readiness_probe_json;  // Knative's SERVING_READINESS_PROBE form; empty: TCP
};

struct ServiceSpec {
  std::string file;
  int line = 0;
  std::string name;
  std::string namespace_name = "default";
  std::string revision;  // "<name>-00001"
  uint32_t container_concurrency = 0;
  int timeout_seconds = 300;
  int response_start_timeout_seconds = 0;  // 0: not set
  int idle_timeout_seconds = 0;            // 0: not set
  ContainerSpec container;
  autoscaler::ScalingSpec scaling;
  // An initial scale was given (annotation or config-autoscaler): where Sluice's local
  // default (0) and Knative's (1) differ, the cluster needs to know.
  bool initial_scale_declared = false;
  // A max-scale was given (annotation or config-autoscaler, "0" included): without one,
  // `sluice run` caps the revision to what one machine can hold (LocalOptions).
  bool max_scale_declared = false;
};

struct LoadResult {
  std::vector<ServiceSpec> services;
  std::vector<std::string> errors;    // FILE:LINE: KEY: rule
  std::vector<std::string> warnings;  // accepted but not acted on locally
};

// Reads and validates every file (ConfigMaps in any file apply to every service).
LoadResult load_service_files(const std::vector<std::string>& paths);
// The same from text (tests); `path` names it in messages and anchors relative paths.
LoadResult load_service_texts(const std::vector<std::pair<std::string, std::string>>& files);

// A Kubernetes PodAutoscaler's scaling: its autoscaling.knative.dev/* annotations over
// the cluster's config-autoscaler data, validated by exactly the rules (and with exactly
// the messages, less the file position) a service file gets. `config_errors` are the
// ConfigMap's own problems (its bad keys fall back to Knative's defaults).
struct AnnotationScaling {
  autoscaler::ScalingSpec scaling;
  std::vector<std::string> errors;         // "KEY: what is wrong"
  std::vector<std::string> config_errors;  // the same, about config-autoscaler
  // Knative's GetInitialScale: the annotation, else config-autoscaler's, else 1.
  int32_t initial_scale = 1;
};
AnnotationScaling scaling_from_annotations(const std::map<std::string, std::string>& annotations,
                                           const std::map<std::string, std::string>& config,
                                           uint32_t container_concurrency);

}  // namespace sluice::service
