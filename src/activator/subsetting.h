// activator/subsetting.h
//
// Which pods an activator sends to when several activators serve one revision, computed
// by each activator alone from the same inputs (the `activators` list and the pod list),
// so they agree without talking (spec/fork.md §4).
//
// Consistent hashing with bounded load: every (pod, activator) pair gets a rendezvous
// score (xxHash64 of both names); pairs are taken best score first, and each activator
// takes at most ceil(pods / activators) pods (floor first, then one more for the
// leftovers), so the split is as even as it can be. A pair's outcome depends only on
// higher-scoring pairs, so when an activator or a pod comes or goes only a few
// assignments change (counts against Knative's ranges and the fork's modulo are in
// tests/unit/activator/subsetting_test.cc).
//
// With more activators than pods, every activator gets one pod and each pod is shared by
// floor or ceil(activators / pods) activators; the pod's containerConcurrency is split
// among them (the remainder to the best-scoring ones), so the shares add up to exactly
// CC and no pod is ever over-committed. If CC is smaller than the number of sharers, some
// activators get a share of 0 for that pod.
//
// Pure function: no I/O, no clock, deterministic.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::activator {

struct Assignment {
  std::string pod;
  // Concurrency this activator may use on the pod; 0 = unlimited (CC = 0).
  uint32_t concurrency = 0;
};

// Pods for `self` (which must be in `activators`, else every pod with full CC, as
// Knative does before an activator sees itself in the endpoints).
std::vector<Assignment> assign_pods(const std::vector<std::string>& activators,
                                    const std::string& self,
                                    const std::vector<std::string>& pods,
                                    uint32_t container_concurrency);

// The full map (pod → activators sharing it, best first), for tests and debugging.
struct SubsetMap {
  std::vector<std::string> pods;                 // sorted
  std::vector<std::vector<std::string>> owners;  // per pod
};
SubsetMap subset_map(const std::vector<std::string>& activators,
                     const std::vector<std::string>& pods);

}  // namespace sluice::activator
