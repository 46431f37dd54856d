#include "admission/breaker.h"

namespace sluice::admission {

Waiter::~Waiter() {
  if (state_ == State::Queued && queue_ != nullptr)
    queue_->cancel(*this);
}

Breaker::Admit Breaker::acquire(Waiter& w, core::TimePoint now, core::TimePoint deadline) {
  if (closed_) {
    w.state_ = Waiter::State::Closed;
    return Admit::Closed;
  }
  // A free slot goes to the queue first: admitting a newcomer past parked waiters would
  // break FIFO order.
  if (waiting_ == 0 && has_free_slot()) {
    ++in_flight_;
    w.state_ = Waiter::State::Admitted;
    return Admit::Admitted;
  }
  if (waiting_ >= queue_depth_)
    return Admit::QueueFull;
  if (deadline <= now) {
    w.state_ = Waiter::State::Expired;
    return Admit::Expired;
  }
  w.state_ = Waiter::State::Queued;
  w.queue_ = this;
  w.enqueued_at_ = now;
  w.deadline_ = deadline;
  w.prev_ = tail_;
  w.next_ = nullptr;
  if (tail_ != nullptr) {
    tail_->next_ = &w;
  } else {
    head_ = &w;
  }
  tail_ = &w;
  ++waiting_;
  return Admit::Queued;
}

bool Breaker::try_acquire() {
  if (closed_ || waiting_ > 0 || !has_free_slot())
    return false;
  ++in_flight_;
  return true;
}

void Breaker::release() {
  if (in_flight_ > 0)
    --in_flight_;
  admit_waiters();
}

void Breaker::admit_waiters() {
  while (head_ != nullptr && has_free_slot()) {
    Waiter& w = *head_;
    unlink(w);
    ++in_flight_;
    w.state_ = Waiter::State::Admitted;
    w.on_wake();
  }
}

bool Breaker::expire(Waiter& w, core::TimePoint now) {
  if (w.state_ != Waiter::State::Queued || now < w.deadline_)
    return false;
  unlink(w);
  w.state_ = Waiter::State::Expired;
  return true;
}

void Breaker::cancel(Waiter& w) {
  if (w.state_ != Waiter::State::Queued)
    return;
  unlink(w);
  w.state_ = Waiter::State::Cancelled;
}

void Breaker::set_capacity(uint32_t capacity) {
  capacity_ = capacity;
  admit_waiters();
}

void Breaker::close() {
  closed_ = true;
  fail_waiters();
}

void Breaker::fail_waiters() {
  while (head_ != nullptr) {
    Waiter& w = *head_;
    unlink(w);
    w.state_ = Waiter::State::Closed;
    w.on_wake();
  }
}

void Breaker::unlink(Waiter& w) {
  if (w.prev_ != nullptr) {
    w.prev_->next_ = w.next_;
  } else {
    head_ = w.next_;
  }
  if (w.next_ != nullptr) {
    w.next_->prev_ = w.prev_;
  } else {
    tail_ = w.prev_;
  }
  w.prev_ = w.next_ = nullptr;
  w.queue_ = nullptr;
  --waiting_;
}

}  // namespace sluice::admission
