// knative/stat_server.h
//
// The autoscaler's end of the activators' stat websocket, as Knative 1.18's
// (pkg/autoscaler/statserver/server.go): port 8080, any path, binary frames of protobuf
// WireStatMessages; a plain GET (the kubelet's probes) gets 200 while the server runs.
// Accepts Knative's activators and Sluice's (which also fill `sluice_pods`), and a
// standby Sluice autoscaler relaying what its activators sent (path /forwarded).
//
// Bounded: at most `max_connections` at once (more are closed at accept), a request head
// of 8 KiB, a frame of 1 MiB (a frame is a second's stats of one activator), and a
// connection silent for `idle_timeout` is closed (activators send every second). A frame
// that does not parse is logged once per connection and skipped.
//
// Threading: one executor (the autoscaler's home); `on_frame` runs on it.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>
#include <string>

#include "core/time_source.h"
#include "http/io.h"
#include "stats/stat.pb.h"

namespace sluice::knative {

struct StatServerOptions {
  size_t max_connections = 1024;
  size_t max_frame = 1 << 20;
  core::Duration idle_timeout = std::chrono::seconds(60);
};

class StatServer {
 public:
  // `forwarded`: the frame came from a standby autoscaler (path /forwarded), not from
  // an activator; it is never forwarded again.
  using FrameHandler = std::function<void(const stats::wire::WireStatMessages&, bool forwarded)>;
  StatServer(boost::asio::any_io_executor executor,
             FrameHandler on_frame,
             StatServerOptions options = {});
  ~StatServer();

  // What a plain GET returns instead of "ok" (a metrics port: Prometheus text). A server
  // without a frame handler refuses websocket upgrades.
  void set_get_handler(std::function<std::string()> get) { on_get_ = std::move(get); }
  // Binds and starts accepting; returns the error (e.g. address in use).
  http::error_code listen(const boost::asio::ip::tcp::endpoint& endpoint);
  uint16_t port() const;
  void stop();
  size_t connections() const { return *open_; }

 private:
  http::Task<void> accept_loop();
  http::Task<void> serve(boost::asio::ip::tcp::socket socket);

  boost::asio::any_io_executor executor_;
  FrameHandler on_frame_;
  std::function<std::string()> on_get_;
  StatServerOptions opts_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<size_t> open_ = std::make_shared<size_t>(0);
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace sluice::knative
