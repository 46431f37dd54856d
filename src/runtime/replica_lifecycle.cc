#include "runtime/replica_lifecycle.h"

#include <algorithm>

namespace sluice::runtime {

const char* to_string(ReplicaState s) {
  switch (s) {
    case ReplicaState::Starting:
      return "starting";
    case ReplicaState::Ready:
      return "ready";
    case ReplicaState::Backoff:
      return "backoff";
    case ReplicaState::Failed:
      return "failed";
    case ReplicaState::Stopping:
      return "stopping";
  }
  return "?";
}

bool ReplicaLifecycle::healthy(core::TimePoint now) {
  if (state_ != ReplicaState::Starting)
    return false;
  enter(ReplicaState::Ready, now);
  return true;
}

bool ReplicaLifecycle::crashed(core::TimePoint now) {
  if (state_ != ReplicaState::Starting && state_ != ReplicaState::Ready)
    return state_ == ReplicaState::Failed;
  ++crashes_;
  if (crashes_ >= policy_.crash_loop_after) {
    crashed_to_failed(now);
    return true;
  }
  enter(ReplicaState::Backoff, now);
  const auto backoff =
      std::min<core::Duration>(policy_.first_backoff * (1 << (crashes_ - 1)), policy_.max_backoff);
  restart_at_ = now + backoff;
  return false;
}

void ReplicaLifecycle::failed(core::TimePoint now) {
  if (state_ != ReplicaState::Stopping)
    crashed_to_failed(now);
}

void ReplicaLifecycle::crashed_to_failed(core::TimePoint now) {
  enter(ReplicaState::Failed, now);
  restart_at_ = now + policy_.max_backoff;
  crashes_ = policy_.crash_loop_after - 1;  // one more failure after a retry: failed again
}

bool ReplicaLifecycle::due(core::TimePoint now) const {
  return (state_ == ReplicaState::Backoff || state_ == ReplicaState::Failed) && now >= restart_at_;
}

void ReplicaLifecycle::restarted(core::TimePoint now) {
  if (state_ != ReplicaState::Stopping)
    enter(ReplicaState::Starting, now);
}

void ReplicaLifecycle::stop(core::TimePoint now) {
  if (state_ != ReplicaState::Stopping)
    enter(ReplicaState::Stopping, now);
}

void ReplicaLifecycle::tick(core::TimePoint now) {
  if (state_ == ReplicaState::Ready && crashes_ > 0 && now - since_ >= policy_.stable_run)
    crashes_ = 0;
}

}  // namespace sluice::runtime
