// activator/pod_tracker.h
//
// PodTracker is the activator's view of one replica (a queue-proxy address): the
// six-state health machine of spec/fork.md §1, with quarantine backoff.
//
//   (new) ──appears──▶ Pending ──check passes──▶ Healthy ◀──request succeeds── Recovering
//                        │ check fails              │ check/request fails          ▲
//                        ▼                          ▼                              │
//                   Quarantined ◀───────────── Quarantined ──backoff expires───────┘
//   (a pod that never served leaves quarantine to Pending, not Recovering)
//   Healthy/Recovering ──removed──▶ Draining ──in-flight 0 or max drain──▶ Removed
//   Pending/Quarantined ──removed──▶ Removed;  Draining/Removed ──re-added──▶ Pending
//   Healthy/Quarantined/Recovering ──a new queue-proxy process answers──▶ Pending
//
// Threading: single owner (the revision's home worker); no locks, no atomics.
// Time: never reads a clock; every event takes `now` (monotonic, millisecond precision,
//   unlike the fork's whole Unix seconds).
// Invariants: an endpoint update that keeps the pod never changes its state, so a
//   backoff is never cut short; a recovering pod needs one served request to be healthy
//   again; pending pods get no traffic; in_flight never goes negative and is zero
//   before Removed (or the drain timed out); every quarantine entry is matched by
//   exactly one exit (Transition::entered/left_quarantine).
// Failure: events that do not apply in the current state are no-ops (Transition with
//   from == to), never errors: they race with endpoint updates by nature.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/time_source.h"

namespace sluice::activator {

using namespace std::chrono_literals;

enum class PodState : uint8_t {
  Healthy = 0,
  Draining = 1,
  Quarantined = 2,
  Recovering = 3,
  Removed = 4,
  Pending = 5,
};
std::string_view to_string(PodState s);

struct HealthConfig {
  // Backoff for the n-th consecutive failure of a pod that has never been healthy.
  std::vector<core::Duration> pending_backoff{0s, 1s, 1s, 2s, 5s};
  // Backoff for the n-th consecutive quarantine of a pod that has served before.
  std::vector<core::Duration> healthy_backoff{1s, 2s, 5s, 10s, 20s};
  // A draining pod with requests still in flight is removed after this long anyway.
  core::Duration max_drain = 60s;
  // This many consecutive quarantines make the pod "evicted": reported to the runtime.
  int evict_after = 5;
};

struct Transition {
  PodState from;
  PodState to;
  bool changed() const { return from != to; }
  bool entered_quarantine() const {
    return to == PodState::Quarantined && from != PodState::Quarantined;
  }
  bool left_quarantine() const {
    return from == PodState::Quarantined && to != PodState::Quarantined;
  }
  bool evicted = false;  // this transition crossed the eviction threshold
};

class PodTracker {
 public:
  PodTracker(std::string address, core::TimePoint now, const HealthConfig& config);

  const std::string& address() const { return address_; }
  PodState state() const { return state_; }
  int in_flight() const { return in_flight_; }
  int consecutive_quarantines() const { return quarantines_; }
  bool evicted() const { return evicted_; }
  core::TimePoint quarantined_until() const { return quarantine_until_; }
  core::TimePoint state_since() const { return since_; }

  // --- health signals ---
  Transition on_check_passed(core::TimePoint now);
  // The probe could not reach a working queue-proxy (refused, timeout, reset, wrong
  // answer or wrong revision).
  Transition on_check_failed(core::TimePoint now);
  // The queue-proxy answered, but its app is not ready (503): a starting pod stays
  // Pending (it is alive, and quarantining it would slow every cold start by the backoff
  // table); a pod that took traffic is quarantined as for a failure.
  Transition on_check_not_ready(core::TimePoint now);
  // A proxied request failed in a way that blames the pod (connect failure, reset before
  // any response byte, a 502/503 the queue-proxy made itself). The revision decides
  // first whether the ejection cap allows it (see RevisionHealth).
  Transition on_request_failed(core::TimePoint now);
  Transition on_request_succeeded(core::TimePoint now);
  // The pod's queue-proxy says its app just became ready. For a pod that never served,
  // a quarantine only meant "not up yet" (its probes were refused while it started), so
  // the push makes it healthy at once: a cold start must not wait out a backoff. A pod
  // that served before keeps its backoff (flapping protection), as for any other signal.
  Transition on_ready_push(core::TimePoint now);

  // A probe answer or push named the queue-proxy process behind the address. A replica
  // restarted on the same address is a new pod: its predecessor's quarantine history and
  // backoff say nothing about it, so it starts over in Pending and is trusted after its
  // first passing check (or ready push). The first id seen is just recorded; an empty id
  // (a queue-proxy that does not send one) changes nothing.
  Transition on_instance(std::string_view instance, core::TimePoint now);
  const std::string& instance() const { return instance_; }

  // --- endpoints ---
  Transition on_removed(core::TimePoint now);
  Transition on_readded(core::TimePoint now);

  // --- time ---
  // Quarantine expiry and drain completion. Call whenever time passes (cheap).
  Transition on_tick(core::TimePoint now);
  // When on_tick next has something to do (max() if nothing is scheduled).
  core::TimePoint next_deadline() const;

  // --- traffic ---
  // Whether a new request may go here now: healthy always; recovering only as the one
  // probation request; nothing else.
  bool accepts_request() const {
    return state_ == PodState::Healthy || (state_ == PodState::Recovering && in_flight_ == 0);
  }
  // Whether the active prober should check this pod now.
  bool wants_check(core::TimePoint now) const;
  void request_started() { ++in_flight_; }
  // Returns the transition when finishing the last request completes a drain.
  Transition request_finished(core::TimePoint now);

 private:
  Transition move(PodState to, core::TimePoint now);
  Transition quarantine(core::TimePoint now);

  std::string address_;
  std::string instance_;
  const HealthConfig& config_;
  PodState state_ = PodState::Pending;
  core::TimePoint since_;
  core::TimePoint quarantine_until_{};
  int in_flight_ = 0;
  int quarantines_ = 0;  // consecutive; cleared by a served request
  bool ever_healthy_ = false;
  bool evicted_ = false;
};

}  // namespace sluice::activator
