// http/draining_socket.h
//
// A TCP socket whose reads can wait for epoll's readiness edge without calling recv()
// first, when the kernel said the last read emptied the socket.
//
// Why: Asio 1.81's epoll reactor tries every read once before it waits (a "speculative"
// read) and only stops trying once a read returned EOF. A proxy reads right after
// writing, before the peer had time to answer: the client's next request after its
// response, the app's response after its request. Each of those tries is a recv() that
// fails with EAGAIN: two of the ~7 system calls a proxied request made (perf stat -e
// 'syscalls:sys_enter_*' over wrk; HAProxy and nginx skip them).
//
// How: when a read fills less than its buffer, the socket was empty at that instant
// (tcp_recvmsg copies until the queue is empty or the buffer full). The read then tells
// the reactor the socket is exhausted (its own status for EOF), and the reactor's next
// read waits. That is safe because Asio registers sockets edge-triggered: bytes, a FIN
// or a reset arriving after that read raise a new edge, and an edge makes the reactor
// try again.
//
// Two things raise no edge of their own: a FIN or a reset that arrived together with the
// bytes just read. Epoll's event mask says so (EPOLLRDHUP, EPOLLHUP, EPOLLERR), as
// HAProxy and nginx use it, but Asio neither asks for EPOLLRDHUP nor passes the mask to
// an operation. So each socket's registration is widened with EPOLLRDHUP once (kept in
// Asio's own record of it, so Asio's later changes keep it), and a read looks at the
// mask of the epoll wakeup it runs in: a short read is "exhausted" only when that mask
// shows no peer close. (A read run outside a wakeup sees the mask of the last one: a
// close that arrived since raised a wakeup still to come.) Where the registration could
// not be widened, no read reports exhaustion.
//
// A plain recv() does this: recvmsg() with TCP_INQ, tried first, said the same at ~3% of
// the proxy's CPU for the message header and control data (perf, 2026-12-07).
//
// Only a read the caller marks with next_read_may_wait() - one that follows a write of
// ours that succeeded - waits without trying; every other read tries recv() first, as
// Asio does. The first read of a request after a response and the first read of a
// response after its request are marked: those are the ones that found nothing.
//
// This reaches into Asio's detail layer (reactor_op, the reactor's start_op), so it
// is compiled only against the Boost it was written for, with the epoll reactor; on
// anything else async_read_some_draining is plain async_read_some.
//
// Threading: as a socket; one executor.
#pragma once

#include <boost/version.hpp>

#include "http/io.h"

#if BOOST_VERSION == 108100 && defined(BOOST_ASIO_HAS_EPOLL) && \
    !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && !defined(BOOST_ASIO_WINDOWS)
#define SLUICE_DRAINING_READS 1
#include <sys/epoll.h>
#include <sys/socket.h>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_alloc_helpers.hpp>
#include <boost/asio/detail/handler_cont_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/detail/socket_ops.hpp>
#include <cerrno>
#include <cstdint>
#endif

namespace sluice::http {

#ifdef SLUICE_DRAINING_READS
namespace draining {

namespace ad = boost::asio::detail;

// Asio 1.81 epoll reactor internals this needs (draining_socket.cc reaches them).
// Widens the descriptor's registration with EPOLLRDHUP, keeping Asio's record in step;
// true when it holds (also when it already did).
bool watch_peer_close(ad::reactor& reactor, ad::reactor::per_descriptor_data state, int fd);
// The event mask of the descriptor's latest epoll wakeup.
uint32_t last_events(ad::reactor::per_descriptor_data state);

// The reactor operation: one non-blocking recv(). A short read, with no peer close in
// the wakeup's event mask, reports the socket empty (`state` null: never).
class RecvBase : public ad::reactor_op {
 public:
  RecvBase(func_type complete,
           int fd,
           asio::mutable_buffer buffer,
           ad::reactor::per_descriptor_data state)
      : reactor_op(error_code(), &RecvBase::do_perform, complete),
        fd_(fd),
        buffer_(buffer),
        state_(state) {}

