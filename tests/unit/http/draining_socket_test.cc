// DrainingSocket and the upstream pool's idle watch over real loopback sockets: a read
// that emptied the socket must never make a later read miss bytes or a FIN, and a
// watched idle connection must be dropped exactly when something arrived on it.
// Nothing sleeps: each step runs the io_context until the operation under test is done.
#include "http/draining_socket.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "core/time_source.h"
#include "http/worker.h"

namespace sluice::http {
namespace {

// Runs `io` until `done()`; a deadline instead of a hang if the operation never completes.
template <typename Pred>
void run_until(asio::io_context& io, Pred done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done() && std::chrono::steady_clock::now() < deadline)
    io.run_one_for(std::chrono::milliseconds(100));
  io.restart();
  ASSERT_TRUE(done()) << "the operation did not complete in 30 s";
}

struct Pair {
  asio::io_context io{1};
  DrainingSocket ours{tcp::socket(io)};
  tcp::socket peer{io};

  Pair() {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    peer.connect(acceptor.local_endpoint());
    tcp::socket accepted(io);
    acceptor.accept(accepted);
    ours = DrainingSocket(std::move(accepted));
  }

  void send(const std::string& bytes) { asio::write(peer, asio::buffer(bytes)); }

  // Reads once through the draining path and runs the loop until it completes; `meanwhile`
  // runs once the read waits in the reactor, so what it sends arrives as one edge.
  std::pair<error_code, std::string> read(size_t size = 64,
                                          const std::function<void()>& meanwhile = {}) {
    std::string buf(size, '\0');
    std::optional<std::pair<error_code, size_t>> got;
    ours.async_read_some_draining(asio::buffer(buf),
                                  [&](error_code ec, size_t n) { got.emplace(ec, n); });
    if (meanwhile) {
      io.poll();
      io.restart();
      EXPECT_FALSE(got) << "completed before anything was sent";
      meanwhile();
    }
    run_until(io, [&] { return got.has_value(); });
    return {got->first, buf.substr(0, got->second)};
  }

