// sluice-testapp: a fast, scriptable upstream for tests and benchmarks.
//
//   sluice-testapp [--list-fds FILE] [--port 8080 (default $PORT)] [--startup-delay-ms N]
//                  [--threads N]
//                  [--idle-close-ms N] [--exit-after-ms N [--exit-code C]]
//
// Every knob is a query parameter, so one running app serves every test:
//   delay=MS            wait before answering
//   status=CODE         response status (default 200)
//   size=BYTES          body of that many 'x' (default: "hello from sluice-testapp\n")
//   chunks=N&interval=MS   chunked body, N pieces, one every MS
//   sse=N&interval=MS      text/event-stream, N events "data: i", one every MS
//   hints=N             N interim "103 Early Hints" heads before the answer
//   fail=hang|close|reset  never answer | close mid-response | reset the connection
//   fail=refuse[&ms=N]     answer, then refuse new connections (for N ms, else for good)
//   unsolicited=MS[&mark=FILE]  MS after the response, write a second one nobody asked
//                       for (then append a byte to FILE)
// Paths: /echo answers the request head (and body) back; /ws is a WebSocket echo;
// /healthz answers 200; /max-inflight answers the most requests it ever held at once
// (itself not counted). SIGTERM exits at once.
#include <fcntl.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <boost/beast/websocket.hpp>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <thread>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

