#include "activator/pod_tracker.h"

#include <algorithm>

namespace sluice::activator {

std::string_view to_string(PodState s) {
  switch (s) {
    case PodState::Healthy:
      return "healthy";
    case PodState::Draining:
      return "draining";
    case PodState::Quarantined:
      return "quarantined";
    case PodState::Recovering:
      return "recovering";
    case PodState::Removed:
      return "removed";
    case PodState::Pending:
      return "pending";
  }
  return "unknown";
}

PodTracker::PodTracker(std::string address, core::TimePoint now, const HealthConfig& config)
    : address_(std::move(address)), config_(config), since_(now) {}

Transition PodTracker::move(PodState to, core::TimePoint now) {
  Transition t{state_, to};
  if (state_ != to) {
    state_ = to;
    since_ = now;
  }
  return t;
}

Transition PodTracker::quarantine(core::TimePoint now) {
  // The backoff table follows the pod's history: never served → the short pending table.
  const auto& table = ever_healthy_ ? config_.healthy_backoff : config_.pending_backoff;
  const size_t index = std::min<size_t>(static_cast<size_t>(quarantines_), table.size() - 1);
  quarantine_until_ = now + table[index];
  ++quarantines_;
  Transition t = move(PodState::Quarantined, now);
  if (!evicted_ && quarantines_ >= config_.evict_after) {
    evicted_ = true;
    t.evicted = true;
  }
  return t;
}

Transition PodTracker::on_check_passed(core::TimePoint now) {
  if (state_ == PodState::Pending) {
    ever_healthy_ = true;
    quarantines_ = 0;
    return move(PodState::Healthy, now);
  }
  // Healthy stays healthy; recovering still owes one served request; a quarantined
  // pod's backoff is never cut short by a passing check.
  return Transition{state_, state_};
}

Transition PodTracker::on_check_failed(core::TimePoint now) {
  switch (state_) {
    case PodState::Pending:
    case PodState::Healthy:
    case PodState::Recovering:
      return quarantine(now);
    default:
      return Transition{state_, state_};
  }
}

Transition PodTracker::on_check_not_ready(core::TimePoint now) {
  if (state_ == PodState::Pending)
    return Transition{state_, state_};
  return on_check_failed(now);
}

Transition PodTracker::on_request_failed(core::TimePoint now) {
  // Only pods that take traffic can fail a request.
  if (state_ == PodState::Healthy || state_ == PodState::Recovering)
    return quarantine(now);
  return Transition{state_, state_};
}

Transition PodTracker::on_request_succeeded(core::TimePoint now) {
  if (state_ == PodState::Recovering) {
    ever_healthy_ = true;
    quarantines_ = 0;
    evicted_ = false;
    return move(PodState::Healthy, now);
  }
  if (state_ == PodState::Healthy)
    quarantines_ = 0;
  return Transition{state_, state_};
}

Transition PodTracker::on_ready_push(core::TimePoint now) {
  if (state_ == PodState::Quarantined && !ever_healthy_) {
    const PodState from = state_;
    state_ = PodState::Pending;
    Transition t = on_check_passed(now);
    t.from = from;
    return t;
  }
  if (state_ == PodState::Draining || state_ == PodState::Removed)
    on_readded(now);
  return on_check_passed(now);
}

Transition PodTracker::on_instance(std::string_view instance, core::TimePoint now) {
  if (instance.empty() || instance == instance_)
    return Transition{state_, state_};
  const bool first = instance_.empty();
  instance_ = instance;
  // Membership is the endpoints' business: a draining or removed pod stays so.
  if (first || state_ == PodState::Draining || state_ == PodState::Removed)
    return Transition{state_, state_};
  quarantines_ = 0;
  ever_healthy_ = false;
  evicted_ = false;
  quarantine_until_ = {};
  return move(PodState::Pending, now);
}

Transition PodTracker::on_removed(core::TimePoint now) {
  switch (state_) {
    case PodState::Healthy:
    case PodState::Recovering:
      return in_flight_ == 0 ? move(PodState::Removed, now) : move(PodState::Draining, now);
    case PodState::Pending:
    case PodState::Quarantined:
      return move(PodState::Removed, now);
    default:
      return Transition{state_, state_};
  }
}

Transition PodTracker::on_readded(core::TimePoint now) {
  if (state_ == PodState::Draining || state_ == PodState::Removed) {
    // Re-validated before it is trusted again; its quarantine history starts over.
    quarantines_ = 0;
    evicted_ = false;
    return move(PodState::Pending, now);
  }
  return Transition{state_, state_};  // an update that keeps the pod changes nothing
}

Transition PodTracker::on_tick(core::TimePoint now) {
  if (state_ == PodState::Quarantined && now >= quarantine_until_) {
    // A pod that never served goes back to Pending: it must pass a check before any
    // request reaches it (a probation request to a pod that never came up is a wasted
    // round trip, and on cold start the client's).
    return move(ever_healthy_ ? PodState::Recovering : PodState::Pending, now);
  }
  if (state_ == PodState::Draining && (in_flight_ == 0 || now - since_ >= config_.max_drain)) {
    return move(PodState::Removed, now);
  }
  return Transition{state_, state_};
}

core::TimePoint PodTracker::next_deadline() const {
  if (state_ == PodState::Quarantined)
    return quarantine_until_;
  if (state_ == PodState::Draining)
    return since_ + config_.max_drain;
  return core::TimePoint::max();
}

bool PodTracker::wants_check(core::TimePoint now) const {
  switch (state_) {
    case PodState::Pending:
    case PodState::Recovering:
      return true;
    case PodState::Quarantined:
      return now >= quarantine_until_;
    default:
      return false;
  }
}

Transition PodTracker::request_finished(core::TimePoint now) {
  if (in_flight_ > 0)
    --in_flight_;
  if (state_ == PodState::Draining && in_flight_ == 0)
    return move(PodState::Removed, now);
  return Transition{state_, state_};
}

}  // namespace sluice::activator
