// forward() and the server loop in-process, over Beast's test::stream on both sides:
// fail_count fails the Nth operation (and every one after it) of the client's or the
// upstream's stream, read_size/write_size make every read and write one byte. For
// every failure point the client sees one of: the whole response, exactly one clean
// error answer (nothing of the app's response before it), or a truncated response
// followed by a close; and the connection is torn down without a leak.
#include "http/forward.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "http/connection.h"

namespace sluice::http {
namespace {

namespace test = boost::beast::test;
namespace bh = boost::beast::http;

// A Stream over one end of a Beast test stream pair.
class TestStream final : public Stream::Impl {
 public:
  TestStream(asio::io_context& io, test::fail_count* fc)
      : s(fc ? test::stream(io, *fc) : test::stream(io)) {}

  Stream::executor_type executor() override { return s.get_executor(); }
  void read_some(asio::mutable_buffer b, Stream::IoHandler h) override {
    s.async_read_some(b, std::move(h));
  }
  void write_some(const Stream::ConstBuffers& b, Stream::IoHandler h) override {
    s.async_write_some(b, std::move(h));
  }
  void wait_readable(Stream::WaitHandler h) override {
    asio::post(s.get_executor(), [h = std::move(h)]() mutable {
      std::move(h)(asio::error::operation_not_supported);
    });
  }
  void connect(const tcp::endpoint&, Stream::WaitHandler h) override {
    error_code ec;
    if (connect_fail)
      ec = asio::error::connection_refused;
    else if (on_connect)
      on_connect(s);
    asio::post(s.get_executor(), [h = std::move(h), ec]() mutable { std::move(h)(ec); });
  }
  Stream::Peek peek() override { return Stream::Peek::Unknown; }
  std::optional<tcp::endpoint> remote_endpoint() override {
    return tcp::endpoint(asio::ip::make_address("127.0.0.1"), 40000);
  }
  void shutdown_send() override { s.close(); }
  void cancel() override {}
  void close() override { s.close(); }

