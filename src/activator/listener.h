// activator/listener.h
//
// What the activator tells the rest of the system, for `sluice run` (its autoscaler and
// local runtime) and, later, Knative's autoscaler websocket. Every call comes from the
// activator's home worker and must not block: implementations post to their own thread.
#pragma once

#include <string>
#include <vector>

#include "activator/concurrency_reporter.h"
#include "activator/pod_tracker.h"

namespace sluice::activator {

// A revision's pods as this activator sees them, every second.
struct RevisionPods {
  std::string revision;  // "ns/name"
  uint32_t healthy = 0;  // taking traffic (healthy + recovering): the autoscaler's "ready"
  uint32_t total = 0;    // every tracked pod
  std::vector<std::string> healthy_pods;      // the `healthy` ones' addresses
  std::vector<std::string> quarantined_pods;  // held out of rotation after failures
};

class ActivatorListener {
 public:
  virtual ~ActivatorListener() = default;
  // Per-revision concurrency every second, and a revision's first request at once (the
  // scale-from-zero poke).
  virtual void on_report(const std::vector<RevisionConcurrency>& batch) = 0;
  // Every revision's pod counts, every second.
  virtual void on_pods(const std::vector<RevisionPods>& /*pods*/) {}
  // A pod changed state; `transition.evicted` hands the pod to the runtime to replace.
  virtual void on_pod_event(const std::string& /*revision*/,
                            const std::string& /*pod*/,
                            const Transition& /*transition*/) {}
};

}  // namespace sluice::activator
