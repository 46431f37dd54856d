#include "http/worker.h"

#include <boost/asio/executor_work_guard.hpp>

#include "http/connection.h"
#include "http/h2_client.h"

namespace sluice::http {

size_t EndpointHash::operator()(const tcp::endpoint& ep) const {
  size_t h = std::hash<unsigned short>()(ep.port());
  if (ep.address().is_v4()) {
    h ^= std::hash<uint32_t>()(ep.address().to_v4().to_uint()) * 31;
  } else {
    auto bytes = ep.address().to_v6().to_bytes();
    for (auto b : bytes) h = h * 131 + b;
  }
  return h;
}

UpstreamConnectionPtr UpstreamPool::take(const tcp::endpoint& ep) {
  auto it = idle_.find(ep);
  if (it == idle_.end())
    return nullptr;
  auto& stack = it->second;
  while (!stack.empty()) {
    UpstreamConnectionPtr conn = std::move(stack.back());
    stack.pop_back();
    // A FIN, or a response nobody asked for: drop both. (A stream that cannot tell, a
    // test's, is reused.)
    if (conn->watched) {
      if (conn->idle_event)
        continue;
      conn->watched = false;
      conn->stream.cancel();  // the watch is still waiting: nothing arrived
    } else {
      const Stream::Peek state = conn->stream.peek();
      if (state == Stream::Peek::Data || state == Stream::Peek::Closed)
        continue;
    }
    conn->reused = true;
    return conn;
  }
  return nullptr;
}

void UpstreamPool::give_back(UpstreamConnectionPtr conn, core::TimePoint now) {
  auto& stack = idle_[conn->endpoint];
  if (stack.size() >= max_idle_)
    return;  // dropped: closes
  conn->idle_since = now;
  conn->idle_event = false;
  // Closes it as soon as something arrives: the upstream's keep-alive timeout frees
  // the descriptor at once instead of at the next take().
  conn->watched = conn->stream.watch_idle(
      &conn->idle_event, [weak = std::weak_ptr<UpstreamConnection>(conn)](error_code ec, size_t) {
        if (ec == asio::error::operation_aborted)
          return;
        if (auto c = weak.lock())
          c->stream.close();
      });
  stack.push_back(std::move(conn));
}

Worker::Worker(size_t index, core::TimeSource& time, uint64_t seed, size_t max_idle_upstream)
    : index_(index),
      time_(time),
      random_(seed + index),
      pool_(max_idle_upstream),
      h2_pool_(std::make_unique<H2ClientPool>(*this)) {}

Worker::~Worker() = default;

void Worker::close_connections_gracefully() {
  // close_gracefully may destroy nothing synchronously (sockets close, coroutines
  // finish later), so iterating while calling it is safe.
  for (auto& hook : connections_) hook.close_gracefully();
}

void Worker::run() {
  auto guard = asio::make_work_guard(io_);
  io_.run();
}

}  // namespace sluice::http