  test::stream s;
  bool connect_fail = false;
  std::function<void(test::stream&)> on_connect;
};

// The app: reads requests with Beast's parser and answers each with `response`.
Task<void> app(std::shared_ptr<test::stream> s, std::string response, int* requests) {
  boost::beast::flat_buffer buf;
  for (;;) {
    bh::request<bh::string_body> req;
    auto [ec, n] = co_await bh::async_read(*s, buf, req, kUseTuple);
    if (ec)
      co_return;
    ++*requests;
    if (response.empty())
      continue;  // never answers
    auto [wec, wn] = co_await asio::async_write(*s, asio::buffer(response), kUseTuple);
    if (wec)
      co_return;
  }
}

Task<void> serve(std::shared_ptr<ClientConnection> c, Handler& h) {
  co_await c->serve(h);
}

// What a proxy does with forward()'s failures before the response started.
class ProxyHandler final : public Handler {
 public:
  Task<void> handle(Exchange& ex) override {
    // Named, not temporaries: GCC 12 destroys temporaries of a co_await expression twice.
    const ForwardTarget target{tcp::endpoint(), "app:8080"};
    ForwardOptions options;
    if (response_start_timeout)
      options.response_start_deadline = ex.worker().time().now() + *response_start_timeout;
    options.idle_timeout = idle_timeout;
    const ForwardResult r = co_await forward(ex, target, options);
    results.push_back(r);
    if (r.response_started || ex.responded() || r.outcome == ForwardResult::Outcome::ClientGone)
      co_return;
    if (r.outcome == ForwardResult::Outcome::BadRequestBody) {
      const auto answer = bad_request_body_answer(r.error);
      co_await ex.respond(answer.status, answer.body);
      co_return;
    }
    const std::string body = "upstream failed: " + std::string(to_string(r.outcome));
    co_await ex.respond(502, body);
  }
  std::vector<ForwardResult> results;
  std::optional<core::Duration> response_start_timeout;
  std::chrono::milliseconds idle_timeout{0};
};

enum class Side { Client, Upstream, None };

struct Trial {
  std::string client_saw;  // every byte the client received
  std::vector<ForwardResult> results;
  int app_requests = 0;
  bool connection_freed = false;
  int64_t open_connections = 0, active_requests = 0;
};

Trial run_once(const std::string& request,
               const std::string& response,
               Side fail_side,
               size_t fail_at,
               bool one_byte_pieces = false,
               bool refuse_connect = false) {
  Trial out;
  core::ManualTimeSource time;  // never advanced: no deadline passes
  Worker worker(0, time, 1, 8);
  asio::io_context& io = worker.io();
  test::fail_count client_fc(fail_side == Side::Client ? fail_at : SIZE_MAX);
  test::fail_count up_fc(fail_side == Side::Upstream ? fail_at : SIZE_MAX);

  std::vector<std::shared_ptr<test::stream>> app_ends;
  worker.set_upstream_streams([&] {
    auto impl = std::make_unique<TestStream>(io, &up_fc);
    impl->connect_fail = refuse_connect;
    if (one_byte_pieces) {
      impl->s.read_size(1);
      impl->s.write_size(1);
    }
    impl->on_connect = [&](test::stream& mine) {
      auto end = std::make_shared<test::stream>(io);
      mine.connect(*end);
      app_ends.push_back(end);
      asio::co_spawn(io, app(end, response, &out.app_requests), asio::detached);
    };
    return Stream(std::move(impl));
  });

  ServerOptions options;
  auto load = std::make_shared<ServerLoad>();
  ProxyHandler handler;
  test::stream client(io);
  std::weak_ptr<ClientConnection> weak;
  {
    auto impl = std::make_unique<TestStream>(io, &client_fc);
    if (one_byte_pieces) {
      impl->s.read_size(1);
      impl->s.write_size(1);
    }
    client.connect(impl->s);
    auto conn = std::make_shared<ClientConnection>(worker, Stream(std::move(impl)), options, load);
    worker.connections().push_back(*conn);
    weak = conn;
    asio::co_spawn(io, serve(conn, handler), asio::detached);
  }
  asio::write(client, asio::buffer(request));
  io.restart();
  while (io.poll() > 0) {
  }
  out.client_saw = client.str();
  client.close();  // the client leaves: the connection must end
  io.restart();
  while (io.poll() > 0) {
  }
  out.results = handler.results;
  out.connection_freed = weak.expired();
  out.open_connections = load->open_connections.load();
  out.active_requests = load->active_requests.load();
  for (auto& e : app_ends) e->close();
  io.restart();
  while (io.poll() > 0) {
  }
  return out;
}

// Parses `bytes` as responses; returns them in order, and what was left unparsed.
struct Parsed {
  std::vector<bh::response<bh::string_body>> complete;
  bool trailing_partial = false;
};
Parsed parse_responses(const std::string& bytes) {
  Parsed p;
  size_t at = 0;
  while (at < bytes.size()) {
    bh::response_parser<bh::string_body> parser;
    parser.eager(true);
    error_code ec;
    const size_t n = parser.put(asio::buffer(bytes.data() + at, bytes.size() - at), ec);
    if (ec || !parser.is_done()) {
      p.trailing_partial = true;
      break;
    }
    p.complete.push_back(parser.release());
    at += n;
  }
  return p;
}

struct Case {
  const char* name;
  std::string request;
  std::string response;
  std::string body;  // what the client must get on success
};

std::vector<Case> cases() {
  return {
      {"GET, Content-Length response", "GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
       "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello"},
      {"POST with a body, chunked response",
       "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n "
       "world\r\n0\r\n\r\n",
       "hello world"},
      {"chunked POST, Content-Length response",
       "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok"},
  };
}

void check_run(const Case& c, const Trial& r, const std::string& where) {
  SCOPED_TRACE(where);
  EXPECT_TRUE(r.connection_freed) << "the connection outlived its client";
  EXPECT_EQ(r.open_connections, 0);
  EXPECT_EQ(r.active_requests, 0);
  const Parsed p = parse_responses(r.client_saw);
  ASSERT_LE(p.complete.size(), 1u) << "more than one response:\n" << r.client_saw;
  if (p.complete.size() == 1 && !p.trailing_partial) {
    const auto& res = p.complete[0];
    if (res.result_int() == 200) {
      EXPECT_EQ(res.body(), c.body);
      return;
    }
    // A clean local answer: the app's bytes never reached the client before it.
    EXPECT_TRUE(res.result_int() == 502 || res.result_int() == 400) << r.client_saw;
    EXPECT_EQ(r.client_saw.find(c.body), std::string::npos) << r.client_saw;
    ASSERT_FALSE(r.results.empty());
    EXPECT_FALSE(r.results.back().response_started);
    return;
  }
  // Nothing, or a truncated 200 (then the connection was closed: a failure after the
  // response started, or the client's own failure).
  if (r.client_saw.empty())
    return;
  const std::string ok_head = "HTTP/1.1 200";
  const size_t k = std::min(ok_head.size(), r.client_saw.size());
  EXPECT_EQ(r.client_saw.substr(0, k), ok_head.substr(0, k)) << "a partial non-200:\n"
                                                             << r.client_saw;
  ASSERT_FALSE(r.results.empty()) << r.client_saw;
  const auto outcome = r.results.back().outcome;
  EXPECT_TRUE(outcome == ForwardResult::Outcome::BrokenAfterStart ||
              outcome == ForwardResult::Outcome::ClientGone)
      << to_string(outcome) << "\n"
      << r.client_saw;
}

// Whole reads and writes (a few operations each side), then one-byte reads and writes
// (hundreds: failures land mid-head, mid-body, mid-response and between chunks).
TEST(ForwardOverTestStreams, EveryFailurePointEndsInOneCleanOutcome) {
  for (const Case& c : cases()) {
    for (bool pieces : {false, true}) {
      for (Side side : {Side::Client, Side::Upstream}) {
        int successes = 0, failures = 0, in_a_row = 0;
        std::map<std::string, int> seen;  // outcome → failure points that ended in it
        const size_t points = pieces ? 400 : 40;
        for (size_t n = 0; n < points; ++n) {
          const Trial r = run_once(c.request, c.response, side, n, pieces);
          ++seen[r.results.empty() ? "no request"
                                   : std::string(to_string(r.results.back().outcome))];
          check_run(c, r,
                    std::string(c.name) + (pieces ? ", one-byte pieces" : "") +
                        (side == Side::Client ? ", client" : ", upstream") +
                        " stream fails from operation " + std::to_string(n));
          const Parsed p = parse_responses(r.client_saw);
          const bool ok = p.complete.size() == 1 && p.complete[0].result_int() == 200;
          (ok ? successes : failures)++;
          in_a_row = ok ? in_a_row + 1 : 0;
          if (side == Side::Upstream && !r.results.empty() && !r.results.back().request_sent) {
            EXPECT_EQ(r.app_requests, 0) << c.name << ": request_sent=false but the app got it";
          }
          // Past the last operation every trial succeeds: a few in a row end the sweep.
          if (in_a_row >= 8 && failures > 0)
            break;
        }
        std::string summary;
        for (const auto& [k, v] : seen) summary += " " + k + "×" + std::to_string(v);
        std::printf("[ outcomes ] %s%s, %s side:%s\n", c.name, pieces ? " (1-byte pieces)" : "",
                    side == Side::Client ? "client" : "upstream", summary.c_str());
        EXPECT_GT(failures, 0) << c.name << ": no failure point was hit";
        EXPECT_GT(successes, 0) << c.name << ": never succeeded, even past the last operation";
      }
    }
  }
}

TEST(ForwardOverTestStreams, OneBytePiecesOnBothSidesStillRelayTheWholeResponse) {
  for (const Case& c : cases()) {
    const Trial r = run_once(c.request, c.response, Side::None, 0, /*one_byte_pieces=*/true);
    const Parsed p = parse_responses(r.client_saw);
    ASSERT_EQ(p.complete.size(), 1u) << c.name << "\n" << r.client_saw;
    EXPECT_EQ(p.complete[0].result_int(), 200) << c.name;
    EXPECT_EQ(p.complete[0].body(), c.body) << c.name;
    EXPECT_EQ(r.app_requests, 1) << c.name;
    EXPECT_TRUE(r.connection_freed) << c.name;
  }
}

// 103 Early Hints go to the client as they come, then the final answer; an app that
// sends more than kMaxInterimResponses gets its request ended with a 502.
TEST(ForwardOverTestStreams, InterimAnswersAreRelayedUpToTheLimitThenItIsA502) {
  const std::string request = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string hint = "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n";
  const std::string final_answer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
  auto repeat = [](const std::string& s, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += s;
    return out;
  };
  auto statuses = [](const Parsed& p) {
    std::vector<int> out;
    for (const auto& r : p.complete) out.push_back(r.result_int());
    return out;
  };

  const Trial within = run_once(request, repeat(hint, 3) + final_answer, Side::None, 0);
  const Parsed ok = parse_responses(within.client_saw);
  EXPECT_EQ(statuses(ok), (std::vector<int>{103, 103, 103, 200})) << within.client_saw;
  EXPECT_EQ(ok.complete.back().body(), "hello");
  EXPECT_EQ(ok.complete[0][bh::field::link], "</s.css>");

  const Trial storm =
      run_once(request, repeat(hint, kMaxInterimResponses + 1) + final_answer, Side::None, 0);
  const Parsed cut = parse_responses(storm.client_saw);
  std::vector<int> expected(kMaxInterimResponses, 103);
  expected.push_back(502);
  EXPECT_EQ(statuses(cut), expected) << storm.client_saw;
  ASSERT_EQ(storm.results.size(), 1u);
  EXPECT_EQ(storm.results[0].outcome, ForwardResult::Outcome::BadResponse);
  EXPECT_EQ(storm.results[0].error, make_error_code(ParseError::TooManyInterimResponses));
  EXPECT_EQ(storm.client_saw.find("hello"), std::string::npos);
  EXPECT_TRUE(storm.connection_freed);
}

TEST(ForwardOverTestStreams, ARefusedConnectIsA502WithNothingSent) {
  const Case c = cases()[1];
  const Trial r = run_once(c.request, c.response, Side::None, 0, false, /*refuse_connect=*/true);
  const Parsed p = parse_responses(r.client_saw);
  ASSERT_EQ(p.complete.size(), 1u) << r.client_saw;
  EXPECT_EQ(p.complete[0].result_int(), 502);
  EXPECT_NE(p.complete[0].body().find("connect_failed"), std::string::npos) << p.complete[0].body();
  ASSERT_EQ(r.results.size(), 1u);
  EXPECT_FALSE(r.results[0].request_sent);
  EXPECT_EQ(r.app_requests, 0);
  EXPECT_TRUE(r.connection_freed);
}

// The connection's watchdog on a manual clock: header timeout, keep-alive idle,
// response-start deadline and idle timeout, each checked just before and just after it.
struct ManualRig {
  core::ManualTimeSource clock;
  Worker worker{0, clock, 1, 8};
  asio::io_context& io = worker.io();
  ServerOptions options;
  std::shared_ptr<ServerLoad> load = std::make_shared<ServerLoad>();
  ProxyHandler handler;
  test::stream client{io};
  std::weak_ptr<ClientConnection> conn;
  std::vector<std::shared_ptr<test::stream>> app_ends;
  std::vector<Rejection> rejected;
  int app_requests = 0;

