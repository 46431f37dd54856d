// http/connection.h
//
// The HTTP/1.1 server side: a Server accepts on every worker (SO_REUSEPORT), each
// accepted socket becomes a ClientConnection that reads requests one after another and
// hands each to a Handler as an Exchange. The handler answers locally (respond) or
// proxies (forward, in forward.h).
//
// Limits at the edge: heads over `max_head_bytes` → 431; a malformed head or a request
// that frames its body ambiguously → 400, then close; a client that has not finished
// its head `header_timeout` after its first byte (or after connecting) is cut; idle
// keep-alive connections are closed after `keepalive_idle`.
//
// Threading: a connection and its coroutines run on one worker. Server::stop_accepting
// and Server::drain may be called from any thread.
#pragma once

#include <atomic>
#include <boost/beast/core/flat_buffer.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/timer.h"
#include "http/gather.h"
#include "http/headers.h"
#include "http/io.h"
#include "http/parser.h"
#include "http/worker.h"

namespace sluice::http {

using ExtraHeaders = std::vector<std::pair<std::string_view, std::string_view>>;

// Why a request was refused before any handler saw it (counted by the owner).
enum class Rejection { Malformed, HeadTooLarge, HeaderTimeout, AmbiguousFraming, Count };
std::string_view to_string(Rejection r);

struct ServerOptions {
  size_t max_head_bytes = 64 * 1024;
  std::chrono::milliseconds header_timeout{60'000};
  std::chrono::milliseconds keepalive_idle{600'000};
  std::string_view name = "server";  // for logs
  // Called on the worker for every rejected request (metrics).
  std::function<void(Worker&, Rejection)> on_reject;
};

class Exchange;

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

// Per-server counters the drain logic needs; updated on workers, read anywhere.
struct ServerLoad {
  std::atomic<int64_t> active_requests{0};  // handlers running (incl. queued, tunnels)
  std::atomic<int64_t> open_connections{0};
};

class ClientConnection : public std::enable_shared_from_this<ClientConnection>,
                         public ConnectionHook {
 public:
  ClientConnection(Worker& worker,
                   Stream stream,
                   const ServerOptions& options,
                   std::shared_ptr<ServerLoad> load);
  ~ClientConnection();

  Task<void> serve(Handler& handler);

  // Watchdog: what to do when the current deadline passes. Setting a later deadline is
  // just a store; the timer re-arms itself lazily when it fires early.
  enum class Watch { None, CloseClient, AbortUpstream };
  void watch(Watch what, core::TimePoint deadline);
  void unwatch() { watch_ = Watch::None; }
  bool timed_out() const { return timed_out_; }

  // Closes the socket if idle, else asks for close after the current response.
  void close_gracefully();

  Worker& worker() { return worker_; }
  Stream& stream() { return stream_; }
  boost::beast::flat_buffer& buffer() { return buffer_; }
  std::optional<RequestParser>& parser() { return parser_; }
  MessageHead& head() { return head_; }
  BodyPieces& body() { return body_; }
  std::string& scratch() { return scratch_; }
  std::string& head_storage() { return head_storage_; }
  // Storage for the upstream side of forward(), reused across requests.
  MessageHead& upstream_head() { return up_head_; }
  BodyPieces& upstream_body() { return up_body_; }
  std::string& upstream_scratch() { return up_scratch_; }
  Gather& gather() { return gather_; }
  const std::string& client_ip() const { return client_ip_; }
  void set_upstream(UpstreamConnection* up) { upstream_ = up; }
  bool closing() const { return closing_; }
  void set_closing() { closing_ = true; }

  // Reads more bytes from the client into buffer(). Returns 0 and an error on EOF/failure.
  Task<std::pair<error_code, size_t>> read_some(size_t hint = 16 * 1024);
  // Writes `data` (plus optional pieces) to the client.
  Task<error_code> write(std::string_view data,
                         const std::vector<std::string_view>* pieces = nullptr);

 private:
  void arm_timer(core::TimePoint at);
  void on_timer();
  Task<bool> read_head();

  Worker& worker_;
  Stream stream_;
  const ServerOptions& options_;
  // Shared: a connection's coroutine frame can outlive the Server when an io_context is
  // destroyed with handlers still queued (shutdown), and its destructor counts itself out.
  std::shared_ptr<ServerLoad> load_;
  boost::beast::flat_buffer buffer_;
  std::optional<RequestParser> parser_;
  MessageHead head_;
  BodyPieces body_;
  std::string scratch_;
  std::string head_storage_;  // head bytes for MessageHead::own
  MessageHead up_head_;
  BodyPieces up_body_;
  std::string up_scratch_;
  Gather gather_;
  std::vector<asio::const_buffer> write_buffers_;
  std::string client_ip_;
  core::Timer timer_;
  bool timer_armed_ = false;
  core::TimePoint timer_at_{};
  Watch watch_ = Watch::None;
  core::TimePoint deadline_{};
  bool timed_out_ = false;
  bool idle_ = true;
  bool closing_ = false;
  UpstreamConnection* upstream_ = nullptr;
  friend class Exchange;
};

// Watches a client socket nobody reads (its request waits in a queue) and calls
// `on_hangup` once if the client's FIN arrives, so the request leaves the queue at once
// instead of reaching the app later for nobody. Pipelined bytes end the watch without a
// verdict (they are the next request's). Lives on the connection's worker; destroying it
// stops the watch.
class HangupWatch {
 public:
  HangupWatch(ClientConnection& conn, std::function<void()> on_hangup);
  ~HangupWatch();
  HangupWatch(const HangupWatch&) = delete;
  HangupWatch& operator=(const HangupWatch&) = delete;

 private:
  ClientConnection& conn_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// One request on a connection, handed to the Handler.
class Exchange {
 public:
  Exchange(ClientConnection& conn, core::TimePoint started) : conn_(conn), started_(started) {}

  const MessageHead& request() const { return conn_.head(); }
  ClientConnection& connection() { return conn_; }
  core::TimePoint started_at() const { return started_; }
  std::string_view client_ip() const { return conn_.client_ip(); }
  // True once the request head (and any body) has been fully read or forwarded.
  bool request_body_done() const { return conn_.parser()->is_done(); }

  // Reads the whole request body into `out` (de-chunked), answering Expect:
  // 100-continue first, so the request can be forwarded more than once; the head is
  // copied out of the read buffer first. Only for a body known to fit (the caller checks
  // Content-Length against its bound); a broken body is an error (the connection closes).
  Task<error_code> read_body(std::string& out);

  // Answers locally. A request body that was not read makes the connection close.
  Task<void> respond(int status, std::string_view body, const ExtraHeaders& extra = {});

  bool responded() const { return responded_; }
  int status() const { return status_; }
  void mark_responded(int status) {
    responded_ = true;
    status_ = status;
  }
  // The connection must not be reused after this exchange.
  void close_after() { close_after_ = true; }
  bool close_after_response() const { return close_after_; }

 private:
  ClientConnection& conn_;
  core::TimePoint started_;
  bool responded_ = false;
  bool close_after_ = false;
  int status_ = 0;
};

// Opens, binds and listens `acceptor` on `endpoint`: `[::]` is dual-stack (IPv4 too, as
// ::ffff:a.b.c.d), SO_REUSEADDR always, SO_REUSEPORT when several acceptors share a port.
error_code open_acceptor(tcp::acceptor& acceptor, const tcp::endpoint& endpoint, bool reuse_port);

class Server {
 public:
  Server(std::vector<Worker*> workers, Handler& handler, ServerOptions options);
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds one SO_REUSEPORT acceptor per worker on `endpoint` (port 0 picks one port for
  // all) and starts accepting. Returns the error (e.g. address in use) instead of throwing.
  error_code listen(const tcp::endpoint& endpoint);
  // Every address of this host, IPv6 and IPv4 on one dual-stack socket (`[::]`), as Go's
  // ":port" does for Knative's components, so IPv6 and dual-stack pods are reachable;
  // IPv4 alone (`0.0.0.0`) where the kernel has no IPv6.
  error_code listen_on_all(uint16_t port);
  uint16_t port() const { return port_; }
  // Thread-safe. Stops accepting new connections.
  void stop_accepting();
  // Thread-safe. Closes idle keep-alive connections; busy ones close after their response.
  void close_idle_connections();
  const ServerLoad& load() const { return *load_; }

 private:
  Task<void> accept_loop(Worker& worker, std::shared_ptr<tcp::acceptor> acceptor);

  std::vector<Worker*> workers_;
  Handler& handler_;
  ServerOptions options_;
  std::shared_ptr<ServerLoad> load_ = std::make_shared<ServerLoad>();
  std::vector<std::shared_ptr<tcp::acceptor>> acceptors_;
  uint16_t port_ = 0;
};

}  // namespace sluice::http
