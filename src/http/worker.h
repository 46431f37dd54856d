// http/worker.h
//
// A Worker is one thread's io_context plus the state that thread owns alone: its
// upstream connection pool, its random generator, its registry of client connections.
// A connection lives on one worker for its whole life, so none of this needs a lock.
//
// Threading: everything except post()/run()/stop() must be called on the worker's thread.
#pragma once

#include <atomic>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/intrusive/list.hpp>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/random.h"
#include "core/time_source.h"
#include "http/gather.h"
#include "http/io.h"
#include "http/parser.h"
#include "http/stream.h"

namespace sluice::http {

// A keep-alive connection to an upstream (the app, or a queue-proxy).
// It carries the storage forward() parses and writes with, so a warm connection
// forwards a request without allocating.
struct UpstreamConnection {
  explicit UpstreamConnection(Stream s) : stream(std::move(s)) {}
  Stream stream;
  tcp::endpoint endpoint;
  boost::beast::flat_buffer buffer;
  bool reused = false;
  core::TimePoint idle_since{};  // when it went back to the pool
  // While pooled: whether a watch (Stream::watch_idle) is waiting on it, and whether it
  // saw bytes or a FIN arrive.
  bool watched = false;
  bool idle_event = false;
  MessageHead head;  // the response being read
  BodyPieces body;
  std::string request_head;  // the request head being written
  Gather gather;
};
using UpstreamConnectionPtr = std::shared_ptr<UpstreamConnection>;

struct EndpointHash {
  size_t operator()(const tcp::endpoint& ep) const;
};

// Idle upstream connections of one worker, most recently used first.
//
// Every idle connection is watched: EOF means the upstream closed it while idle (its
// keep-alive timeout; sending into it would fail, Knative's #12414), and any byte means
// the upstream wrote something nobody asked for (an app that sends a second response
// after a complete one). Either way it is dropped: bytes left on a connection would
// reach the next request, from another client, as its response. The watch is a read
// waiting in the reactor that marks the connection the moment anything arrives
// (DrainingSocket::watch_idle), so take() knows without a system call; streams that
// cannot be watched (tests') are peeked with a non-blocking recv instead. (Peeking only
// connections idle for more than 10 ms saved a system call per request and let a stale
// response through 40 times out of 40.) forward() still retries a body-less request
// once on a fresh connection if the upstream closes in the meantime.
class UpstreamPool {
 public:
  explicit UpstreamPool(size_t max_idle_per_endpoint) : max_idle_(max_idle_per_endpoint) {}
  // A live idle connection to `ep`, or nullptr.
  UpstreamConnectionPtr take(const tcp::endpoint& ep);
  void give_back(UpstreamConnectionPtr conn, core::TimePoint now);

 private:
  size_t max_idle_;
  std::unordered_map<tcp::endpoint, std::vector<UpstreamConnectionPtr>, EndpointHash> idle_;
};

// A client connection of any protocol, listed on its worker for drain.
class H2ClientPool;  // h2_client.h

struct ConnectionHook
    : boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
  virtual ~ConnectionHook() = default;
  // Closes the connection if idle, else lets what is in flight finish first.
  virtual void close_gracefully() = 0;
};

class Worker {
 public:
  Worker(size_t index, core::TimeSource& time, uint64_t seed, size_t max_idle_upstream);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  asio::io_context& io() { return io_; }
  asio::any_io_executor executor() { return io_.get_executor(); }
  size_t index() const { return index_; }
  core::TimeSource& time() { return time_; }
  core::Random& random() { return random_; }
  UpstreamPool& pool() { return pool_; }
  // Multiplexed HTTP/2 sessions to upstreams that speak h2c.
  H2ClientPool& h2_pool() { return *h2_pool_; }
  // A new, unconnected stream to an upstream: a TCP socket unless a test replaced it.
  Stream new_upstream_stream() {
    return upstream_streams_ ? upstream_streams_() : Stream::tcp(tcp::socket(io_));
  }
  void set_upstream_streams(std::function<Stream()> make) { upstream_streams_ = std::move(make); }

  // Client connections currently open on this worker (for drain).
  using ConnectionList =
      boost::intrusive::list<ConnectionHook, boost::intrusive::constant_time_size<false>>;
  ConnectionList& connections() { return connections_; }
  // Closes idle keep-alive connections now and makes busy ones close after their
  // current response. Runs on this worker.
  void close_connections_gracefully();

  // Runs the event loop until stop(); keeps running while idle.
  void run();
  void stop() { io_.stop(); }

 private:
  size_t index_;
  core::TimeSource& time_;
  core::FastRandom random_;
  asio::io_context io_{1};
  UpstreamPool pool_;
  std::unique_ptr<H2ClientPool> h2_pool_;
  ConnectionList connections_;
  std::function<Stream()> upstream_streams_;
};

}  // namespace sluice::http