std::map<std::string, std::string> parse_query(std::string_view target) {
  std::map<std::string, std::string> q;
  auto qm = target.find('?');
  if (qm == std::string_view::npos)
    return q;
  std::string_view rest = target.substr(qm + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view kv = rest.substr(0, amp);
    auto eq = kv.find('=');
    if (eq != std::string_view::npos)
      q[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
    if (amp == std::string_view::npos)
      break;
    rest.remove_prefix(amp + 1);
  }
  return q;
}

long num(const std::map<std::string, std::string>& q, const char* key, long dflt) {
  auto it = q.find(key);
  if (it == q.end())
    return dflt;
  long v = dflt;
  std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  return v;
}

asio::awaitable<void> sleep_ms(long ms) {
  if (ms <= 0)
    co_return;
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(std::chrono::milliseconds(ms));
  co_await t.async_wait(kTuple);
}

asio::awaitable<void> websocket_echo(tcp::socket socket, http::request<http::string_body> req) {
  websocket::stream<tcp::socket> ws(std::move(socket));
  auto [aec] = co_await ws.async_accept(req, kTuple);
  if (aec)
    co_return;
  beast::flat_buffer buf;
  for (;;) {
    auto [ec, n] = co_await ws.async_read(buf, kTuple);
    if (ec)
      co_return;
    ws.text(ws.got_text());
    auto [wec, wn] = co_await ws.async_write(buf.data(), kTuple);
    if (wec)
      co_return;
    buf.consume(buf.size());
  }
}

long g_idle_close_ms = 0;
tcp::acceptor* g_acceptor = nullptr;
tcp::endpoint g_endpoint;

asio::awaitable<void> listen(tcp::acceptor& acceptor);

// fail=refuse&ms=N: stop listening (new connections are refused) for N ms, then listen
// again; without ms, for good. The request that asked is answered first.
void refuse_for(asio::any_io_executor ex, long ms) {
  beast::error_code ignored;
  g_acceptor->close(ignored);
  if (ms <= 0)
    return;
  auto t = std::make_shared<asio::steady_timer>(ex, std::chrono::milliseconds(ms));
  t->async_wait([t, ex](beast::error_code) {
    beast::error_code ec;
    g_acceptor->open(g_endpoint.protocol(), ec);
    g_acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    g_acceptor->bind(g_endpoint, ec);
    g_acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (!ec)
      asio::co_spawn(ex, listen(*g_acceptor), asio::detached);
  });
}

std::atomic<long> g_inflight{0}, g_max_inflight{0};

// Counts a request from its arrival to its answer (for /max-inflight).
struct InFlight {
  InFlight() {
    const long now = ++g_inflight;
    long seen = g_max_inflight.load();
    while (now > seen && !g_max_inflight.compare_exchange_weak(seen, now)) {
    }
  }
  ~InFlight() { --g_inflight; }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;
};

asio::awaitable<void> session(tcp::socket socket) {
  beast::flat_buffer buf;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    parser.header_limit(128 * 1024);
    if (g_idle_close_ms > 0 && buf.size() == 0) {
      // Like many app servers: drop keep-alive connections that stay idle too long.
      auto idle = std::make_shared<asio::steady_timer>(socket.get_executor());
      idle->expires_after(std::chrono::milliseconds(g_idle_close_ms));
      auto readable = std::make_shared<bool>(false);
      socket.async_wait(tcp::socket::wait_read, [readable, idle](beast::error_code e) {
        *readable = !e;
        idle->cancel();
      });
      co_await idle->async_wait(kTuple);
      if (!*readable) {
        beast::error_code ignored;
        socket.close(ignored);
        co_return;
      }
    }
    auto [ec, n] = co_await http::async_read(socket, buf, parser, kTuple);
    if (ec)
      co_return;
    auto req = parser.release();
    auto q = parse_query(req.target());
    std::string_view path = req.target();
    path = path.substr(0, path.find('?'));

    if (websocket::is_upgrade(req)) {
      co_await websocket_echo(std::move(socket), std::move(req));
      co_return;
    }
    std::optional<InFlight> counted;
    if (path != "/max-inflight")
      counted.emplace();
    co_await sleep_ms(num(q, "delay", 0));
    if (const long hints = num(q, "hints", 0); hints > 0 && req.version() >= 11) {
      std::string heads;
      for (long i = 0; i < hints; ++i)
        heads += "HTTP/1.1 103 Early Hints\r\nLink: </hint-" + std::to_string(i) + ".css>\r\n\r\n";
      auto [hec, hn] = co_await asio::async_write(socket, asio::buffer(heads), kTuple);
      if (hec)
        co_return;
    }
    const std::string fail = q.count("fail") ? q["fail"] : "";
    if (fail == "hang") {
      co_await sleep_ms(3600 * 1000);
      co_return;
    }
    if (fail == "refuse") {
      refuse_for(socket.get_executor(), num(q, "ms", 0));
    }
    if (fail == "reset") {
      socket.set_option(asio::socket_base::linger(true, 0));
      socket.close();
      co_return;
    }
    const int status = static_cast<int>(num(q, "status", 200));
    const bool keep = req.keep_alive();

    if (fail == "close") {
      std::string head = "HTTP/1.1 " + std::to_string(status) +
                         " OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\npartial";
      co_await asio::async_write(socket, asio::buffer(head), kTuple);
      beast::error_code ignored;
      socket.shutdown(tcp::socket::shutdown_both, ignored);
      co_return;
    }
    const long chunks = num(q, "chunks", 0);
    const long sse = num(q, "sse", 0);
    if (chunks > 0 || sse > 0) {
      const long interval = num(q, "interval", 100);
      std::string head =
          "HTTP/1.1 " + std::to_string(status) + " OK\r\nTransfer-Encoding: chunked\r\n";
      head += sse > 0 ? "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
                      : "Content-Type: text/plain\r\n\r\n";
      auto [hec, hn] = co_await asio::async_write(socket, asio::buffer(head), kTuple);
      if (hec)
        co_return;
      const long count = sse > 0 ? sse : chunks;
      for (long i = 0; i < count; ++i) {
        if (i > 0)
          co_await sleep_ms(interval);
        std::string piece =
            sse > 0 ? "data: " + std::to_string(i) + "\n\n" : "chunk " + std::to_string(i) + "\n";
        char size_hex[20];
        auto [end, e2] = std::to_chars(size_hex, size_hex + sizeof(size_hex), piece.size(), 16);
        std::string framed = std::string(size_hex, end) + "\r\n" + piece + "\r\n";
        auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(framed), kTuple);
        if (wec)
          co_return;
      }
      co_await asio::async_write(socket, asio::buffer(std::string_view("0\r\n\r\n")), kTuple);
      if (!keep)
        co_return;
      continue;
    }

    http::response<http::string_body> res{static_cast<http::status>(status), req.version()};
    res.set(http::field::server, "sluice-testapp");
    res.set(http::field::content_type, "text/plain");
    if (path == "/max-inflight") {
      res.body() = std::to_string(g_max_inflight.load()) + "\n";
    } else if (path == "/echo") {
      std::string body = std::string(req.method_string()) + " " + std::string(req.target()) + "\n";
      for (const auto& f : req) {
        body += std::string(f.name_string()) + ": " + std::string(f.value()) + "\n";
      }
      body += "\n" + req.body();
      res.body() = std::move(body);
    } else if (status == 204 || status == 304 || (status >= 100 && status < 200)) {
      // No body allowed (Beast refuses to frame one).
    } else if (q.count("size")) {
      res.body().assign(static_cast<size_t>(num(q, "size", 0)), 'x');
    } else {
      res.body() = "hello from sluice-testapp\n";
    }
    res.keep_alive(keep);
    res.prepare_payload();
    auto [wec, wn] = co_await http::async_write(socket, res, kTuple);
    if (wec || !keep) {
      beast::error_code ignored;
      socket.shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
    if (q.count("unsolicited")) {
      // A misbehaving app: a second response nobody asked for, a moment after a complete
      // one, on the kept-alive connection.
      co_await sleep_ms(num(q, "unsolicited", 5));
      const std::string_view stale = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstale\n";
      auto [uec, un] = co_await asio::async_write(socket, asio::buffer(stale), kTuple);
      if (uec)
        co_return;
      std::printf("sluice-testapp: wrote an unsolicited response\n");
      std::fflush(stdout);
      if (q.count("mark")) {  // tell a test, through a file, that the bytes are out
        if (FILE* f = std::fopen(q["mark"].c_str(), "a")) {
          std::fputs("x", f);
          std::fclose(f);
        }
      }
    }
  }
}

