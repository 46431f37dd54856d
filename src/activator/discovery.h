// activator/discovery.h
//
// Where the activator learns its revisions, their pods and its peers, as one snapshot
// (config::EndpointsFile) replaced whole on every change. Three implementations:
//   - FileDiscovery: `--endpoints-file`, re-read when it changes (activator/file_discovery.h);
//   - in process: the embedder (`sluice run`) calls Activator::update_endpoints() and
//     passes no Discovery;
//   - Kubernetes: Knative's Endpoints and Revisions (knative/kube_discovery.h).
//
// Threading: start() is called once on the activator's control thread, and `publish`
// must be called on the executor it is given.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <functional>
#include <string>

#include "config/endpoints_file.h"
#include "core/time_source.h"

namespace sluice::activator {

class Discovery {
 public:
  using Publish = std::function<void(config::EndpointsFile)>;
  virtual ~Discovery() = default;

  // Begins discovery; false when the activator cannot start (the reason is logged).
  virtual bool start(boost::asio::any_io_executor control,
                     core::TimeSource& time,
                     Publish publish) = 0;
  // Whether the activator may take traffic yet (e.g. the first snapshot has arrived);
  // `why` says what is missing. Read by the kubelet's readiness probe (control thread).
  virtual bool ready(std::string& /*why*/) const { return true; }
  // Updates that were refused (activator_endpoints_reload_failures_total).
  virtual uint64_t failures() const { return 0; }
};

}  // namespace sluice::activator
