// http/exchange.h
//
// One request and its answer, whatever protocol the client speaks. The proxy path (the
// activator's and the queue-proxy's handlers: probes, admission, retries, error answers,
// metrics) sees only this interface, and forward() moves the request body and the
// upstream's answer through it. There is one implementation per downstream codec:
//   - H1Exchange (connection.h): one request of an HTTP/1.x ClientConnection;
//   - H2Exchange (h2_server.h): one stream of an HTTP/2 session.
// Nothing above this line knows which one it holds, so there is one proxy path, not one
// per protocol (Envoy's split of codecs from streams).
//
// The codec half (read_request_body, start_response, send_body, ...) is what forward()
// calls. Its rules:
//   - read_request_body() hands out the next pieces of the request body, valid until
//     consume_request_body(); the codec reads no more from the client until then, which
//     is what bounds a body in flight to one read (HTTP/1) or one stream window (HTTP/2).
//   - start_response() stages the head; send_body() writes it with the first pieces, so
//     a small answer leaves in one write. send_body() completes only when the codec has
//     room again (a slow reader's socket, or its HTTP/2 window), which is how a slow
//     client slows the upstream read instead of growing a buffer.
//
// Threading: an exchange and all its calls belong to its worker's thread.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/time_source.h"
#include "http/headers.h"
#include "http/io.h"
#include "http/parser.h"

namespace sluice::http {

class Worker;
class Stream;
struct UpstreamConnection;
class UpstreamStream;

using ExtraHeaders = std::vector<std::pair<std::string_view, std::string_view>>;

enum class Protocol { Http1, Http2 };
std::string_view to_string(Protocol p);

// Keeps watching for the client going away while its request waits (a queue) and calls
// the callback once when it does, so the request leaves the queue at once instead of
// reaching the app later for nobody. Destroying it ends the watch.
class HangupWatch {
 public:
  virtual ~HangupWatch() = default;
};

// What the upstream's response looks like, for the downstream codec to frame it.
struct ResponseShape {
  std::optional<uint64_t> content_length;  // declared by the upstream
  bool head_request = false;               // the response has no body whatever it says
  bool upgraded = false;                   // 101 to an Upgrade request: a tunnel follows
};

class Exchange {
 public:
  Exchange(Worker& worker, core::TimePoint started) : worker_(worker), started_(started) {}
  virtual ~Exchange() = default;
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // --- the request ------------------------------------------------------------------
  // HTTP/2 pseudo-headers appear as HTTP/1 would carry them: :method and :path as the
  // method and target, :authority as the Host field; version is 20.
  virtual const MessageHead& request() const = 0;
  virtual Protocol protocol() const = 0;
  Worker& worker() const { return worker_; }
  core::TimePoint started_at() const { return started_; }
  virtual std::string_view client_ip() const = 0;
  // True once the request body (if any) has been fully read or forwarded.
  virtual bool request_body_done() const = 0;
  // The body's declared length (Content-Length), or nullopt when it is streamed
  // (chunked, or an HTTP/2 stream without content-length).
  virtual std::optional<uint64_t> request_content_length() const = 0;
  // An HTTP/1 Upgrade request (WebSocket) that forward() may turn into a tunnel.
  virtual bool upgrade() const = 0;

  // Reads the whole request body into `out`, so the request can be forwarded more than
  // once; the head stays valid. Only for a body known to fit (the caller checks the
  // declared length against its bound). A broken body is an error.
  virtual Task<error_code> read_body(std::string& out) = 0;

  // Answers locally.
  virtual Task<void> respond(int status, std::string_view body, const ExtraHeaders& extra = {}) = 0;

  // The client cancelled this request (an HTTP/2 RST_STREAM, or its session ended). An
  // upstream failure after that is the cancellation's doing, not the upstream's.
  virtual bool client_gone() const = 0;

  // Starts watching for the client's hang-up (see HangupWatch).
  virtual std::unique_ptr<HangupWatch> watch_hangup(std::function<void()> on_hangup) = 0;

