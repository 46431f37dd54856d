#include "activator/h2c_refusal.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/write.hpp>

#include "core/timer.h"
#include "http/connection.h"

namespace sluice::activator {

namespace asio = boost::asio;
using http::kUseTuple;
using http::Task;
using http::tcp;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

void frame(std::string& out, uint8_t type, std::string_view payload) {
  const size_t n = payload.size();
  out += static_cast<char>((n >> 16) & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  out += static_cast<char>(n & 0xff);
  out += static_cast<char>(type);
  out += '\0';                // flags
  out.append("\0\0\0\0", 4);  // stream 0
  out.append(payload);
}

}  // namespace

std::string H2cRefusal::answer(std::string_view first_bytes, uint16_t http1_port) {
  const std::string why = fmt::format(
      "sluice activator: HTTP/2 (h2c) is not served yet; send HTTP/1.1 to port {}", http1_port);
  std::string out;
  if (kPreface.starts_with(first_bytes.substr(0, kPreface.size())) && !first_bytes.empty() &&
      first_bytes.starts_with("PRI ")) {
    frame(out, 0x4, {});                // SETTINGS: the server's preface
    std::string goaway("\0\0\0\0", 4);  // last stream id 0: nothing was processed
    goaway.append("\0\0\0\x0d", 4);     // HTTP_1_1_REQUIRED
    goaway += why;
    frame(out, 0x7, goaway);
    return out;
  }
  return fmt::format(
      "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: text/plain\r\nContent-Length: "
      "{}\r\n"
      "Connection: close\r\n\r\n{}\n",
      why.size() + 1, why);
}

H2cRefusal::H2cRefusal(asio::any_io_executor executor, core::TimeSource& time, uint16_t http1_port)
    : executor_(std::move(executor)), time_(time), http1_port_(http1_port) {}

http::error_code H2cRefusal::listen(uint16_t port) {
  // Every address, as the activator's HTTP/1 port (http::Server::listen_on_all).
  acceptor_ = std::make_unique<tcp::acceptor>(executor_);
  http::error_code ec = http::open_acceptor(*acceptor_, {asio::ip::address_v6::any(), port}, false);
  if (ec == asio::error::address_family_not_supported) {
    acceptor_ = std::make_unique<tcp::acceptor>(executor_);
    ec = http::open_acceptor(*acceptor_, {asio::ip::address_v4::any(), port}, false);
  }
  if (ec)
    return ec;
  asio::co_spawn(executor_, accept_loop(), asio::detached);
  return {};
}

void H2cRefusal::stop() {
  if (acceptor_) {
    http::error_code ec;
    acceptor_->close(ec);
  }
}

Task<void> H2cRefusal::accept_loop() {
  core::Timer pause(time_, executor_);
  for (;;) {
    auto [ec, socket] = co_await acceptor_->async_accept(kUseTuple);
    if (ec == asio::error::operation_aborted || !acceptor_->is_open())
      co_return;
    if (ec) {  // out of descriptors, say: let it pass rather than spin
      pause.expires_after(100ms);
      co_await pause.async_wait(kUseTuple);
      continue;
    }
    if (open_ >= 256)
      continue;  // the socket closes here
    asio::co_spawn(executor_, refuse(std::move(socket)), asio::detached);
  }
}

Task<void> H2cRefusal::refuse(tcp::socket socket) {
  using namespace asio::experimental::awaitable_operators;
  ++open_;
  core::Timer deadline(time_, executor_);
  deadline.expires_after(5s);
  auto exchange = [&]() -> Task<void> {
    char buf[24];
    size_t got = 0;
    // Enough to tell a preface ("PRI ") from an HTTP/1 request line.
    while (got < 4) {
      auto [ec, n] =
          co_await socket.async_read_some(asio::buffer(buf + got, sizeof(buf) - got), kUseTuple);
      if (ec)
        co_return;
      got += n;
    }
    const std::string out = answer(std::string_view(buf, got), http1_port_);
    co_await asio::async_write(socket, asio::buffer(out), kUseTuple);
    http::error_code ec;
    socket.shutdown(tcp::socket::shutdown_send, ec);
    // Let the client read the answer before the close (a reset could discard it).
    char sink[512];
    for (;;) {
      auto [rec, n] = co_await socket.async_read_some(asio::buffer(sink), kUseTuple);
      if (rec)
        break;
    }
  };
  auto timer = [&]() -> Task<void> { co_await deadline.async_wait(kUseTuple); };
  co_await (exchange() || timer());
  http::error_code ec;
  socket.close(ec);
  --open_;
}

}  // namespace sluice::activator
