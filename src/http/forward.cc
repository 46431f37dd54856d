#include "http/forward.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

#include "http/gather.h"

namespace sluice::http {

namespace {

using Outcome = ForwardResult::Outcome;

constexpr size_t kMaxResponseHead = 64 * 1024;

template <typename Stream>
Task<error_code> write_gather(Stream& s, Gather& g) {
  if (g.empty())
    co_return error_code{};
  error_code ec;
  if (auto one = g.single()) {
    auto [wec, n] = co_await asio::async_write(s, *one, kUseTuple);
    ec = wec;
  } else {
    auto [wec, n] = co_await asio::async_write(s, g.buffers(), kUseTuple);
    ec = wec;
  }
  g.reset();
  co_return ec;
}

// One direction of a tunnel: copy until EOF, then half-close the other side.
Task<void> pump(Stream& from, Stream& to, ClientConnection& conn, std::chrono::milliseconds idle) {
  std::array<char, 16 * 1024> buf;
  for (;;) {
    auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), kUseTuple);
    if (n > 0) {
      auto [wec, wn] = co_await asio::async_write(to, asio::buffer(buf.data(), n), kUseTuple);
      if (wec)
        ec = wec;
      if (idle.count() > 0) {
        conn.watch(ClientConnection::Watch::AbortUpstream, conn.worker().time().now() + idle);
      }
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

BodyFraming response_framing(const ResponseParser& rp,
                             int status,
                             bool head_request,
                             int client_version) {
  if (head_request || status / 100 == 1 || status == 204 || status == 304)
    return BodyFraming::None;
  if (rp.content_length())
    return BodyFraming::ContentLength;
  if (client_version >= 11)
    return BodyFraming::Chunked;
  return BodyFraming::UntilClose;
}

std::optional<uint64_t> to_std(const boost::optional<uint64_t>& v) {
  return v ? std::optional<uint64_t>(*v) : std::nullopt;
}

bool is_eof_like(const error_code& ec) {
  return ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == bhttp::error::end_of_stream ||
         ec == bhttp::error::partial_message;
}

}  // namespace

std::string_view to_string(ForwardResult::Outcome o) {
  switch (o) {
    case Outcome::Completed:
      return "completed";
    case Outcome::ConnectFailed:
      return "connect_failed";
    case Outcome::UpstreamClosed:
      return "upstream_closed";
    case Outcome::TimedOut:
      return "timed_out";
    case Outcome::BadResponse:
      return "bad_response";
    case Outcome::BadRequestBody:
      return "bad_request_body";
    case Outcome::ClientGone:
      return "client_gone";
    case Outcome::BrokenAfterStart:
      return "broken_after_start";
    case Outcome::Intercepted:
      return "intercepted";
  }
  return "unknown";
}

BadBodyAnswer bad_request_body_answer(const error_code& ec, size_t line_limit) {
  if (ec == ParseError::TrailersTooLarge) {
    return {431,
            "request trailer fields too large: limit is " + std::to_string(line_limit) + " bytes"};
  }
  if (ec == ParseError::ChunkLineTooLong) {
    return {400, "bad request: malformed body (chunk-size line longer than " +
                     std::to_string(line_limit) + " bytes)"};
  }
  return {400, "bad request: malformed body (" + ec.message() + ")"};
}

std::string failure_cause(const error_code& ec) {
  if (ec == asio::error::connection_refused)
    return "connection refused";
  if (ec == asio::error::connection_reset)
    return "connection reset";
  if (ec == asio::error::eof || ec == bhttp::error::end_of_stream)
    return "connection closed";
  if (ec == asio::error::timed_out)
    return "connect timed out";
  if (ec == asio::error::host_unreachable || ec == asio::error::network_unreachable) {
    return "no route";
  }
  return ec.message();
}

Task<ForwardResult> forward(Exchange& exchange,
                            const ForwardTarget& target,
                            const ForwardOptions& options) {
  ClientConnection& conn = exchange.connection();
  Worker& worker = conn.worker();
  auto& time = worker.time();
  RequestParser& rq = *conn.parser();
  ForwardResult result;
  using Watch = ClientConnection::Watch;

  const bool upgrade = rq.upgrade();
  const bool head_request = conn.head().method == bhttp::verb::head;
  const int client_version = conn.head().version;
  const bool expect_continue = !rq.is_done() && [&] {
    auto e = conn.head().get(bhttp::field::expect);
    return e && boost::beast::iequals(*e, "100-continue");
  }();
  BodyFraming req_framing = BodyFraming::None;
  if (rq.chunked()) {
    req_framing = BodyFraming::Chunked;
  } else if (rq.content_length() && *rq.content_length() > 0) {
    req_framing = BodyFraming::ContentLength;
  }
  if (options.buffered_body) {
    req_framing = options.buffered_body->empty() ? BodyFraming::None : BodyFraming::ContentLength;
  }
  const bool replayable = req_framing == BodyFraming::None || options.buffered_body;

  std::string& up_head = conn.upstream_scratch();
  up_head.clear();
  write_upstream_request_head(conn.head(), req_framing,
                              options.buffered_body
                                  ? std::optional<uint64_t>(options.buffered_body->size())
                                  : to_std(rq.content_length()),
                              upgrade, options.rewrite, up_head);
  // From here on the request head views may dangle (reads move the buffer).

  conn.watch(Watch::AbortUpstream, options.response_start_deadline);
  Gather& gather = conn.gather();
  gather.reset();
  UpstreamConnectionPtr up;
  std::optional<ResponseParser> rp;
  bool sent_continue = false;

  result.connected_at = time.now();
  for (int attempt = 0;; ++attempt) {
    // A retry (stale pooled connection) always dials fresh.
    up = attempt == 0 ? worker.pool().take(target.endpoint) : nullptr;
    if (!up) {
      up = std::make_shared<UpstreamConnection>(worker.new_upstream_stream());
      up->endpoint = target.endpoint;
      conn.set_upstream(up.get());
      auto [ec] = co_await up->stream.async_connect(target.endpoint, kUseTuple);
      if (ec) {
        conn.set_upstream(nullptr);
        result.outcome = conn.timed_out() ? Outcome::TimedOut : Outcome::ConnectFailed;
        result.error = ec;
        co_return result;
      }
      result.connected_at = time.now();
    }
    conn.set_upstream(up.get());

    // --- request: head, then the body as it arrives ---
    gather.reset();
    gather.head(up_head);
    error_code up_write_ec;
    if (!rq.is_done()) {
      rq.eager(true);
      if (expect_continue && !sent_continue) {
        sent_continue = true;
        if (co_await conn.write("HTTP/1.1 100 Continue\r\n\r\n")) {
          result.outcome = Outcome::ClientGone;
        }
      }
      while (result.outcome == Outcome::Completed && !rq.is_done()) {
        if (conn.buffer().size() == 0) {
          auto [ec, n] = co_await conn.read_some();
          if (ec) {
            result.outcome = Outcome::ClientGone;
            result.error = ec;
            break;
          }
        }
        error_code pec;
        size_t n = rq.put_body(conn.buffer().data(), pec);
        if (pec == bhttp::error::need_more) {
          pec = {};
          if (n == 0) {
            auto [ec, m] = co_await conn.read_some();
            if (ec) {
              result.outcome = Outcome::ClientGone;
              result.error = ec;
              break;
            }
            continue;
          }
        }
        if (pec) {
          result.outcome = Outcome::BadRequestBody;
          result.error = pec;
          break;
        }
        gather.pieces(conn.body(), req_framing);
        if (rq.is_done() && req_framing == BodyFraming::Chunked)
          gather.last_chunk();
        up_write_ec = co_await write_gather(up->stream, gather);
        result.request_sent = true;
        conn.buffer().consume(n);
        conn.body().clear();
        if (up_write_ec)
          break;
      }
      if (result.outcome != Outcome::Completed) {
        conn.set_upstream(nullptr);
        exchange.close_after();
        co_return result;
      }
      // The upstream stopped reading mid-body (it may have answered early, e.g. 413):
      // read its answer, but the rest of the client's body can't be framed any more.
      if (!rq.is_done())
        exchange.close_after();
    } else {
      if (options.buffered_body && !options.buffered_body->empty()) {
        gather.pieces(BodyPieces{{*options.buffered_body}, options.buffered_body->size()},
                      BodyFraming::ContentLength);
      }
      up_write_ec = co_await write_gather(up->stream, gather);
      result.request_sent = !up_write_ec;
    }

    // --- response head (skipping 1xx interim answers other than 101) ---
    bool got_any = false;
    error_code read_ec;
    for (;;) {
      rp.emplace(conn.upstream_head(), conn.upstream_body());
      rp->header_limit(static_cast<uint32_t>(kMaxResponseHead));
      rp->body_limit(boost::none);
      rp->eager(false);
      if (head_request)
        rp->skip(true);
      // As for request heads (ClientConnection::read_head): bytes Beast took stay in the
      // buffer until the head is complete, and the views follow the buffer if it moves.
      size_t parsed = 0;
      while (!rp->is_header_done()) {
        if (up->buffer.size() > parsed) {
          error_code pec;
          const auto data = up->buffer.data();
          const size_t n =
              rp->put(asio::const_buffer(static_cast<const char*>(data.data()) + parsed,
                                         data.size() - parsed),
                      pec);
          if (!pec || pec == bhttp::error::need_more)
            parsed += n;
          if (!pec || (pec == bhttp::error::need_more && n > 0))
            continue;
          if (pec == bhttp::error::need_more && up->buffer.size() > kMaxResponseHead)
            pec = bhttp::error::header_limit;  // checked whole: Beast sees only each part
          if (pec != bhttp::error::need_more) {
            read_ec = pec;
            break;
          }
        }
        // 4 KiB holds most heads and small bodies, and keeps pooled buffers small.
        const char* base = static_cast<const char*>(up->buffer.data().data());
        auto buf = up->buffer.prepare(4 * 1024);
        auto [ec, n] = co_await up->stream.async_read_some(buf, kUseTuple);
        up->buffer.commit(n);
        conn.upstream_head().rebase(base, static_cast<const char*>(up->buffer.data().data()));
        if (n > 0)
          got_any = true;
        if (ec) {
          read_ec = ec;
          break;
        }
      }
      if (read_ec)
        break;
      up->buffer.consume(parsed);
      const int status = conn.upstream_head().status;
      if (status / 100 == 1 && status != 101) {
        if (client_version >= 11) {
          std::string& out = conn.scratch();
          out.clear();
          write_client_response_head(conn.upstream_head(), BodyFraming::None, std::nullopt, false,
                                     false, {}, out);
          if (co_await conn.write(out)) {
            result.outcome = Outcome::ClientGone;
            break;
          }
        }
        continue;
      }
      break;
    }
    if (result.outcome == Outcome::ClientGone) {
      conn.set_upstream(nullptr);
      exchange.close_after();
      co_return result;
    }
    if (read_ec) {
      conn.set_upstream(nullptr);
      if (conn.timed_out()) {
        result.outcome = Outcome::TimedOut;
        result.error = read_ec;
        co_return result;
      }
      if (!got_any && is_eof_like(read_ec)) {
        // The upstream closed without answering. On a reused keep-alive connection with a
        // body-less request this is the idle-close race: retry once on a fresh connection.
        if (attempt == 0 && up->reused && replayable)
          continue;
        result.outcome = Outcome::UpstreamClosed;
        result.error = read_ec;
        co_return result;
      }
      result.outcome = Outcome::BadResponse;
      result.error = read_ec;
      co_return result;
    }
    break;
  }

  if (options.intercept && options.intercept(conn.upstream_head())) {
    // The upstream connection carries an unread body: not reusable.
    conn.set_upstream(nullptr);
    result.outcome = Outcome::Intercepted;
    result.status = conn.upstream_head().status;
    result.finished_at = time.now();
    co_return result;
  }

  // --- response started: head + body pieces already buffered, in one write ---
  MessageHead& rh = conn.upstream_head();
  result.status = rh.status;
  result.response_started = true;
  result.response_started_at = time.now();
  const bool upgraded = upgrade && rh.status == 101;
  const BodyFraming framing =
      upgraded ? BodyFraming::None : response_framing(*rp, rh.status, head_request, client_version);
  const bool close = exchange.close_after_response() || conn.closing() || !rq.keep_alive() ||
                     framing == BodyFraming::UntilClose || upgraded;
  if (close)
    exchange.close_after();
  if (options.idle_timeout.count() > 0) {
    conn.watch(Watch::AbortUpstream, time.now() + options.idle_timeout);
  } else {
    conn.unwatch();
  }
  std::string& out = conn.scratch();
  out.clear();
  write_client_response_head(rh, framing, to_std(rp->content_length()), upgraded,
                             close && !upgraded, options.response_headers, out);
  exchange.mark_responded(rh.status);
  gather.reset();
  gather.head(out);

  if (upgraded) {
    result.upgraded = true;
    // Bytes either side sent right after the handshake go first.
    if (up->buffer.size() > 0) {
      auto d = up->buffer.data();
      gather.pieces(
          BodyPieces{{std::string_view(static_cast<const char*>(d.data()), d.size())}, d.size()},
          BodyFraming::None);
    }
    error_code ec = co_await write_gather(conn.stream(), gather);
    up->buffer.consume(up->buffer.size());
    if (!ec && conn.buffer().size() > 0) {
      auto [wec, n] = co_await asio::async_write(up->stream, conn.buffer().data(), kUseTuple);
      ec = wec;
      conn.buffer().consume(conn.buffer().size());
    }
    if (!ec) {
      using namespace asio::experimental::awaitable_operators;
      co_await (pump(conn.stream(), up->stream, conn, options.idle_timeout) &&
                pump(up->stream, conn.stream(), conn, options.idle_timeout));
    }
    conn.set_upstream(nullptr);
    co_return result;
  }

  rp->eager(true);
  bool client_ok = true;
  while (true) {
    if (up->buffer.size() > 0 && !rp->is_done()) {
      error_code pec;
      size_t n = rp->put_body(up->buffer.data(), pec);
      if (pec && pec != bhttp::error::need_more) {
        result.outcome = Outcome::BrokenAfterStart;
        result.error = pec;
        break;
      }
      gather.pieces(conn.upstream_body(), framing);
      if (rp->is_done() && framing == BodyFraming::Chunked)
        gather.last_chunk();
      if (co_await write_gather(conn.stream(), gather)) {
        client_ok = false;
        result.outcome = Outcome::ClientGone;
      }
      up->buffer.consume(n);
      conn.upstream_body().clear();
      if (!client_ok)
        break;
      if (options.idle_timeout.count() > 0) {
        conn.watch(Watch::AbortUpstream, time.now() + options.idle_timeout);
      }
      if (n > 0)
        continue;
    } else if (!gather.empty()) {
      if (co_await write_gather(conn.stream(), gather)) {
        result.outcome = Outcome::ClientGone;
        break;
      }
    }
    if (rp->is_done())
      break;
    auto buf = up->buffer.prepare(16 * 1024);
    auto [ec, n] = co_await up->stream.async_read_some(buf, kUseTuple);
    up->buffer.commit(n);
    if (ec) {
      if (ec == asio::error::eof && rp->need_eof()) {
        error_code pec;
        rp->put_eof(pec);
        if (framing == BodyFraming::Chunked)
          gather.last_chunk();
        if (co_await write_gather(conn.stream(), gather))
          result.outcome = Outcome::ClientGone;
        break;
      }
      result.outcome = Outcome::BrokenAfterStart;
      result.error = ec;
      break;
    }
  }
  conn.set_upstream(nullptr);
  result.finished_at = time.now();
  if (result.outcome != Outcome::Completed) {
    // Mid-response failure: the client must see a truncated message, not a clean one.
    exchange.close_after();
    if (result.outcome == Outcome::BrokenAfterStart)
      conn.stream().close();
    co_return result;
  }
  if (rp->keep_alive() && rp->is_done() && !rp->need_eof() && up->buffer.size() == 0) {
    // A big body grew the buffer; an idle pooled connection should not keep that.
    if (up->buffer.capacity() > 8 * 1024)
      up->buffer.shrink_to_fit();
    worker.pool().give_back(std::move(up), result.finished_at);
  }
  co_return result;
}

}  // namespace sluice::http
