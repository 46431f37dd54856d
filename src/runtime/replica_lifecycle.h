// runtime/replica_lifecycle.h
//
// One local replica's life (`sluice run`), as a pure state machine:
//
//   Starting ──healthy()──▶ Ready ──(ready for stable_run: crash count forgiven)
//      │ crashed()            │ crashed()
//      ▼                      ▼
//   Backoff (0.5 s, 1 s, 2 s … max_backoff) ──due()/restarted()──▶ Starting
//      │ the crash_loop_after-th crash in a row (or a command that cannot run: failed())
//      ▼
//   Failed (the cause goes to the activator) ──max_backoff, restarted()──▶ Starting
//   any ──stop()──▶ Stopping (terminal)
//
// A failed replica that is retried and crashes again is Failed again at once (its count
// stays one short of the limit).
//
// Threading: single owner. Time: every event takes `now`; no clocks.
#pragma once

#include <chrono>

#include "core/time_source.h"

namespace sluice::runtime {

enum class ReplicaState { Starting, Ready, Backoff, Failed, Stopping };
const char* to_string(ReplicaState s);

struct LifecyclePolicy {
  int crash_loop_after = 5;
  core::Duration stable_run = std::chrono::seconds(10);  // ready this long: count forgiven
  core::Duration first_backoff = std::chrono::milliseconds(500);
  core::Duration max_backoff = std::chrono::seconds(30);
};

class ReplicaLifecycle {
 public:
  ReplicaLifecycle(const LifecyclePolicy& policy, core::TimePoint now)
      : policy_(policy), since_(now) {}

  ReplicaState state() const { return state_; }
  core::TimePoint since() const { return since_; }  // entered the current state
  core::TimePoint restart_at() const { return restart_at_; }
  int crashes() const { return crashes_; }
  // Counted toward the revision's replicas / given traffic.
  bool counts() const { return state_ != ReplicaState::Stopping; }
  bool routable() const {
    return state_ == ReplicaState::Starting || state_ == ReplicaState::Ready;
  }

  // The activator holds it healthy: Starting → Ready (true if it moved).
  bool healthy(core::TimePoint now);
  // A process exited while Starting or Ready: Backoff, or Failed after the limit (true).
  bool crashed(core::TimePoint now);
  // The command cannot run at all: Failed at once (no point retrying quickly).
  void failed(core::TimePoint now);
  // Backoff or Failed, and its restart time has come.
  bool due(core::TimePoint now) const;
  // Started again (after due()): Starting.
  void restarted(core::TimePoint now);
  void stop(core::TimePoint now);
  // Ready for stable_run forgives the crash history (ready alone is not enough: an app
  // can die right after its port first answers).
  void tick(core::TimePoint now);

 private:
  void crashed_to_failed(core::TimePoint now);
  void enter(ReplicaState s, core::TimePoint now) {
    state_ = s;
    since_ = now;
  }
  const LifecyclePolicy& policy_;
  ReplicaState state_ = ReplicaState::Starting;
  core::TimePoint since_;
  core::TimePoint restart_at_{};
  int crashes_ = 0;  // in a row
};

}  // namespace sluice::runtime
