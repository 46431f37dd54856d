// http/upstream.h
//
// The upstream half of the proxy path: one request/response exchange with an upstream,
// whatever protocol it speaks. forward() relays an Exchange (the downstream codec) to an
// UpstreamStream (the upstream codec) without knowing either protocol:
//   - H1Upstream (h1_upstream.h): a pooled HTTP/1.1 keep-alive connection, one
//     exchange at a time;
//   - H2Upstream (h2_client.h): one stream of a multiplexed HTTP/2 session, many at once.
//
// The same rules as Exchange's codec half: pieces handed out are valid until
// consume(); send_body() completes when the codec has room again (the socket, or the
// stream's HTTP/2 window), which couples flow control across the hops.
//
// Threading: one worker.
#pragma once

#include <chrono>
#include <memory>
#include <optional>

#include "http/exchange.h"
#include "http/headers.h"
#include "http/io.h"
#include "http/parser.h"

namespace sluice::http {

struct UpstreamConnection;

// How the request body will be sent.
struct RequestShape {
  BodyFraming framing = BodyFraming::None;
  std::optional<uint64_t> content_length;
  bool upgrade = false;  // HTTP/1 Upgrade (WebSocket): keep Connection/Upgrade
};

class UpstreamStream {
 public:
  virtual ~UpstreamStream() = default;

  virtual Protocol protocol() const = 0;
  // Makes the exchange ready to start: nothing to do on a pooled HTTP/1 connection or a
  // live HTTP/2 session with room; else dials. abort() during it ends it.
  virtual Task<error_code> connect() = 0;
  // connect() would do nothing (a pooled HTTP/1 connection): the caller may skip the
  // coroutine, which is most of what reusing a connection costs.
  virtual bool connected() const { return false; }
  // The connection was pooled (HTTP/1) or shared (HTTP/2) before this request: a close
  // before any answer may be the idle-close race, and a body-less request may be retried.
  virtual bool reused() const = 0;

  // Stages the request head (rewritten for this hop); nothing is sent before send_body().
  virtual void start_request(const MessageHead& head,
                             const RequestShape& shape,
                             const UpstreamRequestOptions& rewrite) = 0;
  // Sends the staged head (if any) and `pieces`; `last` ends the request body.
  virtual Task<error_code> send_body(const BodyPieces& pieces, bool last) = 0;

  struct HeadRead {
    error_code error;
    bool got_any = false;  // some response byte arrived before the error
    bool refused = false;  // the upstream says it did not process the request (retry-safe)
  };
  // Reads the next response head, interim (1xx) ones included.
  virtual Task<HeadRead> read_head(bool head_request) = 0;
  virtual const MessageHead& head() const = 0;
  virtual std::optional<uint64_t> content_length() const = 0;

  struct BodyRead {
    enum class Kind { Data, Trailers, End, Error } kind = Kind::End;
    bool last = false;  // Data: nothing follows but (maybe) trailers
    error_code error;
  };
  // True when read_body() will not wait (pieces are already buffered).
  virtual bool body_ready() const = 0;
  virtual Task<BodyRead> read_body() = 0;
  virtual const BodyPieces& pieces() const = 0;
  virtual const MessageHead& trailers() const = 0;
  virtual void consume() = 0;

  // The exchange completed cleanly: the connection goes back to its pool if reusable.
  virtual void finish(core::TimePoint now) = 0;
  // Fails what is pending and gives the connection up (HTTP/1 closes, HTTP/2 resets the
  // stream): the watchdog's deadline, or the client's cancel.
  virtual void abort() = 0;
  // HTTP/1 only: the connection, for a 101 tunnel.
  virtual UpstreamConnection* tunnel() { return nullptr; }
};

}  // namespace sluice::http
