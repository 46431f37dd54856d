#include "http/connection.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

namespace sluice::http {

namespace {

using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

Task<void> serve_connection(std::shared_ptr<ClientConnection> conn, Handler& handler) {
  co_await conn->serve(handler);
}

}  // namespace

std::string_view to_string(Rejection r) {
  switch (r) {
    case Rejection::Malformed:
      return "malformed";
    case Rejection::HeadTooLarge:
      return "header_too_large";
    case Rejection::HeaderTimeout:
      return "header_timeout";
    case Rejection::AmbiguousFraming:
      return "ambiguous_framing";
    case Rejection::Count:
      break;
  }
  return "unknown";
}

ClientConnection::ClientConnection(Worker& worker,
                                   Stream stream,
                                   const ServerOptions& options,
                                   std::shared_ptr<ServerLoad> load)
    : worker_(worker),
      stream_(std::move(stream)),
      options_(options),
      load_(std::move(load)),
      timer_(worker.time(), worker.executor()) {
  if (auto remote = stream_.remote_endpoint()) {
    // An IPv4 client of a dual-stack socket shows as ::ffff:a.b.c.d; it is a.b.c.d to
    // X-Forwarded-For and to the check that a pod's push comes from the pod.
    auto address = remote->address();
    if (address.is_v6() && address.to_v6().is_v4_mapped())
      address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
    client_ip_ = address.to_string();
  }
  load_->open_connections.fetch_add(1, std::memory_order_relaxed);
}

ClientConnection::~ClientConnection() {
  load_->open_connections.fetch_sub(1, std::memory_order_relaxed);
}

void ClientConnection::watch(Watch what, core::TimePoint deadline) {
  watch_ = what;
  deadline_ = deadline;
  timed_out_ = false;
  if (!timer_armed_ || deadline < timer_at_)
    arm_timer(deadline);
}

void ClientConnection::arm_timer(core::TimePoint at) {
  timer_armed_ = true;
  timer_at_ = at;
  timer_.expires_at(at);
  timer_.async_wait([self = shared_from_this(), at](error_code ec) {
    // A cancelled wait, or one that fired after a re-arm, is stale.
    if (ec || self->timer_at_ != at)
      return;
    self->timer_armed_ = false;
    self->on_timer();
  });
}

void ClientConnection::on_timer() {
  if (watch_ == Watch::None)
    return;
  if (worker_.time().now() < deadline_) {
    arm_timer(deadline_);  // the deadline moved later since this wait started
    return;
  }
  timed_out_ = true;
  switch (watch_) {
    case Watch::CloseClient:
      stream_.close();
      break;
    case Watch::AbortUpstream:
      if (upstream_ != nullptr) {
        upstream_->stream.close();
      } else {
        stream_.close();
      }
      break;
    case Watch::None:
      break;
  }
  watch_ = Watch::None;
}

void ClientConnection::close_gracefully() {
  closing_ = true;
  if (idle_)
    stream_.close();
}

Task<std::pair<error_code, size_t>> ClientConnection::read_some(size_t hint) {
  auto buf = buffer_.prepare(hint);
  auto [ec, n] = co_await stream_.async_read_some(buf, kUseTuple);
  buffer_.commit(n);
  co_return std::pair{ec, n};
}

Task<error_code> ClientConnection::write(std::string_view data,
                                         const std::vector<std::string_view>* pieces) {
  if (pieces == nullptr || pieces->empty()) {
    auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(data), kUseTuple);
    co_return ec;
  }
  std::vector<asio::const_buffer> bufs;
  bufs.reserve(pieces->size() + 1);
  if (!data.empty())
    bufs.emplace_back(data.data(), data.size());
  for (auto p : *pieces) bufs.emplace_back(p.data(), p.size());
  auto [ec, n] = co_await asio::async_write(stream_, bufs, kUseTuple);
  co_return ec;
}

