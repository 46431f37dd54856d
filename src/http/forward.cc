#include "http/forward.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

#include "http/gather.h"
#include "http/grpc.h"
#include "http/worker.h"

namespace sluice::http {

namespace {

using Outcome = ForwardResult::Outcome;

constexpr size_t kMaxResponseHead = 64 * 1024;

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
    case Outcome::NeedsHttp2:
      return "needs_http2";
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
  Worker& worker = exchange.worker();
  auto& time = worker.time();
  ForwardResult result;
  using Kind = Exchange::BodyRead::Kind;

  // gRPC's trailers (grpc-status) have no place in HTTP/1: refuse before any byte goes.
  // (The upstream side speaks HTTP/1 only, until the HTTP/2 client codec lands.)
  if (is_grpc(exchange.request())) {
    result.outcome = Outcome::NeedsHttp2;
    co_return result;
  }
  const bool upgrade = exchange.upgrade();
  const bool head_request = exchange.request().method == bhttp::verb::head;
  BodyFraming req_framing = BodyFraming::None;
  std::optional<uint64_t> req_length;
  if (options.buffered_body) {
    req_framing = options.buffered_body->empty() ? BodyFraming::None : BodyFraming::ContentLength;
    req_length = options.buffered_body->size();
  } else if (!exchange.request_body_done()) {
    req_length = exchange.request_content_length();
    req_framing = req_length ? BodyFraming::ContentLength : BodyFraming::Chunked;
  }
  const bool replayable = req_framing == BodyFraming::None || options.buffered_body;

  exchange.watch_upstream(nullptr);
  exchange.set_deadline(options.response_start_deadline);
  UpstreamConnectionPtr up;
  UpstreamConnectionPtr stale;  // a pooled connection the upstream had closed: retried once
  std::optional<ResponseParser> rp;
  // Detaches the upstream from the watchdog on every way out.
  struct Unwatch {
    Exchange& ex;
    ~Unwatch() { ex.watch_upstream(nullptr); }
  } unwatch{exchange};