  static status do_perform(reactor_op* base) {
    auto* o = static_cast<RecvBase*>(base);
    ssize_t n;
    do {
      n = ::recv(o->fd_, o->buffer_.data(), o->buffer_.size(), MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    o->bytes_transferred_ = 0;
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return not_done;  // wait for the edge
      o->ec_ = error_code(errno, asio::error::get_system_category());
      return done;
    }
    if (n == 0) {
      o->ec_ = asio::error::eof;
      return done;  // a read after EOF sees EOF again
    }
    o->ec_ = error_code();
    o->bytes_transferred_ = static_cast<std::size_t>(n);
    if (o->state_ != nullptr && o->bytes_transferred_ < o->buffer_.size() &&
        (last_events(o->state_) & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) == 0)
      return done_and_exhausted;
    return done;
  }

 private:
  int fd_;
  asio::mutable_buffer buffer_;
  ad::reactor::per_descriptor_data state_;
};

// Waits for anything to arrive on an idle connection: bytes or a FIN. perform() marks
// `*seen` the moment it finds something (it peeks, so nothing is consumed), which is
// before any handler runs: a caller that sees the mark unset knows the operation is
// still waiting and that cancelling it loses nothing.
class WatchBase : public ad::reactor_op {
 public:
  WatchBase(func_type complete, int fd, bool* seen)
      : reactor_op(error_code(), &WatchBase::do_perform, complete), fd_(fd), seen_(seen) {}

  static status do_perform(reactor_op* base) {
    auto* o = static_cast<WatchBase*>(base);
    char probe;
    if (!ad::socket_ops::non_blocking_recv1(o->fd_, &probe, 1, MSG_PEEK, true, o->ec_,
                                            o->bytes_transferred_))
      return not_done;
    *o->seen_ = true;
    return done;
  }

 private:
  int fd_;
  bool* seen_;
};

// An operation of `Base` that owns its handler, as Asio's own reactive_socket_recv_op
// does (same allocation, outstanding-work and upcall rules). The handler gets
// (error_code, bytes).
template <typename Base, typename Handler, typename IoExecutor>
class HandlerOp : public Base {
 public:
  BOOST_ASIO_DEFINE_HANDLER_PTR(HandlerOp);

  template <typename... Args>
  HandlerOp(Handler& handler, const IoExecutor& io_ex, Args... args)
      : Base(&HandlerOp::do_complete, args...),
        handler_(std::move(handler)),
        work_(handler_, io_ex) {}

  static void do_complete(void* owner,
                          ad::operation* base,
                          const error_code& /*ec*/,
                          std::size_t /*bytes*/) {
    auto* o = static_cast<HandlerOp*>(base);
    ptr p = {std::addressof(o->handler_), o, o};
    ad::handler_work<Handler, IoExecutor> w(std::move(o->work_));
    // The handler is moved out before the operation's memory is freed: it may own it.
    ad::binder2<Handler, error_code, std::size_t> handler(o->handler_, o->ec_,
                                                          o->bytes_transferred_);
    p.h = std::addressof(handler.handler_);
    p.reset();
    if (owner) {
      ad::fenced_block b(ad::fenced_block::half);
      w.complete(handler, handler.handler_);
    }
  }

 private:
  Handler handler_;
  ad::handler_work<Handler, IoExecutor> work_;
};

// Per-operation cancellation (awaitable operators, timeouts bound to a slot).
class Cancellation {
 public:
  Cancellation(ad::reactor* reactor, ad::reactor::per_descriptor_data* data, int fd)
      : reactor_(reactor), data_(data), fd_(fd) {}
  void operator()(asio::cancellation_type_t type) {
    if (!!(type & (asio::cancellation_type::terminal | asio::cancellation_type::partial |
                   asio::cancellation_type::total)))
      reactor_->cancel_ops_by_key(fd_, *data_, ad::reactor::read_op, this);
  }

 private:
  ad::reactor* reactor_;
  ad::reactor::per_descriptor_data* data_;
  int fd_;
};

}  // namespace draining
#endif

class DrainingSocket : public tcp::socket {
 public:
  explicit DrainingSocket(tcp::socket socket) : tcp::socket(std::move(socket)) {}