// Reads until a complete request head is parsed. Answers and returns false when the
// connection should end (EOF, error, rejection).
Task<bool> ClientConnection::read_head() {
  parser_.emplace(head_, body_);
  parser_->header_limit(static_cast<uint32_t>(options_.max_head_bytes));
  parser_->body_limit(boost::none);
  parser_->eager(false);
  bool first_byte_seen = buffer_.size() > 0;
  if (first_byte_seen)
    watch(Watch::CloseClient, worker_.time().now() + options_.header_timeout);
  // Beast may take part of a head (n > 0 with need_more) and expects the rest next; the
  // head's views point into what it took, so the bytes stay in the buffer (`parsed`
  // marks how far) until the head is complete, and follow the buffer if a read moves it.
  size_t parsed = 0;
  for (;;) {
    if (buffer_.size() > parsed) {
      error_code ec;
      const auto data = buffer_.data();
      const size_t n = parser_->put_body(
          asio::const_buffer(static_cast<const char*>(data.data()) + parsed, data.size() - parsed),
          ec);
      if (!ec || ec == bhttp::error::need_more)
        parsed += n;
      if (!ec) {
        if (parser_->is_header_done()) {
          buffer_.consume(parsed);
          unwatch();
          co_return true;
        }
        continue;
      }
      if (ec == bhttp::error::need_more && n > 0)
        continue;
      // Beast checks its limit against what one put() sees; fed in parts, the whole
      // head is checked here.
      if (ec == bhttp::error::need_more && buffer_.size() > options_.max_head_bytes)
        ec = bhttp::error::header_limit;
      if (ec != bhttp::error::need_more) {
        Rejection why = Rejection::Malformed;
        int status = 400;
        std::string body;
        if (ec == bhttp::error::header_limit) {
          why = Rejection::HeadTooLarge;
          status = 431;
          body = "request header fields too large: limit is " +
                 std::to_string(options_.max_head_bytes) + " bytes";
        } else if (ec == bhttp::error::bad_content_length ||
                   ec == bhttp::error::multiple_content_length ||
                   ec == bhttp::error::bad_transfer_encoding ||
                   ec == ParseError::TransferEncodingNotChunked ||
                   ec == ParseError::TransferEncodingOnHttp10) {
          why = Rejection::AmbiguousFraming;
          body = "bad request: ambiguous message framing (" + ec.message() + ")";
        } else {
          body = "bad request: malformed request (" + ec.message() + ")";
        }
        if (options_.on_reject)
          options_.on_reject(worker_, why);
        scratch_.clear();
        write_local_response(status, body, /*close=*/true, {{"Sluice-Error", to_string(why)}},
                             scratch_);
        co_await write(scratch_);
        co_return false;
      }
    }
    const char* base = static_cast<const char*>(buffer_.data().data());
    auto [ec, n] = co_await read_some(4096);
    head_.rebase(base, static_cast<const char*>(buffer_.data().data()));
    if (ec) {
      if (timed_out_ && first_byte_seen) {
        if (options_.on_reject)
          options_.on_reject(worker_, Rejection::HeaderTimeout);
        spdlog::debug("{}: client {} did not finish its request head in time", options_.name,
                      client_ip_);
      }
      co_return false;
    }
    if (!first_byte_seen) {
      first_byte_seen = true;
      idle_ = false;
      watch(Watch::CloseClient, worker_.time().now() + options_.header_timeout);
    }
  }
}

Task<void> ClientConnection::serve(Handler& handler) {
  auto self = shared_from_this();
  auto& time = worker_.time();
  bool first = true;
  while (!closing_) {
    idle_ = true;
    // A request body grew the buffer; an idle keep-alive connection should not keep it.
    if (buffer_.size() == 0 && buffer_.capacity() > 8 * 1024)
      buffer_.shrink_to_fit();
    watch(Watch::CloseClient,
          time.now() + (first ? options_.header_timeout : options_.keepalive_idle));
    if (!co_await read_head())
      break;
    idle_ = false;
    first = false;
    Exchange exchange(*this, time.now());
    load_->active_requests.fetch_add(1, std::memory_order_relaxed);
    co_await handler.handle(exchange);
    load_->active_requests.fetch_sub(1, std::memory_order_relaxed);
    unwatch();
    if (!exchange.responded() || exchange.close_after_response() || !parser_->keep_alive() ||
        !parser_->is_done()) {
      break;
    }
  }
  unwatch();
  stream_.shutdown_send();
  stream_.close();
  timer_.cancel();
  unlink();  // from the worker's connection list
}

HangupWatch::HangupWatch(ClientConnection& conn, std::function<void()> on_hangup) : conn_(conn) {
  // A FIN that came with the head is already buffered: no readiness event will follow.
  if (conn.stream().peek() == Stream::Peek::Closed) {
    on_hangup();
    return;
  }
  conn.stream().async_wait_readable([alive = alive_, self = conn.shared_from_this(),
                                     on_hangup = std::move(on_hangup)](const error_code& ec) {
    if (!ec && *alive && self->stream().peek() == Stream::Peek::Closed)
      on_hangup();
  });
}

HangupWatch::~HangupWatch() {
  *alive_ = false;
  conn_.stream().cancel();
}

