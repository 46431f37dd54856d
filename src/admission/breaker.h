// admission/breaker.h
//
// Breaker admits requests under a concurrency limit and parks the excess in a bounded
// FIFO queue; each waiter carries a deadline. It is the queue-proxy's
// containerConcurrency gate (CC slots + 10×CC queue: the 11×CC+1-th request is
// refused) and the activator's per-revision throttler queue.
//
// Threading: single owner. All methods run on the owner's thread (one io_context);
//   callers on other workers hop there first. No locks, no atomics.
// Time: never reads a clock; callers pass `now`.
// Invariants: in_flight() <= capacity() unless capacity shrank; waiting() <= queue_depth;
//   every queued waiter leaves the queue exactly once: admitted, expired, cancelled or
//   failed by close(). Admission is strictly first-in first-out.
// Failure: acquire() never blocks; it reports QueueFull / Expired / Closed as values.
#pragma once

#include <cstdint>
#include <limits>

#include "core/time_source.h"

namespace sluice::admission {

// A parked request. Lives in the waiting coroutine's frame; the breaker links it into
// its queue (intrusive, so queueing allocates nothing) and calls on_admitted() when a
// slot is handed to it.
class Waiter {
 public:
  enum class State { Idle, Queued, Admitted, Expired, Cancelled, Closed };

  // A waiter that dies while queued (its coroutine frame destroyed) leaves the queue.
  virtual ~Waiter();
  State state() const { return state_; }
  core::TimePoint enqueued_at() const { return enqueued_at_; }
  core::TimePoint deadline() const { return deadline_; }

 protected:
  // Called by the breaker, on its thread, when this waiter got a slot or was failed by
  // close(). Must not call back into the breaker.
  virtual void on_wake() = 0;

 private:
  friend class Breaker;
  State state_ = State::Idle;
  class Breaker* queue_ = nullptr;  // set while queued
  core::TimePoint enqueued_at_{};
  core::TimePoint deadline_{};
  Waiter* prev_ = nullptr;
  Waiter* next_ = nullptr;
};

class Breaker {
 public:
  static constexpr uint32_t kUnlimited = std::numeric_limits<uint32_t>::max();

  // capacity: concurrent slots (kUnlimited = no limit); queue_depth: waiters beyond them.
  Breaker(uint32_t capacity, uint32_t queue_depth)
      : capacity_(capacity), queue_depth_(queue_depth) {}
  ~Breaker() { close(); }
  Breaker(const Breaker&) = delete;
  Breaker& operator=(const Breaker&) = delete;

  // Cancelled is never returned by acquire(): drivers use it for a waiter they cancel().
  enum class Admit { Admitted, Queued, QueueFull, Expired, Closed, Cancelled };

  // Takes a slot now (Admitted), or queues `w` until release() hands it one (Queued),
  // or refuses: QueueFull (queue at depth), Expired (deadline <= now, no slot), Closed.
  Admit acquire(Waiter& w, core::TimePoint now, core::TimePoint deadline);
  // Takes a slot only if one is free right now.
  bool try_acquire();
  // Gives a slot back; the oldest waiter (if any) gets it.
  void release();
  // Drops `w` from the queue if its deadline has passed; returns true when it did.
  bool expire(Waiter& w, core::TimePoint now);
  // Drops `w` from the queue (its request went away). No-op unless queued.
  void cancel(Waiter& w);
  // Changes the slot count (activator: capacity follows healthy pods); admits waiters
  // if slots opened. Shrinking never revokes slots already held.
  void set_capacity(uint32_t capacity);
  // Fails every waiter with Closed and refuses new ones (shutdown, revision removed).
  void close();
  // Fails every current waiter with Closed but keeps admitting (a revision that cannot
  // start: its waiters learn why now instead of at their deadline).
  void fail_waiters();

  uint32_t capacity() const { return capacity_; }
  uint32_t in_flight() const { return in_flight_; }
  uint32_t waiting() const { return waiting_; }
  // Executing plus queued: Knative's "InFlight" and the revision_queue_depth gauge.
  uint32_t pending() const { return in_flight_ + waiting_; }
  uint32_t queue_depth() const { return queue_depth_; }
  bool closed() const { return closed_; }
  bool has_free_slot() const { return capacity_ == kUnlimited || in_flight_ < capacity_; }

 private:
  void unlink(Waiter& w);
  void admit_waiters();

  uint32_t capacity_;
  uint32_t queue_depth_;
  uint32_t in_flight_ = 0;
  uint32_t waiting_ = 0;
  bool closed_ = false;
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
};

}  // namespace sluice::admission
