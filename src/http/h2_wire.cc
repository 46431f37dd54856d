#include "http/h2_wire.h"

#include <spdlog/spdlog.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/write.hpp>

#include "http/watchdog.h"

namespace sluice::http {

Task<void> H2Wire::run(std::string received) {
  using namespace asio::experimental::awaitable_operators;
  co_await (read_loop(std::move(received)) && write_loop());
}

Task<void> H2Wire::read_loop(std::string received) {
  if (!received.empty()) {
    const ssize_t rv = nghttp2_session_mem_recv(
        session, reinterpret_cast<const uint8_t*>(received.data()), received.size());
    if (rv < 0) {
      recv_error = static_cast<int>(rv);
      dead = true;
    }
    notify();
  }
  while (!dead) {
    if (!nghttp2_session_want_read(session))
      break;
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(in_), kUseTuple);
    if (ec) {
      dead = true;
      break;
    }
    const ssize_t rv = nghttp2_session_mem_recv(session, in_.data(), n);
    if (rv < 0) {
      spdlog::debug("{}: HTTP/2 session failed: {}", name, nghttp2_strerror(static_cast<int>(rv)));
      recv_error = static_cast<int>(rv);
      dead = true;
    }
    notify();
  }
  if (dead) {
    // The session is over (the peer broke the protocol, flooded it, or hung up): a
    // writer blocked on a peer that stopped reading must not hold the socket.
    stream.cancel();
  }
  notify();
}

Task<void> H2Wire::write_loop() {
  for (;;) {
    out_.clear();
    for (;;) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session, &data);
      if (n < 0) {
        dead = true;
        break;
      }
      if (n == 0)
        break;
      out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
      if (out_.size() >= 64 * 1024)
        break;
    }
    if (!out_.empty()) {
      auto [ec, n] = co_await asio::async_write(stream, asio::buffer(out_), kUseTuple);
      if (ec)
        dead = true;
      if (!dead)
        continue;
    }
    if (dead)
      break;
    if (!nghttp2_session_want_read(session) && !nghttp2_session_want_write(session))
      break;  // GOAWAY both ways and no stream left
    if (!write_pending)
      co_await writer_wake.wait();
    write_pending = false;
  }
  dead = true;
  stream.cancel();  // ends the reader's wait
}

Task<void> H2Wire::linger(core::TimeSource& time) {
  stream.shutdown_send();
  Watchdog limit(time, stream.get_executor(), [this] { stream.close(); });
  limit.arm(time.now() + std::chrono::seconds(2));
  size_t dropped = 0;
  while (dropped < 1024 * 1024) {
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(in_), kUseTuple);
    if (ec)
      break;
    dropped += n;
  }
  stream.close();
}

}  // namespace sluice::http