asio::awaitable<void> listen(tcp::acceptor& acceptor) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kTuple);
    if (ec)
      co_return;
    socket.set_option(tcp::no_delay(true));
    auto ex = socket.get_executor();
    asio::co_spawn(ex, session(std::move(socket)), asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // --list-fds FILE (first, before this process opens anything): write the descriptors
  // it inherited, one per line, so a test can see what its runtime leaked into it.
  if (argc >= 3 && std::string_view(argv[1]) == "--list-fds") {
    std::string open_fds;
    for (int fd = 0; fd < 4096; ++fd) {
      if (::fcntl(fd, F_GETFD) != -1)
        open_fds += std::to_string(fd) + "\n";
    }
    if (FILE* f = std::fopen(argv[2], "w")) {
      std::fputs(open_fds.c_str(), f);
      std::fclose(f);
    }
    argv += 2;
    argc -= 2;
  }
  // PORT as Knative (and `sluice run`) give it; --port wins.
  int port = std::getenv("PORT") != nullptr ? std::atoi(std::getenv("PORT")) : 8080;
  long startup_delay_ms = 0;
  long exit_after_ms = -1;
  int exit_code = 3;
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "sluice-testapp: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--port") {
      port = std::atoi(next().c_str());
    } else if (a == "--startup-delay-ms") {
      startup_delay_ms = std::atol(next().c_str());
    } else if (a == "--idle-close-ms") {
      g_idle_close_ms = std::atol(next().c_str());
    } else if (a == "--exit-after-ms") {
      exit_after_ms = std::atol(next().c_str());
    } else if (a == "--exit-code") {
      exit_code = std::atoi(next().c_str());
    } else if (a == "--threads") {
      threads = std::max(1, std::atoi(next().c_str()));
    } else {
      std::fprintf(stderr, "sluice-testapp: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (startup_delay_ms > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(startup_delay_ms));
  if (exit_after_ms == 0) {
    std::fprintf(stderr, "sluice-testapp: exiting with %d as told (--exit-after-ms 0)\n",
                 exit_code);
    return exit_code;
  }
  asio::io_context io(threads);
  tcp::acceptor acceptor(io);
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port));
  acceptor.open(ep.protocol());
  acceptor.set_option(asio::socket_base::reuse_address(true));
  beast::error_code ec;
  acceptor.bind(ep, ec);
  if (ec) {
    std::fprintf(stderr, "sluice-testapp: cannot listen on %d: %s\n", port, ec.message().c_str());
    return 1;
  }
  acceptor.listen(asio::socket_base::max_listen_connections);
  g_acceptor = &acceptor;
  g_endpoint = acceptor.local_endpoint();
  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](auto, int) { io.stop(); });
  asio::co_spawn(io, listen(acceptor), asio::detached);
  // A crash on cue, for supervisor tests.
  asio::steady_timer crash(io);
  if (exit_after_ms > 0) {
    crash.expires_after(std::chrono::milliseconds(exit_after_ms));
    crash.async_wait([exit_code](const beast::error_code& e) {
      if (!e) {
        std::fprintf(stderr, "sluice-testapp: crashing with %d as told\n", exit_code);
        std::_Exit(exit_code);
      }
    });
  }
  std::fprintf(stderr, "sluice-testapp listening on 127.0.0.1:%d\n",
               acceptor.local_endpoint().port());
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
  return 0;
}
