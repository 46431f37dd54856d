// http/forward.h
//
// forward() proxies the exchange's request to one upstream and streams the response
// back: request and response bodies flow piece by piece (an SSE event reaches the
// client as soon as the upstream writes it), hop-by-hop headers are dropped, bodies are
// re-framed, a 101 turns the connection into a tunnel.
//
// Failure contract: for every outcome before ResponseStarted nothing has been written
// to the client, so the caller chooses the answer (502/504, or a retry elsewhere); the
// result says whether any request byte reached the upstream. After the response started
// a failure closes the client connection (there is no honest way to report it).
//
// Timeouts: until the response head arrives, the connection's watchdog aborts the
// upstream at `response_start_deadline` (outcome TimedOut). After it, `idle_timeout`
// (0 = off) bounds the silence between writes, including tunnels, and `call_deadline`
// (a gRPC call's) the whole response; nothing else does, so WebSockets and long streams
// are not cut by the revision timeout.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "http/exchange.h"
#include "http/worker.h"

namespace sluice::http {

struct ForwardTarget {
  tcp::endpoint endpoint;
  std::string authority;                // "127.0.0.1:8080": Host for MoveToOriginal, error messages
  Protocol protocol = Protocol::Http1;  // what the upstream speaks
};

struct ForwardOptions {
  UpstreamRequestOptions rewrite;
  core::TimePoint response_start_deadline = core::TimePoint::max();
  std::chrono::milliseconds idle_timeout{0};
  // The call's own deadline (gRPC's grpc-timeout): bounds the whole exchange, the
  // response too (a stream still running at it is reset). max = none.
  core::TimePoint call_deadline = core::TimePoint::max();
  ExtraHeaders response_headers;
  // The whole request body, already read (Exchange::read_body): sent after the head,
  // which makes the request replayable (retried on a fresh connection like a body-less
  // one). Must stay valid for the call.
  std::optional<std::string_view> buffered_body;
  // Looks at the final response head before anything reaches the client; returning true
  // keeps it from the client (outcome Intercepted) so the caller can retry elsewhere.
  std::function<bool(const MessageHead&)> intercept;
};

struct ForwardResult {
  enum class Outcome {
    Completed,         // response fully relayed (or tunnel ended)
    ConnectFailed,     // could not connect; nothing sent upstream
    UpstreamClosed,    // upstream closed/reset before any response byte
    TimedOut,          // no response head by the deadline
    BadResponse,       // upstream sent something that is not HTTP
    BadRequestBody,    // client sent a malformed body (e.g. broken chunking)
    ClientGone,        // client went away; nothing more to say
    BrokenAfterStart,  // upstream failed mid-response; client connection closed
    Intercepted,       // options.intercept took the response; nothing sent to the client
    NeedsHttp2,        // a gRPC request and an HTTP/1 upstream: nothing sent anywhere
  };
  Outcome outcome = Outcome::Completed;
  error_code error;
  int status = 0;
  bool request_sent = false;  // some request byte reached the upstream
  bool upgraded = false;
  bool response_started = false;
  core::TimePoint connected_at{};  // request handed to the upstream
  core::TimePoint response_started_at{};
  core::TimePoint finished_at{};
};

std::string_view to_string(ForwardResult::Outcome o);

// What went wrong talking to an upstream, for error bodies: "connection refused",
// "connection reset", "connection closed", "connect timed out", "no route", else the
// system's message.
std::string failure_cause(const error_code& ec);

// The answer to a request whose body could not be read (outcome BadRequestBody): 431
// for trailers over the limit, else 400, naming what was wrong.
struct BadBodyAnswer {
  int status;
  std::string body;
};
BadBodyAnswer bad_request_body_answer(const error_code& ec, size_t line_limit = kDefaultLineLimit);

// What a client is told for outcome NeedsHttp2 (Sluice-Error: http2_required).
inline constexpr std::string_view kNeedsHttp2 =
    "gRPC needs HTTP/2 on every hop, and the hop to the app speaks HTTP/1 (an app that "
    "speaks gRPC names its container port h2c)";

Task<ForwardResult> forward(Exchange& exchange,
                            const ForwardTarget& target,
                            const ForwardOptions& options);

}  // namespace sluice::http
