// activator/revision_throttler.h
//
// Everything the activator knows about one revision, as pure logic: its pod trackers
// (six-state health machine), which of them this activator uses (subsetting) and with
// how much concurrency each, the bounded FIFO queue with deadlines (admission::Breaker)
// whose capacity follows the usable pods, the load-balancing policy, and the passive
// ejection cap.
//
// Capacity = Σ over assigned pods: the pod's concurrency share when healthy, 1 when
// recovering (one probation request at a time, spec fork §1), 0 otherwise; with
// containerConcurrency 0 it is "open" (unlimited) while any pod takes traffic, else 0.
// While capacity is 0 requests wait in the queue (cold start) and each is released the
// moment a pod becomes usable.
//
// Threading: single owner (the revision's home worker). Time: callers pass `now`.
// Invariants: a pod is forgotten only when Removed with nothing in flight, so a request
//   can hold a PodTracker* for its whole life; at most floor(ejection_cap × pods)
//   pods (at least 1 when there are 2 or more) are quarantined by passive signals at once.
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "activator/lb_policy.h"
#include "activator/pod_tracker.h"
#include "admission/breaker.h"

namespace sluice::activator {

struct RevisionSpec {
  std::string namespace_name;
  std::string name;
  std::string service;
  uint32_t container_concurrency = 0;
  core::Duration timeout = std::chrono::seconds(300);
  std::optional<LbKind> lb;  // nullopt: Knative's default for the CC
  bool h2c = false;          // its queue-proxies are reached over HTTP/2
};

struct ThrottlerConfig {
  uint32_t queue_depth = 10'000;
  double ejection_cap = 0.5;
};

// What a finished proxied request says about the pod it went to.
enum class RequestOutcome {
  Success,     // the app answered (any status)
  PodFailure,  // connect failed, reset before any byte, or the queue-proxy's own 502/503
  Other,       // client went away, timeout: says nothing about the pod
};

enum class CheckResult { Passed, NotReady, Failed, WrongRevision };

// What a queue-proxy pushes about itself (Sluice extension).
enum class PushedState { Ready, NotReady, Draining };

// A state change, for metrics and logs.
struct PodEvent {
  std::string pod;
  Transition transition;
  bool new_instance = false;  // caused by a restarted queue-proxy on the same address
};

class RevisionThrottler {
 public:
  RevisionThrottler(RevisionSpec spec, const HealthConfig& health, const ThrottlerConfig& config);

  const RevisionSpec& spec() const { return spec_; }
  // "namespace/name", the revision's key everywhere in the activator.
  const std::string& key() const { return key_; }
  admission::Breaker& breaker() { return breaker_; }

  // Replaces the endpoint set (queue-proxy addresses) and the activator set; `self` is
  // this activator's address in that set. Pods that stay keep their state.
  std::vector<PodEvent> set_endpoints(const std::vector<std::string>& pods,
                                      const std::vector<std::string>& activators,
                                      const std::string& self,
                                      core::TimePoint now);
  // Changes the spec (containerConcurrency, LB, timeout) keeping the pods' states.
  void update_spec(const RevisionSpec& spec);

  // After admission: a pod with room, chosen by the policy; its in-flight count is
  // taken. nullptr when none has room (capacity changed meanwhile).
  PodTracker* pick(core::Random& random);
  // The request on `pod` is over.
  std::vector<PodEvent> finish(PodTracker* pod, RequestOutcome outcome, core::TimePoint now);
  // An active check of `pod` came back; `instance` is the queue-proxy process id its
  // answer carried (Sluice-Pod-Instance; empty if none). A new id is a restarted replica:
  // the pod starts over in Pending before the result applies (PodTracker::on_instance).
  // `sent_at` is when the check was sent: an answer about a pod that has changed state
  // since is stale and ignored (a "not ready yet" sent just before the ready push must
  // not quarantine the pod the push just made healthy).
  std::vector<PodEvent> on_check(const std::string& pod,
                                 CheckResult result,
                                 core::TimePoint now,
                                 std::string_view instance = {},
                                 core::TimePoint sent_at = core::TimePoint::max());
  // A queue-proxy told us its state. Ready acts as a passing check (a pending pod is
  // healthy at once: cold start need not wait for the next probe; a quarantine backoff is
  // still not cut short), NotReady as a not-ready check, Draining as removal from the
  // endpoints. A pod the file lists but that was forgotten (it drained, then came back)
  // is tracked again.
  std::vector<PodEvent> on_push(const std::string& pod,
                                PushedState state,
                                core::TimePoint now,
                                std::string_view instance = {});
  // Quarantine expiries and drain completions.
  std::vector<PodEvent> tick(core::TimePoint now);
  core::TimePoint next_deadline() const;

  // Pods the active prober should check now.
  std::vector<std::string> pods_to_check(core::TimePoint now) const;

  uint32_t capacity() const { return breaker_.capacity(); }
  size_t pod_count() const { return pods_.size(); }
  size_t count(PodState s) const;
  // The addresses of the pods in any of `states`.
  std::vector<std::string> pods_in(std::initializer_list<PodState> states) const;
  // What the pods are doing, for an error a waiting client gets: "no replicas",
  // "1 pending", "2 healthy, 1 quarantined; all busy: capacity 8".
  std::string describe_pods() const;
  size_t assigned_count() const { return assigned_.size(); }
  const PodTracker* find(const std::string& pod) const;
  uint64_t ejection_overflows() const { return ejection_overflows_; }

 private:
  void reassign();
  void recompute_capacity();
  void collect(PodTracker& t, Transition tr, std::vector<PodEvent>& out);
  void note_instance(PodTracker& t,
                     std::string_view instance,
                     core::TimePoint now,
                     std::vector<PodEvent>& out);
  void forget_removed();

  RevisionSpec spec_;
  std::string key_;
  const HealthConfig& health_;
  ThrottlerConfig config_;
  admission::Breaker breaker_;
  LbPolicy lb_;
  // All known pods (including draining ones), by address.
  std::unordered_map<std::string, std::unique_ptr<PodTracker>> pods_;
  // This activator's subset, in a stable order, with its concurrency share per pod.
  std::vector<std::pair<PodTracker*, uint32_t>> assigned_;
  std::vector<PodSlot> slots_;  // scratch for the policy
  std::vector<std::string> endpoints_;
  std::vector<std::string> activators_;
  std::string self_;
  std::set<std::string> passive_quarantined_;
  uint64_t ejection_overflows_ = 0;
};

}  // namespace sluice::activator