  // The peer sends its last bytes and closes (a FIN, or a reset with `reset`) while a read
  // waits, so both arrive in one epoll wakeup; returns what that read got.
  std::string read_last_bytes(bool reset) {
    return read(64,
                [&] {
                  send("last words");
                  if (reset) {
                    peer.set_option(asio::socket_base::linger(true, 0));
                    peer.close();
                  } else {
                    peer.shutdown(tcp::socket::shutdown_send);
                  }
                })
        .second;
  }
};

TEST(DrainingSocket, AShortReadStillSeesBytesThatArriveLater) {
  Pair p;
  p.send("ab");
  EXPECT_EQ(p.read().second, "ab");  // short: the reactor now waits for an edge
  p.send("cd");                      // arrives before the next read is even started
  EXPECT_EQ(p.read().second, "cd");
  std::string got;
  std::optional<error_code> done;
  std::string buf(64, '\0');
  p.ours.async_read_some_draining(asio::buffer(buf), [&](error_code ec, size_t n) {
    got = buf.substr(0, n);
    done = ec;
  });
  p.io.poll();
  EXPECT_FALSE(done) << "completed with nothing sent";
  p.send("ef");  // arrives while the read waits
  run_until(p.io, [&] { return done.has_value(); });
  EXPECT_EQ(got, "ef");
}

// The marked read after a short one waits for the edge, and the edge comes.
TEST(DrainingSocket, AReadAfterOurWriteWaitsForTheAnswerAndGetsIt) {
  Pair p;
  p.send("request");
  EXPECT_EQ(p.read().second, "request");
  asio::write(p.ours, asio::buffer(std::string("response")));
  p.ours.next_read_may_wait();
  std::optional<std::pair<error_code, size_t>> got;
  std::string buf(64, '\0');
  p.ours.async_read_some_draining(asio::buffer(buf),
                                  [&](error_code ec, size_t n) { got.emplace(ec, n); });
  p.io.poll();
  EXPECT_FALSE(got) << "completed with nothing sent";
  p.send("next");
  run_until(p.io, [&] { return got.has_value(); });
  EXPECT_EQ(buf.substr(0, got->second), "next");
}

// Bytes and a FIN that arrive together raise one edge; the read takes the bytes and the
// kernel counts the FIN as still to read, so the marked read after it sees EOF at once.
TEST(DrainingSocket, AFinThatCameWithTheBytesIsSeenByTheNextMarkedRead) {
  Pair p;
  EXPECT_EQ(p.read_last_bytes(false), "last words");
  p.ours.next_read_may_wait();
  EXPECT_EQ(p.read().first, asio::error::eof);
}

// A reset that came with the bytes: the read after them reports it. (An unmarked read
// tries recv() first, so it cannot depend on whether the reset raised an edge of its own;
// on loopback it often does.)
TEST(DrainingSocket, AResetThatCameWithTheBytesIsSeenByTheNextRead) {
  Pair p;
  EXPECT_EQ(p.read_last_bytes(true), "last words");
  EXPECT_EQ(p.read().first, asio::error::connection_reset);
}

// The same with a marked read: epoll's event mask showed the reset with the bytes, so
// the short read did not report the socket empty.
TEST(DrainingSocket, AResetThatCameWithTheBytesIsSeenByTheNextMarkedRead) {
  Pair p;
  EXPECT_EQ(p.read_last_bytes(true), "last words");
  p.ours.next_read_may_wait();
  EXPECT_EQ(p.read().first, asio::error::connection_reset);
}

// Asio changes the registration itself when a write must wait (it adds EPOLLOUT): the
// peer-close event must survive that, or a FIN that came with bytes would go unseen.
TEST(DrainingSocket, APeerCloseIsStillSeenAfterAWriteHadToWait) {
  Pair p;
  p.send("first");
  EXPECT_EQ(p.read().second, "first");  // the registration is widened here
  const std::string big(8 << 20, 'x');
  std::optional<error_code> written;
  asio::async_write(p.ours, asio::buffer(big), [&](error_code ec, size_t) { written = ec; });
  p.io.poll();
  p.io.restart();
  ASSERT_FALSE(written) << "8 MiB fit in the socket buffers: the write never waited";
  // The peer drains it without blocking, so the write can go on between its reads.
  p.peer.non_blocking(true);
  std::string sink(1 << 16, '\0');
  size_t drained = 0;
  run_until(p.io, [&] {
    error_code ec;
    drained += p.peer.read_some(asio::buffer(sink), ec);
    return drained == big.size() && written.has_value();
  });
  p.peer.non_blocking(false);
  ASSERT_FALSE(*written) << written->message();
  EXPECT_EQ(p.read_last_bytes(false), "last words");
  p.ours.next_read_may_wait();
  EXPECT_EQ(p.read().first, asio::error::eof);
}

TEST(DrainingSocket, AFullReadLeavesTheRestReadable) {
  Pair p;
  p.send("0123456789");
  EXPECT_EQ(p.read(4).second, "0123");
  EXPECT_EQ(p.read(4).second, "4567");
  EXPECT_EQ(p.read(4).second, "89");
}

TEST(DrainingSocket, AFinAfterAShortReadIsSeenAndSeenAgain) {
  Pair p;
  p.send("ab");
  EXPECT_EQ(p.read().second, "ab");
  p.peer.shutdown(tcp::socket::shutdown_send);
  EXPECT_EQ(p.read().first, asio::error::eof);
  // A second read after EOF completes too instead of waiting for an edge that a closed
  // peer never raises.
  EXPECT_EQ(p.read().first, asio::error::eof);
}

TEST(DrainingSocket, CancellingAWaitingReadAbortsIt) {
  Pair p;
  p.send("ab");
  EXPECT_EQ(p.read().second, "ab");
  std::optional<error_code> done;
  std::string buf(8, '\0');
  p.ours.async_read_some_draining(asio::buffer(buf), [&](error_code ec, size_t) { done = ec; });
  p.io.poll();
  ASSERT_FALSE(done);
  p.ours.cancel();
  run_until(p.io, [&] { return done.has_value(); });
  EXPECT_EQ(*done, asio::error::operation_aborted);
}

TEST(DrainingSocket, TheIdleWatchMarksBytesWithoutConsumingThem) {
  Pair p;
  bool seen = false;
  std::optional<error_code> done;
  ASSERT_TRUE(p.ours.watch_idle(&seen, [&](error_code ec, size_t) { done = ec; }));
  p.io.poll();
  EXPECT_FALSE(seen);
  p.send("late");
  run_until(p.io, [&] { return done.has_value(); });
  EXPECT_TRUE(seen);
  EXPECT_FALSE(*done);
  EXPECT_EQ(p.read().second, "late");  // peeked, not read
}

TEST(DrainingSocket, TheIdleWatchMarksAFin) {
  Pair p;
  bool seen = false;
  std::optional<error_code> done;
  ASSERT_TRUE(p.ours.watch_idle(&seen, [&](error_code ec, size_t) { done = ec; }));
  p.peer.close();
  run_until(p.io, [&] { return done.has_value(); });
  EXPECT_TRUE(seen);
}

TEST(DrainingSocket, ACancelledIdleWatchLeavesTheNextReadWhole) {
  Pair p;
  p.send("x");
  EXPECT_EQ(p.read().second, "x");
  bool seen = false;
  std::optional<error_code> done;
  ASSERT_TRUE(p.ours.watch_idle(&seen, [&](error_code ec, size_t) { done = ec; }));
  p.io.poll();
  p.ours.cancel();
  run_until(p.io, [&] { return done.has_value(); });
  EXPECT_EQ(*done, asio::error::operation_aborted);
  EXPECT_FALSE(seen);
  p.send("response");
  EXPECT_EQ(p.read().second, "response");
}

// The pool over real sockets: the watch replaces the peek before reuse.
struct PoolFixture : ::testing::Test {
  core::ManualTimeSource time;
  Worker worker{0, time, 1, 4};
  tcp::acceptor acceptor{worker.io(), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  tcp::socket app{worker.io()};

  UpstreamConnectionPtr pooled_connection() {
    auto conn = std::make_shared<UpstreamConnection>(worker.new_upstream_stream());
    conn->endpoint = acceptor.local_endpoint();
    std::optional<error_code> connected;
    conn->stream.async_connect(conn->endpoint, [&](error_code ec) { connected = ec; });
    acceptor.accept(app);
    run_until(worker.io(), [&] { return connected.has_value(); });
    EXPECT_FALSE(*connected);
    return conn;
  }
  void settle() {
    worker.io().poll();
    worker.io().restart();
  }
};

TEST_F(PoolFixture, AQuietConnectionIsReusedAndAnswersItsNextRequest) {
  auto conn = pooled_connection();
  auto* raw = conn.get();
  worker.pool().give_back(std::move(conn), time.now());
  settle();
  auto again = worker.pool().take(acceptor.local_endpoint());
  ASSERT_EQ(again.get(), raw);
  settle();  // the cancelled watch's completion runs and must not close it
  asio::write(app, asio::buffer(std::string("HTTP/1.1 200 OK\r\n")));
  std::string buf(64, '\0');
  std::optional<size_t> got;
  again->stream.async_read_some(asio::buffer(buf), [&](error_code ec, size_t n) {
    EXPECT_FALSE(ec) << ec.message();
    got = n;
  });
  run_until(worker.io(), [&] { return got.has_value(); });
  EXPECT_EQ(buf.substr(0, *got), "HTTP/1.1 200 OK\r\n");
}

TEST_F(PoolFixture, AConnectionTheAppClosedWhileIdleIsDropped) {
  auto conn = pooled_connection();
  auto* raw = conn.get();
  worker.pool().give_back(std::move(conn), time.now());
  settle();
  app.close();
  run_until(worker.io(), [&] { return raw->idle_event; });  // the FIN's edge
  settle();  // the watch's completion closes our end at once
  EXPECT_EQ(worker.pool().take(acceptor.local_endpoint()), nullptr);
}

TEST_F(PoolFixture, AConnectionTheAppWroteUnaskedOnIsDropped) {
  auto conn = pooled_connection();
  auto* raw = conn.get();
  worker.pool().give_back(std::move(conn), time.now());
  settle();
  asio::write(app, asio::buffer(std::string("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale")));
  run_until(worker.io(), [&] { return raw->idle_event; });
  settle();
  EXPECT_EQ(worker.pool().take(acceptor.local_endpoint()), nullptr);
}

}  // namespace
}  // namespace sluice::http