  bool responded() const { return responded_; }
  int status() const { return status_; }
  void mark_responded(int status) {
    responded_ = true;
    status_ = status;
  }
  // The client connection must not carry another request after this one (HTTP/1; an
  // HTTP/2 session goes on with its other streams).
  void close_after() { close_after_ = true; }
  bool close_after_response() const { return close_after_; }

  // --- the codec half, for forward() --------------------------------------------------
  struct BodyRead {
    enum class Kind { Data, End, ClientGone, Malformed } kind = Kind::End;
    error_code error;
  };
  // The next request body pieces (into request_pieces()), End when there are no more.
  virtual Task<BodyRead> read_request_body() = 0;
  virtual const BodyPieces& request_pieces() const = 0;
  // The pieces were passed on: the codec may read (or let the client send) more.
  virtual void consume_request_body() = 0;
  // The response is over while the request body still flows: a pending or later
  // read_request_body() ends (ClientGone), and the rest of the body is not wanted.
  virtual void cancel_request_body() = 0;

  // An interim (1xx) response head, passed on where the client's protocol can carry it.
  virtual Task<error_code> send_interim(const MessageHead& head) = 0;
  // Stages the final response head; nothing is written before send_body().
  virtual void start_response(const MessageHead& head,
                              const ResponseShape& shape,
                              const ExtraHeaders& extra) = 0;
  // Writes the staged head (if any) and `pieces`; `last` ends the response. Completes
  // when the codec has room for more.
  virtual Task<error_code> send_body(const BodyPieces& pieces, bool last) = 0;
  // Ends the response with trailer fields (gRPC's grpc-status). HTTP/2 sends them as a
  // HEADERS frame; HTTP/1 ends the chunked body and drops them (no client of ours reads
  // HTTP/1 trailers, and gRPC never crosses HTTP/1).
  virtual Task<error_code> send_trailers(const MessageHead& trailers) = 0;
  // The response cannot be completed (the upstream broke after it started): the client
  // must see a truncated message, not a clean end (HTTP/1 closes, HTTP/2 resets).
  virtual void abort_response() = 0;
  // After a 101: relays bytes both ways between the client and `upstream` until either
  // side ends (HTTP/1 only; HTTP/2 never reports upgrade()).
  virtual Task<error_code> tunnel(UpstreamConnection& upstream,
                                  std::chrono::milliseconds idle_timeout) = 0;

  // The exchange's watchdog: when the deadline passes it closes the watched upstream
  // (or, with none, abandons the client: HTTP/1 closes, HTTP/2 resets the stream), and
  // timed_out() says so. Moving the deadline later is cheap (the timer re-arms lazily).
  virtual void set_deadline(core::TimePoint deadline) = 0;
  virtual void clear_deadline() = 0;
  virtual bool timed_out() const = 0;
  // What the watchdog (and, on HTTP/2, the client's RST_STREAM) aborts: the upstream
  // being talked to, or nullptr.
  virtual void watch_upstream(UpstreamStream* upstream) = 0;

 private:
  Worker& worker_;
  core::TimePoint started_;
  bool responded_ = false;
  bool close_after_ = false;
  int status_ = 0;
};

class Handler {
 public:
  virtual ~Handler() = default;
  // Must answer the exchange (respond or forward) before returning.
  virtual Task<void> handle(Exchange& exchange) = 0;
};

// Serves a Handler from a member coroutine of its owner, e.g.
//   MemberHandler<QueueProxyImpl, &QueueProxyImpl::handle_main> main_handler_{*this};
template <typename T, Task<void> (T::*Fn)(Exchange&)>
class MemberHandler final : public Handler {
 public:
  explicit MemberHandler(T& owner) : owner_(owner) {}
  Task<void> handle(Exchange& ex) override { return (owner_.*Fn)(ex); }

 private:
  T& owner_;
};

}  // namespace sluice::http
