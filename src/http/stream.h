// http/stream.h
//
// The byte stream the HTTP layer reads and writes, on both sides of a proxy: a TCP
// socket in production; in unit tests, Beast's test::stream (fail_count fails the Nth
// operation, reads and writes come in short pieces), so every failure point of
// forward() and the handlers runs in-process, not only end to end. A TLS stream is the
// next implementation.
//
// A Stream models Asio's AsyncReadStream and AsyncWriteStream, so asio::async_write
// and co_await work on it as on a socket. Operations are type-erased with
// any_completion_handler: one indirect call per read or write. A plain TCP stream skips
// the erasure for reads and writes: the operation goes straight to the socket, because
// the erased path costs an allocation and two type-erased executors per operation
// (profiled: a fifth of a proxied request's user time). Failure injection in unit tests
// keeps the erased path.
//
// Threading: like a socket, a Stream and its operations belong to one executor.
#pragma once

#include <array>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "http/draining_socket.h"
#include "http/io.h"

namespace sluice::http {

class Stream {
 public:
  using executor_type = asio::any_io_executor;
  using IoHandler = asio::any_completion_handler<void(error_code, size_t)>;
  using WaitHandler = asio::any_completion_handler<void(error_code)>;

  // Up to 16 buffers of a write: write_some may write less than it is given, and
  // async_write calls again with the rest.
  struct ConstBuffers {
    using value_type = asio::const_buffer;
    using const_iterator = const asio::const_buffer*;
    std::array<asio::const_buffer, 16> items;
    size_t count = 0;
    const asio::const_buffer* begin() const { return items.data(); }
    const asio::const_buffer* end() const { return items.data() + count; }
  };

  // What is waiting to be read, looked at without reading it.
  enum class Peek {
    Nothing,  // no byte, no EOF: an idle connection
    Data,     // bytes nobody read yet
    Closed,   // the peer's FIN (or an error)
    Unknown,  // this kind of stream cannot tell
  };

  class Impl {
   public:
    virtual ~Impl() = default;
    virtual executor_type executor() = 0;
    virtual void read_some(asio::mutable_buffer buffer, IoHandler handler) = 0;
    virtual void write_some(const ConstBuffers& buffers, IoHandler handler) = 0;
    // Completes when the stream is readable (operation_not_supported if it cannot tell).
    virtual void wait_readable(WaitHandler handler) = 0;
    // Connects an upstream stream (no_delay set on success).
    virtual void connect(const tcp::endpoint& to, WaitHandler handler) = 0;
    virtual Peek peek() = 0;
    virtual std::optional<tcp::endpoint> remote_endpoint() = 0;
    // Ends writing; reads go on (a tunnel's half-close).
    virtual void shutdown_send() = 0;
    // Fails pending operations with operation_aborted.
    virtual void cancel() = 0;
    virtual void close() = 0;
    // The socket itself when reads and writes may bypass the erasure; null otherwise.
    virtual DrainingSocket* direct_socket() { return nullptr; }
  };

  Stream() = default;
  explicit Stream(std::unique_ptr<Impl> impl)
      : impl_(std::move(impl)), socket_(impl_ ? impl_->direct_socket() : nullptr) {}
  Stream(Stream&& other) noexcept
      : impl_(std::move(other.impl_)), socket_(std::exchange(other.socket_, nullptr)) {}
  Stream& operator=(Stream&& other) noexcept {
    impl_ = std::move(other.impl_);
    socket_ = std::exchange(other.socket_, nullptr);
    return *this;
  }
  // A TCP socket (accepted, or not yet connected).
  static Stream tcp(tcp::socket socket);

  explicit operator bool() const { return impl_ != nullptr; }
  executor_type get_executor() { return impl_->executor(); }

  template <typename MutableBufferSequence, typename Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    if constexpr (kDirect<Token>) {
      if (socket_)
        return socket_->async_read_some_draining(first(buffers), std::forward<Token>(token));
    }
    return asio::async_initiate<Token, void(error_code, size_t)>(
        [this](auto handler, asio::mutable_buffer b) { impl_->read_some(b, std::move(handler)); },
        token, first(buffers));
  }

  template <typename ConstBufferSequence, typename Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    ConstBuffers b;
    for (auto it = asio::buffer_sequence_begin(buffers);
         it != asio::buffer_sequence_end(buffers) && b.count < b.items.size(); ++it) {
      asio::const_buffer piece(*it);
      if (piece.size() > 0)
        b.items[b.count++] = piece;
    }
    if constexpr (kDirect<Token>) {
      if (socket_)
        return socket_->async_write_some(b, std::forward<Token>(token));
    }
    return asio::async_initiate<Token, void(error_code, size_t)>(
        [this](auto handler, const ConstBuffers& bufs) {
          impl_->write_some(bufs, std::move(handler));
        },
        token, b);
  }

  template <typename Token>
  auto async_wait_readable(Token&& token) {
    return asio::async_initiate<Token, void(error_code)>(
        [this](auto handler) { impl_->wait_readable(std::move(handler)); }, token);
  }

  template <typename Token>
  auto async_connect(const tcp::endpoint& to, Token&& token) {
    return asio::async_initiate<Token, void(error_code)>(
        [this](auto handler, const tcp::endpoint& ep) { impl_->connect(ep, std::move(handler)); },
        token, to);
  }

  // Writes what the socket takes at once, without waiting and without a round trip
  // through the event loop: the bytes written (0 with no error when the socket is full
  // or this stream cannot write directly; the caller then waits with async_write).
  size_t try_write(asio::const_buffer buffer, error_code& ec);

  Peek peek() { return impl_ ? impl_->peek() : Peek::Closed; }
  // The next read follows a write that succeeded: see DrainingSocket::next_read_may_wait.
  void next_read_may_wait() {
    if (socket_ != nullptr)
      socket_->next_read_may_wait();
  }
  // Watches an idle stream without a system call where it can (DrainingSocket::
  // watch_idle); false if this stream cannot, and the caller peeks instead.
  template <typename Handler>
  bool watch_idle(bool* seen, Handler&& handler) {
    return socket_ != nullptr && socket_->watch_idle(seen, std::forward<Handler>(handler));
  }
  std::optional<tcp::endpoint> remote_endpoint() {
    return impl_ ? impl_->remote_endpoint() : std::nullopt;
  }
  void shutdown_send() {
    if (impl_)
      impl_->shutdown_send();
  }
  void cancel() {
    if (impl_)
      impl_->cancel();
  }
  void close() {
    if (impl_)
      impl_->close();
  }

 private:
  // Whether the socket's own operation returns what the erased one does (it does for
  // completion handlers and use_awaitable, not for every token), so both can be returned.
  template <typename Token>
  static constexpr bool kDirect = std::is_same_v<
      decltype(std::declval<tcp::socket&>().async_read_some(asio::mutable_buffer(),
                                                            std::declval<Token>())),
      decltype(asio::async_initiate<Token, void(error_code, size_t)>(
          std::declval<void (*)(asio::any_completion_handler<void(error_code, size_t)>)>(),
          std::declval<Token&>()))>;

  template <typename MutableBufferSequence>
  static asio::mutable_buffer first(const MutableBufferSequence& buffers) {
    for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers);
         ++it) {
      asio::mutable_buffer b(*it);
      if (b.size() > 0)
        return b;
    }
    return {};
  }

  std::unique_ptr<Impl> impl_;
  DrainingSocket* socket_ = nullptr;  // impl_'s socket when it may be used directly
};

}  // namespace sluice::http
