#include "http/connection.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

#include "http/h2_server.h"

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
    case Rejection::Http2TooManyStreams:
      return "http2_too_many_streams";
    case Rejection::Http2RapidReset:
      return "http2_rapid_reset";
    case Rejection::Http2ContinuationFlood:
      return "http2_continuation_flood";
    case Rejection::Http2ControlFlood:
      return "http2_control_flood";
    case Rejection::Http2ProtocolError:
      return "http2_protocol_error";
    case Rejection::Count:
      break;
  }
  return "unknown";
}

std::string_view to_string(Protocol p) {
  return p == Protocol::Http2 ? "HTTP/2" : "HTTP/1";
}

ClientConnection::ClientConnection(Worker& worker,
                                   Stream stream,
                                   const ServerOptions& options,
                                   std::shared_ptr<ServerLoad> load)
    : worker_(worker),
      stream_(std::move(stream)),
      options_(options),
      load_(std::move(load)),
      watchdog_(worker.time(), worker.executor(), [this] { on_watchdog(); }) {
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

void ClientConnection::on_watchdog() {
  if (watched_upstream_ != nullptr) {
    watched_upstream_->abort();
  } else {
    stream_.close();
  }
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

Task<error_code> ClientConnection::write(std::string_view data) {
  auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(data), kUseTuple);
  co_return ec;
}

Task<ClientConnection::Opening> ClientConnection::read_opening() {
  for (;;) {
    const auto data = buffer_.data();
    const std::string_view got(static_cast<const char*>(data.data()),
                               std::min(data.size(), kH2Preface.size()));
    if (got != kH2Preface.substr(0, got.size()))
      co_return Opening::Http1;
    if (got.size() == kH2Preface.size())
      co_return Opening::Http2;
    if (!watchdog_.armed())
      watchdog_.arm(worker_.time().now() + options_.header_timeout);
    idle_ = false;
    auto [ec, n] = co_await read_some(4096);
    if (ec)
      co_return Opening::Gone;
  }
}

bool ClientConnection::wants_h2c_upgrade() const {
  if (!options_.h2 || !parser_->is_done() || head_.version != 11)
    return false;
  auto upgrade = head_.get(bhttp::field::upgrade);
  if (!upgrade || !boost::beast::iequals(*upgrade, "h2c"))
    return false;
  // RFC 7540 §3.2: exactly one HTTP2-Settings field, named in Connection.
  return head_.get("HTTP2-Settings").has_value();
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
    watchdog_.arm(worker_.time().now() + options_.header_timeout);
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
          watchdog_.disarm();
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
      if (watchdog_.fired() && first_byte_seen) {
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
      watchdog_.arm(worker_.time().now() + options_.header_timeout);
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
    watchdog_.arm(time.now() + (first ? options_.header_timeout : options_.keepalive_idle));
    if (first && options_.h2) {
      // After an EOF Asio waits for the next readiness edge before it reads again, and a
      // closed peer sends none: a second read would hold the socket in CLOSE_WAIT until
      // the header timeout. A client that connects and leaves is done here.
      const Opening opening = co_await read_opening();
      if (opening == Opening::Gone)
        break;
      if (opening == Opening::Http2) {
        co_await serve_h2(handler, /*upgraded=*/false);
        co_return;
      }
    }
    // The loop went on: the last response was written whole, and the next request is
    // read first (nothing of it buffered yet).
    if (!first && buffer_.size() == 0)
      stream_.next_read_may_wait();
    if (!co_await read_head())
      break;
    idle_ = false;
    if (wants_h2c_upgrade()) {
      co_await serve_h2(handler, /*upgraded=*/true);
      co_return;
    }
    first = false;
    H1Exchange exchange(*this, time.now());
    load_->active_requests.fetch_add(1, std::memory_order_relaxed);
    co_await handler.handle(exchange);
    load_->active_requests.fetch_sub(1, std::memory_order_relaxed);
    watchdog_.disarm();
    watched_upstream_ = nullptr;
    if (!exchange.responded() || exchange.close_after_response() || !parser_->keep_alive() ||
        !parser_->is_done()) {
      break;
    }
  }
  watchdog_.cancel();
  stream_.shutdown_send();
  stream_.close();
  unlink();  // from the worker's connection list
}

Task<void> ClientConnection::serve_h2(Handler& handler, bool upgraded) {
  watchdog_.cancel();
  unlink();  // the session lists itself for drain
  std::optional<H2Upgrade> upgrade;
  if (upgraded) {
    // RFC 9113 §3.2 (RFC 7540): 101, then the answer to this request on stream 1.
    if (co_await write(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"))
      co_return;
    upgrade.emplace();
    head_.own(head_storage_);
    upgrade->settings = std::string(*head_.get("HTTP2-Settings"));
    upgrade->head_storage = std::move(head_storage_);
    upgrade->head = head_;
  }
  // The preface stays in what the session reads first: nghttp2 checks it.
  const auto pending = buffer_.data();
  auto session = std::make_shared<H2ServerSession>(
      worker_, std::move(stream_), *options_.h2, load_, client_ip_,
      std::string_view(static_cast<const char*>(pending.data()), pending.size()),
      std::move(upgrade));
  buffer_.consume(buffer_.size());
  co_await session->serve(handler);
}

// --- H1Exchange ------------------------------------------------------------------------

namespace {

class H1HangupWatch final : public HangupWatch {
 public:
  H1HangupWatch(ClientConnection& conn, std::function<void()> on_hangup) : conn_(conn) {
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
  ~H1HangupWatch() override {
    *alive_ = false;
    conn_.stream().cancel();
  }

 private:
  ClientConnection& conn_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// One direction of a tunnel: copy until EOF, then half-close the other side.
Task<void> pump(Stream& from, Stream& to, Exchange& ex, std::chrono::milliseconds idle) {
  std::array<char, 16 * 1024> buf;
  for (;;) {
    auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), kUseTuple);
    if (n > 0) {
      auto [wec, wn] = co_await asio::async_write(to, asio::buffer(buf.data(), n), kUseTuple);
      if (wec)
        ec = wec;
      if (idle.count() > 0)
        ex.set_deadline(ex.worker().time().now() + idle);
    }
    if (ec) {
      if (ec == asio::error::eof) {
        to.shutdown_send();
      } else {
        from.close();
        to.close();
      }
      co_return;
    }
  }
}

}  // namespace

std::unique_ptr<HangupWatch> H1Exchange::watch_hangup(std::function<void()> on_hangup) {
  return std::make_unique<H1HangupWatch>(conn_, std::move(on_hangup));
}

std::optional<uint64_t> H1Exchange::request_content_length() const {
  const auto& rq = *conn_.parser_;
  if (rq.chunked() || !rq.content_length())
    return rq.chunked() ? std::nullopt : std::optional<uint64_t>(0);
  return *rq.content_length();
}

bool H1Exchange::upgrade() const {
  // A declined `Upgrade: h2c` is a plain request (the field is hop-by-hop and dropped).
  if (!conn_.parser_->upgrade())
    return false;
  auto u = conn_.head_.get(bhttp::field::upgrade);
  return !(u && boost::beast::iequals(*u, "h2c"));
}

Task<error_code> H1Exchange::send_continue_once() {
  if (continue_sent_)
    co_return error_code{};
  continue_sent_ = true;
  auto e = conn_.head_.get(bhttp::field::expect);
  if (!e || !boost::beast::iequals(*e, "100-continue"))
    co_return error_code{};
  co_return co_await conn_.write("HTTP/1.1 100 Continue\r\n\r\n");
}

Task<error_code> H1Exchange::read_body(std::string& out) {
  auto& rq = *conn_.parser_;
  conn_.head_.own(conn_.head_storage_);
  out.clear();
  if (rq.is_done())
    co_return error_code{};
  if (auto ec = co_await send_continue_once())
    co_return ec;
  conn_.watched_upstream_ = nullptr;
  conn_.watchdog_.arm(worker().time().now() + conn_.options_.header_timeout);
  rq.eager(true);
  error_code result;
  while (!rq.is_done()) {
    error_code ec;
    size_t n = 0;
    if (conn_.buffer_.size() > 0)
      n = rq.put_body(conn_.buffer_.data(), ec);
    if (conn_.buffer_.size() == 0 || (ec == bhttp::error::need_more && n == 0)) {
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
    for (auto piece : conn_.body_.pieces) out.append(piece);
    conn_.body_.clear();
    conn_.buffer_.consume(n);
  }
  conn_.watchdog_.disarm();
  if (result)
    close_after();
  co_return result;
}

Task<void> H1Exchange::respond(int status, std::string_view body, const ExtraHeaders& extra) {
  auto& parser = *conn_.parser_;
  const bool close =
      close_after_response() || conn_.closing() || !parser.keep_alive() || !parser.is_done();
  if (close)
    close_after();
  auto& out = conn_.scratch_;
  out.clear();
  write_local_response(status, body, close, extra, out);
  if (request().method == bhttp::verb::head)
    out.resize(out.size() - body.size());
  error_code ec = co_await conn_.write(out);
  mark_responded(status);
  if (ec)
    close_after();
}

Task<Exchange::BodyRead> H1Exchange::read_request_body() {
  using Kind = BodyRead::Kind;
  auto& rq = *conn_.parser_;
  if (rq.is_done())
    co_return BodyRead{Kind::End, {}};
  if (auto ec = co_await send_continue_once())
    co_return BodyRead{Kind::ClientGone, ec};
  rq.eager(true);
  for (;;) {
    if (conn_.buffer_.size() == 0) {
      auto [ec, n] = co_await conn_.read_some();
      if (ec)
        co_return BodyRead{Kind::ClientGone, ec};
    }
    error_code pec;
    const size_t n = rq.put_body(conn_.buffer_.data(), pec);
    if (pec == bhttp::error::need_more) {
      pec = {};
      if (n == 0) {
        auto [ec, m] = co_await conn_.read_some();
        if (ec)
          co_return BodyRead{Kind::ClientGone, ec};
        continue;
      }
    }
    if (pec)
      co_return BodyRead{Kind::Malformed, pec};
    pending_consume_ = n;
    co_return BodyRead{Kind::Data, {}};
  }
}

void H1Exchange::consume_request_body() {
  conn_.buffer_.consume(pending_consume_);
  pending_consume_ = 0;
  conn_.body_.clear();
}

Task<error_code> H1Exchange::send_interim(const MessageHead& head) {
  if (request().version < 11)
    co_return error_code{};  // HTTP/1.0 has no interim responses
  auto& out = conn_.scratch_;
  out.clear();
  write_client_response_head(head, BodyFraming::None, std::nullopt, false, false, {}, out);
  co_return co_await conn_.write(out);
}

void H1Exchange::start_response(const MessageHead& head,
                                const ResponseShape& shape,
                                const ExtraHeaders& extra) {
  const int status = head.status;
  const bool no_body = shape.head_request || status / 100 == 1 || status == 204 || status == 304;
  if (shape.upgraded || no_body) {
    framing_ = BodyFraming::None;
  } else if (shape.content_length) {
    framing_ = BodyFraming::ContentLength;
  } else if (request().version >= 11) {
    framing_ = BodyFraming::Chunked;
  } else {
    framing_ = BodyFraming::UntilClose;
  }
  const bool close = close_after_response() || conn_.closing() || !conn_.parser_->keep_alive() ||
                     framing_ == BodyFraming::UntilClose || shape.upgraded;
  if (close)
    close_after();
  auto& out = conn_.scratch_;
  out.clear();
  write_client_response_head(head, framing_, shape.content_length, shape.upgraded,
                             close && !shape.upgraded, extra, out);
  mark_responded(status);
  conn_.gather_.reset();
  conn_.gather_.head(out);
}

Task<error_code> H1Exchange::send_body(const BodyPieces& pieces, bool last) {
  Gather& g = conn_.gather_;
  g.pieces(pieces, framing_);
  if (last && framing_ == BodyFraming::Chunked)
    g.last_chunk();
  co_return co_await write_gather(conn_.stream_, g);
}

Task<error_code> H1Exchange::send_trailers(const MessageHead&) {
  const BodyPieces none;
  co_return co_await send_body(none, true);
}

void H1Exchange::abort_response() {
  close_after();
  conn_.stream_.close();
}

Task<error_code> H1Exchange::tunnel(UpstreamConnection& upstream,
                                    std::chrono::milliseconds idle_timeout) {
  // Bytes the client sent right after its Upgrade request go first.
  if (conn_.buffer_.size() > 0) {
    auto [ec, n] = co_await asio::async_write(upstream.stream, conn_.buffer_.data(), kUseTuple);
    conn_.buffer_.consume(conn_.buffer_.size());
    if (ec)
      co_return ec;
  }
  using namespace asio::experimental::awaitable_operators;
  co_await (pump(conn_.stream_, upstream.stream, *this, idle_timeout) &&
            pump(upstream.stream, conn_.stream_, *this, idle_timeout));
  co_return error_code{};
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
  std::vector<std::shared_ptr<tcp::acceptor>> bound;
  for (Worker* w : workers_) {
    auto acceptor = std::make_shared<tcp::acceptor>(w->io());
    if (error_code ec = open_acceptor(*acceptor, ep, workers_.size() > 1))
      return ec;
    if (ep.port() == 0)
      ep.port(acceptor->local_endpoint().port());
    bound.push_back(acceptor);
  }
  if (port_ == 0)
    port_ = ep.port();
  for (size_t i = 0; i < workers_.size(); ++i) {
    acceptors_.emplace_back(workers_[i], bound[i]);
    asio::co_spawn(workers_[i]->io(), accept_loop(*workers_[i], bound[i]), asio::detached);
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
  if (ec == asio::error::address_family_not_supported)
    ec = listen(tcp::endpoint(asio::ip::address_v4::any(), port));
  return ec;
}

void Server::stop_accepting() {
  for (auto& [worker, acceptor] : acceptors_) {
    asio::post(worker->io(), [acc = acceptor] {
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