Task<error_code> Exchange::read_body(std::string& out) {
  auto& rq = *conn_.parser();
  conn_.head().own(conn_.head_storage());
  out.clear();
  if (rq.is_done())
    co_return error_code{};
  if (auto e = conn_.head().get(bhttp::field::expect);
      e && boost::beast::iequals(*e, "100-continue")) {
    if (auto ec = co_await conn_.write("HTTP/1.1 100 Continue\r\n\r\n"))
      co_return ec;
  }
  conn_.watch(ClientConnection::Watch::CloseClient,
              conn_.worker().time().now() + conn_.options_.header_timeout);
  rq.eager(true);
  error_code result;
  while (!rq.is_done()) {
    error_code ec;
    size_t n = 0;
    if (conn_.buffer().size() > 0)
      n = rq.put_body(conn_.buffer().data(), ec);
    if (conn_.buffer().size() == 0 || (ec == bhttp::error::need_more && n == 0)) {
      auto [rec, got] = co_await conn_.read_some();
      if (rec) {
        result = rec;
        break;
      }
      continue;
    }
    if (ec && ec != bhttp::error::need_more) {
      result = ec;
      break;
    }
    for (auto piece : conn_.body().pieces) out.append(piece);
    conn_.body().clear();
    conn_.buffer().consume(n);
  }
  conn_.unwatch();
  if (result)
    close_after_ = true;
  co_return result;
}

Task<void> Exchange::respond(int status, std::string_view body, const ExtraHeaders& extra) {
  auto& parser = *conn_.parser();
  const bool close = close_after_ || conn_.closing() || !parser.keep_alive() || !parser.is_done();
  if (close)
    close_after_ = true;
  auto& out = conn_.scratch();
  out.clear();
  write_local_response(status, body, close, extra, out);
  if (request().method == bhttp::verb::head)
    out.resize(out.size() - body.size());
  error_code ec = co_await conn_.write(out);
  mark_responded(status);
  if (ec)
    close_after_ = true;
}

Server::Server(std::vector<Worker*> workers, Handler& handler, ServerOptions options)
    : workers_(std::move(workers)), handler_(handler), options_(std::move(options)) {}

error_code open_acceptor(tcp::acceptor& acceptor, const tcp::endpoint& endpoint, bool reuse_port) {
  error_code ec;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec && endpoint.address().is_v6() && endpoint.address().is_unspecified())
    acceptor.set_option(asio::ip::v6_only(false), ec);
  if (!ec)
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && reuse_port)
    acceptor.set_option(ReusePort(true), ec);
  if (!ec)
    acceptor.bind(endpoint, ec);
  if (!ec)
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
  return ec;
}

error_code Server::listen(const tcp::endpoint& endpoint) {
  tcp::endpoint ep = endpoint;
  for (Worker* w : workers_) {
    auto acceptor = std::make_shared<tcp::acceptor>(w->io());
    if (error_code ec = open_acceptor(*acceptor, ep, workers_.size() > 1))
      return ec;
    if (ep.port() == 0)
      ep.port(acceptor->local_endpoint().port());
    acceptors_.push_back(acceptor);
  }
  port_ = ep.port();
  for (size_t i = 0; i < workers_.size(); ++i) {
    asio::co_spawn(workers_[i]->io(), accept_loop(*workers_[i], acceptors_[i]), asio::detached);
  }
  return {};
}

Task<void> Server::accept_loop(Worker& worker, std::shared_ptr<tcp::acceptor> acceptor) {
  core::Timer backoff(worker.time(), worker.executor());
  uint64_t failed_in_a_row = 0;
  for (;;) {
    auto [ec, socket] = co_await acceptor->async_accept(worker.executor(), kUseTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor->is_open())
        co_return;
      // Out of descriptors or similar: pause instead of spinning on the error, and say so
      // once, then every 5 s while it lasts, not 20 times a second.
      if (failed_in_a_row++ % 100 == 0)
        spdlog::warn("{}: accept failed: {} (retrying every 50 ms)", options_.name, ec.message());
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(kUseTuple);
      continue;
    }
    if (failed_in_a_row > 0) {
      spdlog::info("{}: accepting again after {} failed attempt(s)", options_.name,
                   failed_in_a_row);
      failed_in_a_row = 0;
    }
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto conn =
        std::make_shared<ClientConnection>(worker, Stream::tcp(std::move(socket)), options_, load_);
    worker.connections().push_back(*conn);
    asio::co_spawn(worker.io(), serve_connection(conn, handler_), asio::detached);
  }
}

error_code Server::listen_on_all(uint16_t port) {
  error_code ec = listen(tcp::endpoint(asio::ip::address_v6::any(), port));
  if (ec == asio::error::address_family_not_supported) {
    acceptors_.clear();
    ec = listen(tcp::endpoint(asio::ip::address_v4::any(), port));
  }
  return ec;
}

void Server::stop_accepting() {
  for (size_t i = 0; i < acceptors_.size(); ++i) {
    asio::post(workers_[i]->io(), [acc = acceptors_[i]] {
      error_code ignored;
      acc->close(ignored);
    });
  }
}

void Server::close_idle_connections() {
  for (Worker* w : workers_) {
    asio::post(w->io(), [w] { w->close_connections_gracefully(); });
  }
}

}  // namespace sluice::http