  // async_read_some, except that it may skip the first recv() (see the top of this file).
  template <typename Token>
  auto async_read_some_draining(asio::mutable_buffer buffer, Token&& token) {
#ifdef SLUICE_DRAINING_READS
    if (buffer.size() > 0) {
      return asio::async_initiate<Token, void(error_code, std::size_t)>(
          [this](auto handler, asio::mutable_buffer b) { start(b, handler); }, token, buffer);
    }
#endif
    return async_read_some(buffer, std::forward<Token>(token));
  }

  // The next read follows a write of ours that succeeded (a response, a request): it
  // may wait for readiness without trying recv() first when the last read emptied the
  // socket. Only then: a reset that arrived with the last bytes read raises no edge of
  // its own, and a write is what finds it (EPIPE), so a read that follows a read tries
  // first.
  void next_read_may_wait() {
    may_wait_ = true;
  }

  // Watches an idle socket: sets *seen as soon as bytes or a FIN are there to read,
  // then completes with (error_code, 0), or operation_aborted when cancelled first.
  // `seen` must outlive the socket's open state: closing or cancelling the socket ends
  // the watch. False, and nothing started, where this build cannot watch.
  template <typename Handler>
  bool watch_idle(bool* seen, Handler handler) {
#ifdef SLUICE_DRAINING_READS
    namespace ad = boost::asio::detail;
    auto& impl = impl_.get_implementation();
    if (!is_open())
      return false;
    using Op = draining::HandlerOp<draining::WatchBase, Handler, executor_type>;
    typename Op::ptr p = {std::addressof(handler), Op::ptr::allocate(handler), nullptr};
    p.p = new (p.v) Op(handler, impl_.get_executor(), impl.socket_, seen);
    start_op(impl, p.p, false);
    p.v = p.p = nullptr;
    return true;
#else
    (void)seen;
    (void)handler;
    return false;
#endif
  }

 private:
#ifdef SLUICE_DRAINING_READS
  template <typename Handler>
  void start(asio::mutable_buffer buffer, Handler& handler) {
    namespace ad = boost::asio::detail;
    auto& impl = impl_.get_implementation();
    // (Per read, not per socket: a reopened socket gets a fresh registration. Once
    // widened this is two loads.)
    const bool rdhup = impl.socket_ >= 0 &&
                       draining::watch_peer_close(reactor(), impl.reactor_data_, impl.socket_);
    const bool is_continuation = boost_asio_handler_cont_helpers::is_continuation(handler);
    auto slot = asio::get_associated_cancellation_slot(handler);
    using Op = draining::HandlerOp<draining::RecvBase, Handler, executor_type>;
    typename Op::ptr p = {std::addressof(handler), Op::ptr::allocate(handler), nullptr};
    p.p = new (p.v) Op(handler, impl_.get_executor(), impl.socket_, buffer,
                       rdhup ? impl.reactor_data_ : nullptr);
    if (slot.is_connected()) {
      p.p->cancellation_key_ = &slot.template emplace<draining::Cancellation>(
          &reactor(), &impl.reactor_data_, impl.socket_);
    }
    const bool may_wait = std::exchange(may_wait_, false);
    if (!may_wait && impl.socket_ >= 0 && p.p->perform() != ad::reactor_op::not_done) {
      reactor().post_immediate_completion(p.p, is_continuation);
    } else {
      start_op(impl, p.p, is_continuation);
    }
    p.v = p.p = nullptr;
  }

  template <typename Impl>
  void start_op(Impl& impl, boost::asio::detail::reactor_op* op, bool is_continuation) {
    namespace ad = boost::asio::detail;
    if ((impl.state_ & ad::socket_ops::non_blocking) != 0 ||
        ad::socket_ops::set_internal_non_blocking(impl.socket_, impl.state_, true, op->ec_)) {
      reactor().start_op(ad::reactor::read_op, impl.socket_, impl.reactor_data_, op,
                         is_continuation, true);
    } else {
      reactor().post_immediate_completion(op, is_continuation);
    }
  }

  // Looked up once: use_service takes the context's lock.
  boost::asio::detail::reactor& reactor() {
    if (reactor_ == nullptr)
      reactor_ = &asio::use_service<boost::asio::detail::reactor>(
          asio::query(impl_.get_executor(), asio::execution::context));
    return *reactor_;
  }

  boost::asio::detail::reactor* reactor_ = nullptr;
#endif
  bool may_wait_ = false;
};

}  // namespace sluice::http