  result.connected_at = time.now();
  for (int attempt = 0;; ++attempt) {
    // A retry (stale pooled connection) always dials fresh.
    up = attempt == 0 ? worker.pool().take(target.endpoint) : nullptr;
    if (!up) {
      up = std::make_shared<UpstreamConnection>(worker.new_upstream_stream());
      up->endpoint = target.endpoint;
      exchange.watch_upstream(up.get());
      auto [ec] = co_await up->stream.async_connect(target.endpoint, kUseTuple);
      if (ec) {
        result.outcome = exchange.client_gone() ? Outcome::ClientGone
                         : exchange.timed_out() ? Outcome::TimedOut
                                                : Outcome::ConnectFailed;
        result.error = ec;
        co_return result;
      }
      result.connected_at = time.now();
    }
    exchange.watch_upstream(up.get());
    if (stale) {
      up->request_head = std::move(stale->request_head);
      stale.reset();
    } else {
      // Written once, while the request's views are valid (reading the body may move the
      // client's buffer), into the connection's storage, reused across requests.
      up->request_head.clear();
      write_upstream_request_head(exchange.request(), req_framing, req_length, upgrade,
                                  options.rewrite, up->request_head);
    }
    Gather& gather = up->gather;
    gather.reset();
    gather.head(up->request_head);

    // --- request: head, then the body as it arrives ---
    error_code up_write_ec;
    if (!exchange.request_body_done()) {
      while (!exchange.request_body_done()) {
        const auto read = co_await exchange.read_request_body();
        if (read.kind == Kind::ClientGone) {
          result.outcome = Outcome::ClientGone;
          result.error = read.error;
          break;
        }
        if (read.kind == Kind::Malformed) {
          result.outcome = Outcome::BadRequestBody;
          result.error = read.error;
          break;
        }
        if (read.kind == Kind::End) {
          // The end came on its own (HTTP/2: an empty DATA or trailers with END_STREAM).
          // What is still gathered (the head, if no piece came) goes with it.
          if (req_framing == BodyFraming::Chunked)
            gather.last_chunk();
          up_write_ec = co_await write_gather(up->stream, gather);
          result.request_sent = true;
          break;
        }
        gather.pieces(exchange.request_pieces(), req_framing);
        if (exchange.request_body_done() && req_framing == BodyFraming::Chunked)
          gather.last_chunk();
        up_write_ec = co_await write_gather(up->stream, gather);
        result.request_sent = true;
        exchange.consume_request_body();
        if (up_write_ec)
          break;
      }
      if (result.outcome != Outcome::Completed) {
        exchange.close_after();
        co_return result;
      }
      // The upstream stopped reading mid-body (it may have answered early, e.g. 413):
      // read its answer, but the rest of the client's body can't be framed any more.
      if (!exchange.request_body_done())
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
      rp.emplace(up->head, up->body);
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
        up->head.rebase(base, static_cast<const char*>(up->buffer.data().data()));
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
      const int status = up->head.status;
      if (status / 100 == 1 && status != 101) {
        const error_code wec = co_await exchange.send_interim(up->head);
        if (wec) {
          result.outcome = Outcome::ClientGone;
          break;
        }
        continue;
      }
      break;
    }
    if (result.outcome == Outcome::ClientGone) {
      exchange.close_after();
      co_return result;
    }
    if (read_ec) {
      if (exchange.client_gone()) {
        result.outcome = Outcome::ClientGone;
        result.error = read_ec;
        co_return result;
      }
      if (exchange.timed_out()) {
        result.outcome = Outcome::TimedOut;
        result.error = read_ec;
        co_return result;
      }
      if (!got_any && is_eof_like(read_ec)) {
        // The upstream closed without answering. On a reused keep-alive connection with a
        // body-less request this is the idle-close race: retry once on a fresh connection.
        if (attempt == 0 && up->reused && replayable) {
          stale = std::move(up);
          continue;
        }
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
  if (options.intercept && options.intercept(up->head)) {
    // The upstream connection carries an unread body: not reusable.
    result.outcome = Outcome::Intercepted;
    result.status = up->head.status;
    result.finished_at = time.now();
    co_return result;
  }

  // --- response started: head + body pieces already buffered, in one write ---
  MessageHead& rh = up->head;
  result.status = rh.status;
  result.response_started = true;
  result.response_started_at = time.now();
  const bool upgraded = upgrade && rh.status == 101;
  if (options.idle_timeout.count() > 0) {
    exchange.set_deadline(time.now() + options.idle_timeout);
  } else {
    exchange.clear_deadline();
  }
  exchange.start_response(rh, ResponseShape{to_std(rp->content_length()), head_request, upgraded},
                          options.response_headers);

  if (upgraded) {
    result.upgraded = true;
    // Bytes the upstream sent right after the handshake go first.
    BodyPieces early;
    if (up->buffer.size() > 0) {
      auto d = up->buffer.data();
      early =
          BodyPieces{{std::string_view(static_cast<const char*>(d.data()), d.size())}, d.size()};
    }
    error_code ec = co_await exchange.send_body(early, false);
    up->buffer.consume(up->buffer.size());
    if (!ec)
      co_await exchange.tunnel(*up, options.idle_timeout);
    co_return result;
  }

  rp->eager(true);
  const BodyPieces none;
  bool head_sent = false;
  bool ended = false;
  while (!ended) {
    if (up->buffer.size() > 0 && !rp->is_done()) {
      error_code pec;
      size_t n = rp->put_body(up->buffer.data(), pec);
      if (pec && pec != bhttp::error::need_more) {
        result.outcome = Outcome::BrokenAfterStart;
        result.error = pec;
        break;
      }
      ended = rp->is_done();
      const error_code wec = co_await exchange.send_body(up->body, ended);
      head_sent = true;
      up->buffer.consume(n);
      up->body.clear();
      if (wec) {
        result.outcome = Outcome::ClientGone;
        break;
      }
      if (options.idle_timeout.count() > 0)
        exchange.set_deadline(time.now() + options.idle_timeout);
      if (n > 0)
        continue;
    } else if (!head_sent || rp->is_done()) {
      // Nothing buffered: the head goes now (an event stream's first event may be long
      // in coming), or the body ended with nothing after it.
      head_sent = true;
      ended = rp->is_done();
      const error_code wec = co_await exchange.send_body(none, ended);
      if (wec) {
        result.outcome = Outcome::ClientGone;
        break;
      }
    }
    if (ended)
      break;
    auto buf = up->buffer.prepare(16 * 1024);
    auto [ec, n] = co_await up->stream.async_read_some(buf, kUseTuple);
    up->buffer.commit(n);
    if (ec) {
      if (ec == asio::error::eof && rp->need_eof()) {
        error_code pec;
        rp->put_eof(pec);
        const error_code wec = co_await exchange.send_body(none, true);
        if (wec)
          result.outcome = Outcome::ClientGone;
        break;
      }
      result.outcome = exchange.client_gone() ? Outcome::ClientGone : Outcome::BrokenAfterStart;
      result.error = ec;
      break;
    }
  }
  result.finished_at = time.now();
  if (result.outcome != Outcome::Completed) {
    // Mid-response failure: the client must see a truncated message, not a clean one.
    exchange.close_after();
    if (result.outcome == Outcome::BrokenAfterStart)
      exchange.abort_response();
    co_return result;
  }
  if (rp->keep_alive() && rp->is_done() && !rp->need_eof() && up->buffer.size() == 0) {
    // A big body grew the buffer; an idle pooled connection should not keep that.
    if (up->buffer.capacity() > 8 * 1024)
      up->buffer.shrink_to_fit();
    exchange.watch_upstream(nullptr);
    worker.pool().give_back(std::move(up), result.finished_at);
  }
  co_return result;
}

}  // namespace sluice::http
