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
// How: reads are recvmsg() with TCP_INQ, so the kernel reports, in the same call, what is
// left to read (a received FIN counts as 1). Nothing left: the read tells the reactor the
// socket is exhausted (its own status for EOF), and the reactor's next read waits. That
// is safe because Asio registers sockets edge-triggered: bytes, a FIN or a reset arriving
// after that read raise a new edge, and an edge makes the reactor try again.
//
// One thing raises no edge of its own: a reset that arrived together with the bytes just
// read (TCP_INQ does not count it; HAProxy and nginx see it in epoll's event mask, which
// Asio does not pass on). So only a read the caller marks with next_read_may_wait() -
// one that follows a write of ours that succeeded, which a reset would have failed with
// EPIPE - waits without trying; every other read tries recv() first, as Asio does. The
// first read of a request after a response and the first read of a response after its
// request are marked: those are the ones that found nothing.
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
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_alloc_helpers.hpp>
#include <boost/asio/detail/handler_cont_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/detail/socket_ops.hpp>
#include <cerrno>
#include <cstring>
#endif

namespace sluice::http {

#ifdef SLUICE_DRAINING_READS
namespace draining {

namespace ad = boost::asio::detail;

// The reactor operation: one non-blocking recvmsg(). With TCP_INQ on, the kernel says
// in the same call how much is left to read, counting a received FIN as 1; nothing left
// reports the socket empty.
class RecvBase : public ad::reactor_op {
 public:
  RecvBase(func_type complete, int fd, asio::mutable_buffer buffer, bool inq)
      : reactor_op(error_code(), &RecvBase::do_perform, complete),
        fd_(fd),
        buffer_(buffer),
        inq_(inq) {}

  static status do_perform(reactor_op* base) {
    auto* o = static_cast<RecvBase*>(base);
    iovec iov{o->buffer_.data(), o->buffer_.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (o->inq_) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
    }
    ssize_t n;
    do {
      n = ::recvmsg(o->fd_, &msg, MSG_DONTWAIT);
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
    for (cmsghdr* c = o->inq_ ? CMSG_FIRSTHDR(&msg) : nullptr; c != nullptr;
         c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_TCP && c->cmsg_type == TCP_CM_INQ) {
        int left;
        std::memcpy(&left, CMSG_DATA(c), sizeof(left));
        if (left == 0)
          return done_and_exhausted;
      }
    }
    return done;
  }

 private:
  int fd_;
  asio::mutable_buffer buffer_;
  bool inq_;
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
    if (impl.socket_ != inq_fd_ && impl.socket_ >= 0) {
      const int on = 1;
      inq_ = ::setsockopt(impl.socket_, SOL_TCP, TCP_INQ, &on, sizeof(on)) == 0;
      inq_fd_ = impl.socket_;
    }
    const bool is_continuation = boost_asio_handler_cont_helpers::is_continuation(handler);
    auto slot = asio::get_associated_cancellation_slot(handler);
    using Op = draining::HandlerOp<draining::RecvBase, Handler, executor_type>;
    typename Op::ptr p = {std::addressof(handler), Op::ptr::allocate(handler), nullptr};
    p.p = new (p.v) Op(handler, impl_.get_executor(), impl.socket_, buffer, inq_);
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
  int inq_fd_ = -1;  // the descriptor TCP_INQ was asked for
  bool inq_ = false;
#endif
  bool may_wait_ = false;
};

}  // namespace sluice::http
