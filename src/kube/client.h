// kube/client.h
//
// The Kubernetes API over HTTPS: Beast on Asio SSL (OpenSSL), verifying the apiserver's
// certificate against the configured CA (IP SANs for an address, the name otherwise)
// and sending the current bearer token. Requests reuse a few idle keep-alive
// connections (at most kMaxIdle): a scale from zero should not wait for a TLS handshake.
// A request that fails on a reused connection before any answer (the server closed it
// while idle) is sent once more on a fresh one. Watches get a connection of their own.
//
// Every exchange has a deadline: `request` the whole exchange, `watch` the time between
// two reads (the apiserver sends BOOKMARKs about once a minute when asked for them, and
// ends a watch after its timeoutSeconds). Every buffer is bounded: a response body by
// `max_body`, a watch line (one event) by `max_line`.
//
// Threading: a Client is used from one executor; its coroutines may overlap.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <functional>
#include <string>
#include <string_view>

#include "core/time_source.h"
#include "http/io.h"
#include "kube/config.h"

namespace sluice::kube {

namespace asio = boost::asio;
using http::error_code;
using http::Task;

struct Response {
  error_code error;  // transport failure or deadline (asio::error::timed_out); else the status says
  int status = 0;
  std::string body;  // the whole body (request), or the error body of a refused watch
  bool ok() const { return !error && status >= 200 && status < 300; }
  // "200", "404: pods \"x\" not found", "connect: Connection refused", for logs.
  std::string describe() const;
};

class Client {
 public:
  Client(asio::any_io_executor executor, ClusterConfig config);
  ~Client();

  Task<Response> request(std::string_view method,
                         std::string target,
                         std::string body = {},
                         std::string_view content_type = "application/json",
                         core::Duration timeout = std::chrono::seconds(30),
                         size_t max_body = 64 << 20);

  // GET `target` as a stream of lines (a watch: one JSON event per line); `on_line` sees
  // each line without its newline. Returns when the server ends the stream (no error,
  // status 200), when it refuses it (status and body), or on failure.
  Task<Response> stream_lines(std::string target,
                              const std::function<void(std::string_view)>& on_line,
                              core::Duration idle_timeout,
                              size_t max_line = 16 << 20);

  const ClusterConfig& config() const { return config_; }
  static constexpr size_t kMaxIdle = 4;

 private:
  struct Idle;
  asio::any_io_executor executor_;
  ClusterConfig config_;
  asio::ssl::context tls_;
  TokenFile token_;
  std::vector<std::unique_ptr<Idle>> idle_;  // executor-owned
};

}  // namespace sluice::kube
