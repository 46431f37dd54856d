// http/connection.h
//
// The HTTP/1.1 server side: a Server accepts on every worker (SO_REUSEPORT), each
// accepted socket becomes a ClientConnection that reads requests one after another and
// hands each to a Handler as an H1Exchange (exchange.h). The handler answers locally
// (respond) or proxies (forward, in forward.h). A connection that opens with the HTTP/2
// preface, or upgrades to h2c, is handed to an HTTP/2 session instead (h2_server.h).
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
#include "http/exchange.h"
#include "http/gather.h"
#include "http/headers.h"
#include "http/io.h"
#include "http/parser.h"
#include "http/upstream.h"
#include "http/watchdog.h"
#include "http/worker.h"

namespace sluice::http {

// Why a request was refused before any handler saw it (counted by the owner).
// Why a request or a connection was refused before reaching a handler. The HTTP/2 ones
// are the limits an internet-facing HTTP/2 server needs (h2_server.h); HeadTooLarge,
// HeaderTimeout and Malformed count both protocols.
enum class Rejection {
  Malformed,
  HeadTooLarge,
  HeaderTimeout,
  AmbiguousFraming,
  Http2TooManyStreams,     // a stream above SETTINGS_MAX_CONCURRENT_STREAMS
  Http2RapidReset,         // streams reset faster than the budget (CVE-2023-44487)
  Http2ContinuationFlood,  // a header block in too many CONTINUATION frames
  Http2ControlFlood,       // SETTINGS/PING/RST answers the client never reads
  Http2ProtocolError,      // any other connection or stream error the client caused
  Count
};
std::string_view to_string(Rejection r);

struct H2Options;  // h2_server.h

struct ServerOptions {
  size_t max_head_bytes = 64 * 1024;
  std::chrono::milliseconds header_timeout{60'000};
  std::chrono::milliseconds keepalive_idle{600'000};
  std::string_view name = "server";  // for logs
  // Called on the worker for every rejected request (metrics).
  std::function<void(Worker&, Rejection)> on_reject;
  // HTTP/2 on the same port: a connection that opens with the HTTP/2 preface (prior
  // knowledge, what gRPC clients send) or asks for `Upgrade: h2c` becomes an HTTP/2
  // session (h2_server.h). Null: HTTP/1 only.
  std::shared_ptr<const H2Options> h2;
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

  // Closes the socket if idle, else asks for close after the current response.
  void close_gracefully() override;

  Worker& worker() { return worker_; }
  Stream& stream() { return stream_; }
  const std::string& client_ip() const { return client_ip_; }
  bool closing() const { return closing_; }

 private:
  friend class H1Exchange;
  friend class H1HangupWatch;

  // Reads more bytes from the client into buffer_. Returns 0 and an error on EOF/failure.
  Task<std::pair<error_code, size_t>> read_some(size_t hint = 16 * 1024);
  // Writes `data` to the client.
  Task<error_code> write(std::string_view data);
  Task<bool> read_head();
  // How the connection opens: the HTTP/2 preface seen whole, anything else, or the
  // client gone before it told (EOF or an error: no read may follow, see serve()).
  enum class Opening { Http2, Http1, Gone };
  Task<Opening> read_opening();
  // `Upgrade: h2c` on a request without a body, and this server speaks HTTP/2.
  bool wants_h2c_upgrade() const;
  Task<void> serve_h2(Handler& handler, bool upgraded);
  void on_watchdog();

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
  Gather gather_;
  std::string client_ip_;
  Watchdog watchdog_;
  UpstreamStream* watched_upstream_ = nullptr;  // aborted by the watchdog if set
  bool idle_ = true;
  bool closing_ = false;
};

// One request of an HTTP/1.x connection.
class H1Exchange final : public Exchange {
 public:
  H1Exchange(ClientConnection& conn, core::TimePoint started)
      : Exchange(conn.worker(), started), conn_(conn) {}

  const MessageHead& request() const override { return conn_.head_; }
  Protocol protocol() const override { return Protocol::Http1; }
  std::string_view client_ip() const override { return conn_.client_ip(); }
  bool request_body_done() const override { return conn_.parser_->is_done(); }
  std::optional<uint64_t> request_content_length() const override;
  bool upgrade() const override;
  Task<error_code> read_body(std::string& out) override;
  Task<void> respond(int status, std::string_view body, const ExtraHeaders& extra = {}) override;
  std::unique_ptr<HangupWatch> watch_hangup(std::function<void()> on_hangup) override;
  // HTTP/1 learns of a hang-up only by reading or writing (forward() does both).
  bool client_gone() const override { return false; }

  Task<BodyRead> read_request_body() override;
  const BodyPieces& request_pieces() const override { return conn_.body_; }
  void consume_request_body() override;
  void cancel_request_body() override {
    close_after();
    conn_.stream_.cancel();
  }
  Task<error_code> send_interim(const MessageHead& head) override;
  void start_response(const MessageHead& head,
                      const ResponseShape& shape,
                      const ExtraHeaders& extra) override;
  Task<error_code> send_body(const BodyPieces& pieces, bool last) override;
  Task<error_code> send_trailers(const MessageHead& trailers) override;
  void abort_response() override;
  Task<error_code> tunnel(UpstreamConnection& upstream,
                          std::chrono::milliseconds idle_timeout) override;
  void set_deadline(core::TimePoint deadline) override { conn_.watchdog_.arm(deadline); }
  void clear_deadline() override { conn_.watchdog_.disarm(); }
  bool timed_out() const override { return conn_.watchdog_.fired(); }
  void watch_upstream(UpstreamStream* upstream) override { conn_.watched_upstream_ = upstream; }

 private:
  Task<error_code> send_continue_once();

  ClientConnection& conn_;
  size_t pending_consume_ = 0;  // bytes of the read buffer the current pieces came from
  BodyFraming framing_ = BodyFraming::None;  // of the response being sent
  bool continue_sent_ = false;
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
  // May be called again for another port served the same way (the activator's 8013);
  // port() stays the first one.
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
  std::vector<std::pair<Worker*, std::shared_ptr<tcp::acceptor>>> acceptors_;
  uint16_t port_ = 0;
};

}  // namespace sluice::http
