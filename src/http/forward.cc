#include "http/forward.h"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

#include "http/gather.h"
#include "http/grpc.h"
#include "http/h1_upstream.h"
#include "http/h2_client.h"
#include "http/h2_wire.h"
#include "http/worker.h"

namespace sluice::http {

namespace {

using Outcome = ForwardResult::Outcome;

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

namespace {

// The upstream exchange for `target`, not yet connected: an HTTP/1 connection from the
// pool (unless `fresh`), or a stream of an HTTP/2 session (h2_client.h).
std::unique_ptr<UpstreamStream> make_upstream(Worker& worker,
                                              const ForwardTarget& target,
                                              bool fresh) {
  if (target.protocol == Protocol::Http2)
    return worker.h2_pool().stream(target.endpoint, fresh);
  return std::make_unique<H1Upstream>(worker, target.endpoint, fresh);
}

}  // namespace

// The request body, relayed while the response is relayed too (an HTTP/2 upstream: a
// bidirectional gRPC stream must see the app's answers before its request ends).
struct DuplexPump {
  explicit DuplexPump(asio::any_io_executor ex) : finished(std::move(ex)) {}
  bool running = false;
  size_t consumed = 0;  // request body bytes taken from the client
  ForwardResult::Outcome outcome = ForwardResult::Outcome::Completed;
  error_code error;
  Signal finished;
};

// Moves the request body from the client to the upstream, piece by piece, until it ends
// or either side fails. Returns Completed, ClientGone or BadRequestBody.
Task<std::pair<ForwardResult::Outcome, error_code>> pump_request_body(Exchange& exchange,
                                                                      UpstreamStream& up,
                                                                      size_t& consumed) {
  using Kind = Exchange::BodyRead::Kind;
  const BodyPieces none;
  for (;;) {
    const auto read = co_await exchange.read_request_body();
    if (read.kind == Kind::ClientGone)
      co_return std::pair{Outcome::ClientGone, read.error};
    if (read.kind == Kind::Malformed)
      co_return std::pair{Outcome::BadRequestBody, read.error};
    if (read.kind == Kind::End) {
      // The end came on its own (HTTP/2: an empty DATA or trailers with END_STREAM);
      // what is still staged (the head, if no piece came) goes with it.
      co_await up.send_body(none, true);
      break;
    }
    consumed += exchange.request_pieces().bytes;
    const bool last = exchange.request_body_done();
    const error_code ec = co_await up.send_body(exchange.request_pieces(), last);
    exchange.consume_request_body();
    if (ec)
      break;  // the upstream stopped reading; its answer (if any) still counts
    if (last)
      break;
    if (exchange.request_body_done()) {
      // The end came while the piece was on its way (HTTP/2: trailers with END_STREAM
      // behind the last DATA): the upstream still needs to hear it.
      co_await up.send_body(none, true);
      break;
    }
  }
  co_return std::pair{Outcome::Completed, error_code{}};
}

Task<void> run_duplex_pump(Exchange& exchange, UpstreamStream& up, DuplexPump& pump) {
  auto [outcome, error] = co_await pump_request_body(exchange, up, pump.consumed);
  pump.outcome = outcome;
  pump.error = error;
  if (outcome != Outcome::Completed)
    up.abort();
  pump.running = false;
  pump.finished.notify();
}

Task<ForwardResult> forward_on(Exchange& exchange,
                               const ForwardTarget& target,
                               const ForwardOptions& options,
                               std::unique_ptr<UpstreamStream>& up,
                               DuplexPump& pump) {
  Worker& worker = exchange.worker();
  auto& time = worker.time();
  ForwardResult result;
  using UpKind = UpstreamStream::BodyRead::Kind;

  // gRPC's trailers (grpc-status) have no place in HTTP/1: refuse before any byte goes.
  if (target.protocol != Protocol::Http2 && is_grpc(exchange.request())) {
    result.outcome = Outcome::NeedsHttp2;
    co_return result;
  }
  const bool head_request = exchange.request().method == bhttp::verb::head;
  RequestShape shape;
  shape.upgrade = exchange.upgrade() && target.protocol == Protocol::Http1;
  if (options.buffered_body) {
    shape.framing = options.buffered_body->empty() ? BodyFraming::None : BodyFraming::ContentLength;
    shape.content_length = options.buffered_body->size();
  } else if (!exchange.request_body_done()) {
    shape.content_length = exchange.request_content_length();
    shape.framing = shape.content_length ? BodyFraming::ContentLength : BodyFraming::Chunked;
  }
  const bool replayable = shape.framing == BodyFraming::None || options.buffered_body;

  exchange.watch_upstream(nullptr);
  exchange.set_deadline(options.response_start_deadline);
  // Detaches the upstream from the watchdog on every way out (before `up` goes).
  struct Unwatch {
    Exchange& ex;
    ~Unwatch() { ex.watch_upstream(nullptr); }
  };

  result.connected_at = time.now();
  for (int attempt = 0;; ++attempt) {
    Unwatch unwatch{exchange};
    {
      // A retry (a stale pooled connection, a refused stream) always dials fresh. The
      // watchdog watches the connect too: a deadline that passes aborts it.
      up = make_upstream(worker, target, attempt > 0);
      exchange.watch_upstream(up.get());
      error_code ec;
      if (!up->connected())
        ec = co_await up->connect();
      if (ec) {
        result.outcome = exchange.client_gone() ? Outcome::ClientGone
                         : exchange.timed_out() ? Outcome::TimedOut
                                                : Outcome::ConnectFailed;
        result.error = ec;
        co_return result;
      }
      if (!up->reused())
        result.connected_at = time.now();
    }
    exchange.watch_upstream(up.get());
    // The head's views are valid here: on a retry the request had no body, or its body
    // was read whole first (which owns the head).
    up->start_request(exchange.request(), shape, options.rewrite);

    // --- request: head, then the body as it arrives ---
    error_code up_write_ec;
    if (!exchange.request_body_done() && up->protocol() == Protocol::Http2) {
      // Full duplex: the head goes now, the body flows while the answer comes back.
      const BodyPieces none;
      up_write_ec = co_await up->send_body(none, false);
      result.request_sent = true;
      if (!up_write_ec) {
        pump.running = true;
        asio::co_spawn(worker.executor(), run_duplex_pump(exchange, *up, pump), asio::detached);
      }
    } else if (!exchange.request_body_done()) {
      result.request_sent = true;
      auto [outcome, error] = co_await pump_request_body(exchange, *up, pump.consumed);
      if (outcome != Outcome::Completed) {
        result.outcome = outcome;
        result.error = error;
        exchange.close_after();
        up->abort();
        co_return result;
      }
      // The upstream stopped reading mid-body (it may have answered early, e.g. 413):
      // read its answer, but the rest of the client's body can't be framed any more.
      if (!exchange.request_body_done())
        exchange.close_after();
    } else {
      BodyPieces body;
      if (options.buffered_body && !options.buffered_body->empty())
        body = BodyPieces{{*options.buffered_body}, options.buffered_body->size()};
      up_write_ec = co_await up->send_body(body, true);
      result.request_sent = !up_write_ec;
    }

    // --- response head (skipping 1xx interim answers other than 101) ---
    UpstreamStream::HeadRead head_read;
    for (int interim = 0;; ++interim) {
      head_read = co_await up->read_head(head_request);
      if (head_read.error)
        break;
      const int status = up->head().status;
      if (status / 100 == 1 && status != 101) {
        if (interim == kMaxInterimResponses) {
          head_read.error = ParseError::TooManyInterimResponses;
          break;
        }
        const error_code wec = co_await exchange.send_interim(up->head());
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
      up->abort();
      co_return result;
    }
    if (head_read.error) {
      const error_code read_ec = head_read.error;
      up->abort();
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
      // Refused by an HTTP/2 upstream (REFUSED_STREAM, beyond a GOAWAY, its session gone
      // before our HEADERS left): it never saw the request. Retried once on a fresh
      // session if the body can be sent again; else the caller may try another pod.
      if (head_read.refused) {
        if (attempt == 0 && replayable && !pump.running && pump.consumed == 0)
          continue;
        if (pump.consumed == 0) {
          result.outcome = Outcome::ConnectFailed;
          result.error = asio::error::connection_refused;
          co_return result;
        }
      }
      if (!head_read.got_any && is_eof_like(read_ec)) {
        // The upstream closed without answering. On a reused keep-alive connection with a
        // body-less request this is the idle-close race: retry once on a fresh connection.
        if (attempt == 0 && up->reused() && replayable)
          continue;
        result.outcome = Outcome::UpstreamClosed;
        result.error = read_ec;
        co_return result;
      }
      result.outcome = head_read.refused ? Outcome::UpstreamClosed : Outcome::BadResponse;
      result.error = read_ec;
      co_return result;
    }
    break;
  }
  Unwatch unwatch{exchange};
  exchange.watch_upstream(up.get());

  if (options.intercept && options.intercept(up->head())) {
    // The upstream connection carries an unread body: not reusable.
    result.outcome = Outcome::Intercepted;
    result.status = up->head().status;
    result.finished_at = time.now();
    up->abort();
    co_return result;
  }

  // --- response started: head + body pieces already buffered, in one write ---
  const MessageHead& rh = up->head();
  result.status = rh.status;
  result.response_started = true;
  result.response_started_at = time.now();
  const bool upgraded = shape.upgrade && rh.status == 101 && up->tunnel() != nullptr;
  // After the head: the idle timeout, and the call's deadline if it has one.
  const auto rearm = [&exchange, &options](core::TimePoint now) {
    core::TimePoint at = options.call_deadline;
    if (options.idle_timeout.count() > 0)
      at = std::min(at, now + options.idle_timeout);
    if (at == core::TimePoint::max()) {
      exchange.clear_deadline();
    } else {
      exchange.set_deadline(at);
    }
  };
  rearm(result.response_started_at);
  exchange.start_response(rh, ResponseShape{up->content_length(), head_request, upgraded},
                          options.response_headers);

  if (upgraded) {
    result.upgraded = true;
    UpstreamConnection& conn = *up->tunnel();
    // Bytes the upstream sent right after the handshake go first.
    BodyPieces early;
    if (conn.buffer.size() > 0) {
      auto d = conn.buffer.data();
      early =
          BodyPieces{{std::string_view(static_cast<const char*>(d.data()), d.size())}, d.size()};
    }
    error_code ec = co_await exchange.send_body(early, false);
    conn.buffer.consume(conn.buffer.size());
    if (!ec)
      co_await exchange.tunnel(conn, options.idle_timeout);
    co_return result;
  }

  const BodyPieces none;
  bool head_sent = false;
  bool ended = false;
  while (!ended) {
    if (!head_sent && !up->body_ready()) {
      // Nothing buffered: the head goes now (an event stream's first event may be long
      // in coming).
      head_sent = true;
      const error_code wec = co_await exchange.send_body(none, false);
      if (wec) {
        result.outcome = Outcome::ClientGone;
        break;
      }
    }
    const auto read = co_await up->read_body();
    if (read.kind == UpKind::Error) {
      result.outcome = exchange.client_gone() ? Outcome::ClientGone : Outcome::BrokenAfterStart;
      result.error = read.error;
      break;
    }
    error_code wec;
    if (read.kind == UpKind::Trailers) {
      ended = true;
      wec = co_await exchange.send_trailers(up->trailers());
    } else if (read.kind == UpKind::End) {
      ended = true;
      wec = co_await exchange.send_body(none, true);
    } else {
      // The last piece ends the response unless trailers follow (HTTP/2 only).
      ended = read.last && up->protocol() == Protocol::Http1;
      wec = co_await exchange.send_body(up->pieces(), ended);
      up->consume();
    }
    head_sent = true;
    if (wec) {
      result.outcome = Outcome::ClientGone;
      break;
    }
    if (options.idle_timeout.count() > 0)
      rearm(time.now());
  }
  result.finished_at = time.now();
  if (result.outcome != Outcome::Completed) {
    // Mid-response failure: the client must see a truncated message, not a clean one.
    exchange.close_after();
    up->abort();
    if (result.outcome == Outcome::BrokenAfterStart)
      exchange.abort_response();
    co_return result;
  }
  exchange.watch_upstream(nullptr);
  up->finish(result.finished_at);
  co_return result;
}

Task<ForwardResult> forward(Exchange& exchange,
                            const ForwardTarget& target,
                            const ForwardOptions& options) {
  std::unique_ptr<UpstreamStream> up;
  DuplexPump pump(exchange.worker().executor());
  ForwardResult result = co_await forward_on(exchange, target, options, up, pump);
  if (pump.running) {
    // The answer is over (or failed) while the request body still flows: stop both
    // sides of it, then wait for the pump, which uses `up` and the exchange.
    exchange.cancel_request_body();
    if (up)
      up->abort();
    while (pump.running) co_await pump.finished.wait();
  }
  if (pump.outcome != Outcome::Completed && !result.response_started) {
    result.outcome = pump.outcome;  // the client's side failed first
    result.error = pump.error;
  }
  co_return result;
}

}  // namespace sluice::http