  explicit ManualRig(std::string response) {
    options.header_timeout = std::chrono::seconds(60);
    options.keepalive_idle = std::chrono::seconds(600);
    options.on_reject = [this](Worker&, Rejection r) { rejected.push_back(r); };
    worker.set_upstream_streams([this, response] {
      auto impl = std::make_unique<TestStream>(io, nullptr);
      impl->on_connect = [this, response](test::stream& mine) {
        auto end = std::make_shared<test::stream>(io);
        mine.connect(*end);
        app_ends.push_back(end);
        asio::co_spawn(io, app(end, response, &app_requests), asio::detached);
      };
      return Stream(std::move(impl));
    });
    auto impl = std::make_unique<TestStream>(io, nullptr);
    client.connect(impl->s);
    auto c = std::make_shared<ClientConnection>(worker, Stream(std::move(impl)), options, load);
    worker.connections().push_back(*c);
    conn = c;
    asio::co_spawn(io, serve(c, handler), asio::detached);
    settle();
  }
  ~ManualRig() {
    client.close();
    for (auto& e : app_ends) e->close();
    settle();
  }
  void send(const std::string& bytes) {
    asio::write(client, asio::buffer(bytes));
    settle();
  }
  void advance(core::Duration d) {
    clock.advance(d);
    settle();
  }
  // restart(): an io_context that ran out of work stays stopped until told otherwise.
  void settle() {
    io.restart();
    while (io.poll() > 0) {
    }
  }
  bool open() const { return !conn.expired(); }
};

TEST(ConnectionWatchdogOnAManualClock, AnUnfinishedHeadIsCutAtTheHeaderTimeout) {
  ManualRig rig("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  rig.send("GET / HTTP/1.1\r\nHost: a\r\n");  // no blank line: the head never ends
  rig.advance(std::chrono::seconds(59));
  EXPECT_TRUE(rig.open());
  rig.advance(std::chrono::seconds(2));
  EXPECT_FALSE(rig.open()) << "a half-sent head held the connection past header_timeout";
  ASSERT_EQ(rig.rejected.size(), 1u);
  EXPECT_EQ(rig.rejected[0], Rejection::HeaderTimeout);
  EXPECT_EQ(rig.app_requests, 0);
}

TEST(ConnectionWatchdogOnAManualClock, AnIdleKeepAliveConnectionClosesAfterKeepaliveIdle) {
  ManualRig rig("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  rig.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_NE(rig.client.str().find("\r\n\r\nok"), std::string::npos) << rig.client.str();
  rig.advance(std::chrono::seconds(599));
  EXPECT_TRUE(rig.open());
  rig.advance(std::chrono::seconds(2));
  EXPECT_FALSE(rig.open());
  EXPECT_TRUE(rig.rejected.empty()) << "an idle keep-alive close is not a rejection";
}

TEST(ConnectionWatchdogOnAManualClock, NoResponseHeadByTheDeadlineIsTimedOut) {
  ManualRig rig("");  // the app reads the request and never answers
  rig.handler.response_start_timeout = std::chrono::seconds(10);
  rig.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(rig.app_requests, 1);
  rig.advance(std::chrono::seconds(9));
  EXPECT_TRUE(rig.client.str().empty());
  rig.advance(std::chrono::seconds(2));
  ASSERT_EQ(rig.handler.results.size(), 1u);
  EXPECT_EQ(rig.handler.results[0].outcome, ForwardResult::Outcome::TimedOut);
  EXPECT_EQ(rig.client.str().rfind("HTTP/1.1 502", 0), 0u) << rig.client.str();
  EXPECT_NE(rig.client.str().find("timed_out"), std::string::npos) << rig.client.str();
}

TEST(ConnectionWatchdogOnAManualClock, SilenceMidResponseLongerThanIdleTimeoutCutsIt) {
  // A chunked response that stops after its first chunk.
  ManualRig rig("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
  rig.handler.idle_timeout = std::chrono::seconds(5);
  rig.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_NE(rig.client.str().find("hello"), std::string::npos) << rig.client.str();
  rig.advance(std::chrono::seconds(4));
  EXPECT_TRUE(rig.handler.results.empty()) << "still streaming";
  rig.advance(std::chrono::seconds(2));
  ASSERT_EQ(rig.handler.results.size(), 1u);
  EXPECT_EQ(rig.handler.results[0].outcome, ForwardResult::Outcome::BrokenAfterStart);
  EXPECT_FALSE(rig.open()) << "a cut response must close the client connection";
  EXPECT_EQ(rig.client.str().find("0\r\n\r\n"), std::string::npos)
      << "the client must not see a clean end";
}

}  // namespace
}  // namespace sluice::http
