// http/h2_server.h
//
// The HTTP/2 server codec: one nghttp2 session per connection, each request stream
// handed to the same Handler as HTTP/1 requests, as an H2Exchange (exchange.h). A
// ClientConnection hands a connection over when it opens with the preface (prior
// knowledge: gRPC clients, `curl --http2-prior-knowledge`) or after answering
// `Upgrade: h2c` with 101 (RFC 7540 §3.2; the request becomes stream 1).
//
// How it runs: a reader coroutine feeds socket bytes to nghttp2_session_mem_recv and a
// writer coroutine drains nghttp2_session_mem_send into one socket write per turn. The
// nghttp2 callbacks never suspend; they only record what arrived and wake the stream's
// handler or the writer, so no coroutine runs inside nghttp2.
//
// Bounded by construction:
//   - Request DATA: the window is given back (nghttp2_session_consume) only once the
//     handler has passed a piece on, so a stream holds at most its window
//     (`stream_window`) and the connection at most `connection_window`: a slow
//     upstream stops the client, not a buffer.
//   - Response DATA: send_body() waits while more than `max_stream_output` bytes are
//     queued for a stream, so a client that stops granting window stops the upstream
//     read.
//   - Streams: SETTINGS_MAX_CONCURRENT_STREAMS (a stream above it: REFUSED_STREAM or,
//     once the setting is acknowledged, GOAWAY); header lists: `max_header_list` (431).
//   - Abuse (an internet-facing front door): a client's RST_STREAMs spend a token bucket
//     (`reset_burst`, refilled at `resets_per_second`) and emptying it ends the session
//     with ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487); a header block in more than
//     8 CONTINUATION frames, or control frames whose answers the client never reads
//     (SETTINGS/PING floods), end the session (nghttp2's guards); a header block or the
//     client's first SETTINGS not done within `header_timeout` ends it too. Each is
//     counted through `on_reject` by reason (connection.h: Rejection), with every other
//     protocol error the client makes.
//
// Drain: close_gracefully() sends GOAWAY in two steps (a shutdown notice, then the last
// stream id a moment later, so streams the client had in flight are still taken) and
// closes once the open streams have finished.
//
// Threading: a session, its streams and their handlers run on one worker.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "http/connection.h"

namespace sluice::http {

inline constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct H2Options {
  uint32_t max_concurrent_streams = 250;
  uint32_t stream_window = 256 * 1024;
  uint32_t connection_window = 1024 * 1024;
  uint32_t max_header_list = 64 * 1024;
  size_t max_stream_output = 64 * 1024;
  // A session with no open stream is closed after this long (GOAWAY first).
  std::chrono::milliseconds idle_timeout{600'000};
  // Between the shutdown notice and the final GOAWAY of a drain.
  std::chrono::milliseconds goaway_grace{1'000};
  // For the client's first SETTINGS and for each header block to complete.
  std::chrono::milliseconds header_timeout{60'000};
  // Client RST_STREAMs allowed at once, and regained per second.
  uint32_t reset_burst = 400;
  uint32_t resets_per_second = 40;
  std::string_view name = "server";                   // for logs
  std::function<void(Worker&, Rejection)> on_reject;  // called on the session's worker
};

// HTTP/2 settings that follow a server's HTTP/1 limits: the same head size bound (as
// the header list size), the same header and idle timeouts, the same name in logs and
// the same rejection counter.
std::shared_ptr<const H2Options> h2_options_like(const ServerOptions& http1);

// The HTTP/1.1 request that asked for `Upgrade: h2c`, answered on stream 1.
struct H2Upgrade {
  std::string settings;      // the HTTP2-Settings field (base64url SETTINGS payload)
  std::string head_storage;  // what `head` points into
  MessageHead head;
};

// Decodes base64url without padding (RFC 4648 §5), as HTTP2-Settings carries it.
std::optional<std::string> decode_base64url(std::string_view in);

class H2ServerSession : public std::enable_shared_from_this<H2ServerSession>,
                        public ConnectionHook {
 public:
  // `received`: bytes already read after the preface (or after the upgrade request).
  H2ServerSession(Worker& worker,
                  Stream stream,
                  const H2Options& options,
                  std::shared_ptr<ServerLoad> load,
                  std::string client_ip,
                  std::string_view received,
                  std::optional<H2Upgrade> upgrade);
  ~H2ServerSession() override;
  H2ServerSession(const H2ServerSession&) = delete;
  H2ServerSession& operator=(const H2ServerSession&) = delete;

  Task<void> serve(Handler& handler);
  void close_gracefully() override;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::http
