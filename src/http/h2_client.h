// http/h2_client.h
//
// The HTTP/2 upstream codec: multiplexed h2c sessions to upstreams that speak it (an app
// whose container port is named h2c; a queue-proxy of such a revision), one pool per
// worker. A request is one stream (an H2Upstream, upstream.h) of a session that has room
// (the peer's SETTINGS_MAX_CONCURRENT_STREAMS), not one connection per request: a
// session is dialled only when every live one to the endpoint is full or going away.
//
// Bounded like the server side (h2_server.h): response DATA gives its window back only
// once forwarded (`stream_window` per stream, `connection_window` per session), request
// DATA waits while more than `max_stream_output` bytes are queued for a stream.
//
// Refusals are retry-safe and said so (HeadRead::refused): a stream the peer refused
// (REFUSED_STREAM), one above the last stream id of its GOAWAY, or one that could not be
// opened on a session that is going away, was never processed.
//
// A session with no stream for `idle_timeout` sends GOAWAY and closes; a session whose
// peer sent GOAWAY takes no new stream and leaves the pool.
//
// Threading: one worker.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "http/upstream.h"
#include "http/worker.h"

namespace sluice::http {

struct H2ClientOptions {
  uint32_t stream_window = 256 * 1024;
  uint32_t connection_window = 1024 * 1024;
  size_t max_stream_output = 64 * 1024;
  std::chrono::milliseconds idle_timeout{90'000};
};

class H2ClientPool {
 public:
  explicit H2ClientPool(Worker& worker, H2ClientOptions options = {});
  ~H2ClientPool();
  H2ClientPool(const H2ClientPool&) = delete;
  H2ClientPool& operator=(const H2ClientPool&) = delete;

  // A stream to `endpoint`; its connect() takes a live session with room (unless
  // `fresh`), else dials a new one.
  std::unique_ptr<UpstreamStream> stream(const tcp::endpoint& endpoint, bool fresh);
  size_t sessions() const;
  const H2ClientOptions& options() const { return options_; }

  struct Session;

  // For H2Upstream::connect: a session with room, or nullptr; a new session's home.
  std::shared_ptr<Session> find(const tcp::endpoint& endpoint);
  std::shared_ptr<Session> add(const tcp::endpoint& endpoint, Stream connected);
  void forget(const Session* session);

 private:
  Worker& worker_;
  H2ClientOptions options_;
  std::unordered_map<tcp::endpoint, std::vector<std::shared_ptr<Session>>, EndpointHash> sessions_;
};

// Whether the server at `endpoint` speaks HTTP/2 with prior knowledge (h2c): sends the
// client preface and an empty SETTINGS frame and looks at the first frame that comes
// back. An HTTP/2 server's first frame is its SETTINGS; an HTTP/1 server answers 400,
// closes or says nothing within `timeout`. nullopt: no connection (ask again later).
Task<std::optional<bool>> speaks_h2c(asio::any_io_executor executor,
                                     core::TimeSource& time,
                                     tcp::endpoint endpoint,
                                     std::chrono::milliseconds timeout);

}  // namespace sluice::http
