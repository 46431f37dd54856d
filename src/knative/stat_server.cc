#include "knative/stat_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "http/connection.h"

namespace sluice::knative {

namespace asio = boost::asio;
namespace beast = boost::beast;
using http::kUseTuple;
using http::Task;
using http::tcp;
using namespace std::chrono_literals;

StatServer::StatServer(asio::any_io_executor executor,
                       FrameHandler on_frame,
                       StatServerOptions options)
    : executor_(executor), on_frame_(std::move(on_frame)), opts_(options), acceptor_(executor) {}

StatServer::~StatServer() {
  *alive_ = false;
  stop();
}

http::error_code StatServer::listen(const tcp::endpoint& endpoint) {
  if (auto ec = http::open_acceptor(acceptor_, endpoint, /*reuse_port=*/false))
    return ec;
  asio::co_spawn(executor_, accept_loop(), asio::detached);
  return {};
}

uint16_t StatServer::port() const {
  boost::system::error_code ec;
  return acceptor_.local_endpoint(ec).port();
}

void StatServer::stop() {
  boost::system::error_code ec;
  acceptor_.close(ec);
}

Task<void> StatServer::accept_loop() {
  auto alive = alive_;
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(kUseTuple);
    if (!*alive || ec == asio::error::operation_aborted || !acceptor_.is_open())
      co_return;
    if (ec)
      continue;  // e.g. EMFILE: the next accept may work
    if (*open_ >= opts_.max_connections) {
      socket.close(ec);  // bounded: the activator reconnects with backoff
      continue;
    }
    asio::co_spawn(executor_, serve(std::move(socket)), asio::detached);
  }
}

Task<void> StatServer::serve(tcp::socket socket) {
  auto alive = alive_;
  auto open = open_;
  ++*open;
  struct Release {
    std::shared_ptr<size_t> n;
    ~Release() { --*n; }
  } release{open};
  boost::system::error_code ignored;
  const std::string peer = [&] {
    const auto ep = socket.remote_endpoint(ignored);
    return ep.address().to_string() + ":" + std::to_string(ep.port());
  }();
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  beast::http::request_parser<beast::http::empty_body> parser;
  parser.header_limit(8 * 1024);
  stream.expires_after(10s);
  auto [rec, rn] = co_await beast::http::async_read(stream, buffer, parser, kUseTuple);
  if (rec)
    co_return;
  auto request = parser.release();
  stream.expires_never();  // the head's deadline; the websocket keeps its own (below)
  if (!beast::websocket::is_upgrade(request)) {
    // The kubelet's readiness and liveness probes (Knative: GET on port 8080).
    beast::http::response<beast::http::string_body> res{beast::http::status::ok, request.version()};
    res.set(beast::http::field::content_type, "text/plain");
    res.body() = "ok\n";
    res.keep_alive(false);
    res.prepare_payload();
    co_await beast::http::async_write(stream, res, kUseTuple);
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    co_return;
  }
  const bool forwarded = request.target() == "/forwarded";
  beast::websocket::stream<beast::tcp_stream> ws(std::move(stream));
  ws.read_message_max(opts_.max_frame);
  auto [aec] = co_await ws.async_accept(request, kUseTuple);
  if (aec)
    co_return;
  beast::websocket::stream_base::timeout t{};
  t.handshake_timeout = 10s;
  t.idle_timeout = opts_.idle_timeout;
  t.keep_alive_pings = false;  // the activators write every second
  ws.set_option(t);
  bool warned = false;
  for (;;) {
    beast::flat_buffer frame;
    auto [ec, n] = co_await ws.async_read(frame, kUseTuple);
    if (ec || !*alive)
      co_return;
    stats::wire::WireStatMessages msgs;
    const auto data = frame.cdata();
    if (!ws.got_binary() || !msgs.ParseFromArray(data.data(), static_cast<int>(data.size()))) {
      if (!warned)
        spdlog::warn(
            "stat websocket from {}: a {} frame of {} bytes is not WireStatMessages; "
            "skipped (and any more from this connection, silently)",
            peer, ws.got_binary() ? "binary" : "text", data.size());
      warned = true;
      continue;
    }
    on_frame_(msgs, forwarded);
  }
}

}  // namespace sluice::knative
