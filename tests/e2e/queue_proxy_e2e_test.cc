// End-to-end: the real `sluice queue-proxy` in front of the real sluice-testapp.
#include <gtest/gtest.h>
#include <signal.h>

#include <future>
#include <thread>

#include "harness.h"
#include "stats/stat.pb.h"

namespace e2e {
namespace {

std::string ws_client(int port, int messages, double interval) {
  return run(std::string("/usr/bin/python3 ") + E2E_DIR +
             "/ws_client.py ws://127.0.0.1:" + std::to_string(port) + "/ws " +
             std::to_string(messages) + " " + std::to_string(interval) + " 2>&1")
      .out;
}

TEST(QueueProxyE2E, ProxiesRequestsAndRewritesHeaders) {
  QueueProxyUnderTest t;
  t.start();
  auto r =
      curl(t.port, "/echo?x=1",
           "-H 'K-Original-Host: hello.default.example.com' "
           "-H 'Knative-Serving-Revision: hello-00001' -H 'Knative-Serving-Namespace: default' "
           "-H 'X-Forwarded-For: 9.9.9.9' -H 'run-id: run-42' -d 'payload'");
  ASSERT_EQ(r.status, 200) << r.head;
  EXPECT_NE(r.body.find("POST /echo?x=1"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("Host: hello.default.example.com"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("K-Original-Host"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("Knative-Serving-"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("X-Forwarded-For: 9.9.9.9, 127.0.0.1"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("Forwarded: for=9.9.9.9"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("X-Request-Id: run-42"), std::string::npos) << "run-id wins\n" << r.body;
  EXPECT_NE(r.body.find("\npayload"), std::string::npos) << r.body;

  auto big = curl(t.port, "/?size=3000000");
  EXPECT_EQ(big.status, 200);
  EXPECT_EQ(big.body.size(), 3000000u);
  auto chunked =
      curl(t.port, "/echo", "-H 'Transfer-Encoding: chunked' --data-binary @/etc/os-release");
  EXPECT_EQ(chunked.status, 200);
  EXPECT_NE(chunked.body.find("Debian"), std::string::npos);
  EXPECT_EQ(curl(t.port, "/?status=418").status, 418);
}

TEST(QueueProxyE2E, ProbeAnswers) {
  QueueProxyUnderTest t;
  t.start();
  auto kubelet = curl(t.port, "/healthz", "-A kube-probe/1.30 -H 'K-Network-Probe: queue'");
  EXPECT_EQ(kubelet.status, 200);
  EXPECT_EQ(kubelet.body, "queue");
  EXPECT_EQ(kubelet.header("Sluice-Revision"), "local");
  auto activator = curl(t.port, "/", "-A Knative-Activator-Probe -H 'K-Network-Probe: queue'");
  EXPECT_EQ(activator.status, 200);
  EXPECT_EQ(activator.body, "queue");
  auto no_value = curl(t.port, "/", "-A kube-probe/1.30");
  EXPECT_EQ(no_value.status, 400);
  EXPECT_EQ(no_value.body, "unexpected probe header value: ");
  auto hash = curl(t.port, "/", "-H 'K-Network-Probe: probe' -H 'K-Network-Hash: h123'");
  EXPECT_EQ(hash.status, 200);
  EXPECT_EQ(hash.header("K-Network-Hash"), "h123");
  EXPECT_EQ(curl(t.port, "/", "-H 'K-Network-Probe: probe'").status, 400);
  auto other = curl(t.port, "/", "-H 'K-Network-Probe: activator'");
  EXPECT_EQ(other.status, 400);
  EXPECT_EQ(other.body, "unexpected probe header value: activator");

  // The app goes away: the very next health check probes it afresh and fails (Knative's
  // queue-proxy probes per check), instead of answering a cached 200 until the next tick.
  t.app->signal(SIGKILL);
  ASSERT_TRUE(t.app->wait(5s));
  EXPECT_EQ(curl(t.port, "/", "-A kube-probe/1.30 -H 'K-Network-Probe: queue'").status, 503);
  EXPECT_TRUE(eventually([&] {
    return t.qp->output().find("app is not ready") != std::string::npos;
  })) << t.qp->output();
}

TEST(QueueProxyE2E, NotReadyUntilTheAppListens) {
  QueueProxyUnderTest t;
  t.start({}, /*start_app=*/false, /*expect_ready=*/false);
  EXPECT_EQ(curl(t.port, "/", "-H 'K-Network-Probe: queue'").status, 503);
  Process app({TESTAPP_BIN, "--port", std::to_string(t.user_port)});
  ASSERT_TRUE(wait_for_port(t.user_port));
  int status = 0;
  auto started = std::chrono::steady_clock::now();
  while (status != 200 && std::chrono::steady_clock::now() - started < 5s) {
    status = curl(t.port, "/", "-H 'K-Network-Probe: queue'").status;
  }
  EXPECT_EQ(status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1s) << "aggressive 50 ms polling";
}

TEST(QueueProxyE2E, RefusesPastElevenTimesContainerConcurrency) {
  QueueProxyUnderTest t;
  t.start({"--container-concurrency", "2"});
  // 22 slow requests fill 2 slots and the queue of 20 (served in 11 rounds of 1.2 s).
  std::vector<std::future<std::string>> held;
  for (int i = 0; i < 22; ++i) {
    held.push_back(std::async(std::launch::async, [&t] {
      return raw_exchange(t.port,
                          "GET /?delay=1200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 30s);
    }));
  }
  // Wait until the queue-proxy has all of them (20 waiting).
  bool full = false;
  for (int i = 0; i < 200 && !full; ++i) {
    full = metric_value(t.metrics(), "breaker_pending_requests") == 20;
    if (!full)
      std::this_thread::sleep_for(25ms);
  }
  ASSERT_TRUE(full) << t.metrics();
  auto refused = curl(t.port, "/");
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.body, "pending request queue full");
  EXPECT_EQ(refused.header("Sluice-Error"), "queue_full");
  EXPECT_EQ(refused.header("Sluice-Not-Forwarded"), "true");
  int ok = 0;
  for (auto& f : held) ok += f.get().rfind("HTTP/1.1 200", 0) == 0;
  EXPECT_EQ(ok, 22) << "every admitted request is served (the queue drains in 11 rounds)";
}

TEST(QueueProxyE2E, QueuedRequestWhoseClientHangsUpNeverReachesTheApp) {
  QueueProxyUnderTest t;
  t.start({"--container-concurrency", "1"});
  auto holder = std::async(std::launch::async, [&] { return curl(t.port, "/?delay=1500"); });
  std::this_thread::sleep_for(300ms);
  // Queued behind the holder; the client gives up after 300 ms.
  raw_exchange(t.port, "GET /?from=quitter HTTP/1.1\r\nHost: x\r\n\r\n", 300ms);
  EXPECT_EQ(holder.get().status, 200);
  std::string m;
  EXPECT_TRUE(eventually([&] {
    m = t.metrics();
    return m.find("reason=\"client_gone_while_queued\"} 1") != std::string::npos;
  })) << m;
  EXPECT_EQ(metric_value(m, "revision_app_request_count"), 1) << "only the holder reached the app\n"
                                                              << m;
}

// With --threads > 1 a queued request on another worker than the breaker's did not see
// its client hang up, and reached the app later for nobody.
TEST(QueueProxyE2E, AHangUpIsSeenFromEveryWorker) {
  QueueProxyUnderTest t;
  t.start({"--container-concurrency", "1", "--threads", "4"});
  auto holder = std::async(std::launch::async, [&] { return curl(t.port, "/?delay=1500"); });
  std::this_thread::sleep_for(300ms);
  for (int i = 0; i < 6; ++i)  // connections spread over the workers
    raw_exchange(t.port, "GET /?from=quitter HTTP/1.1\r\nHost: x\r\n\r\n", 100ms);
  EXPECT_EQ(holder.get().status, 200);
  std::string m;
  EXPECT_TRUE(eventually([&] {
    m = t.metrics();
    return m.find("reason=\"client_gone_while_queued\"} 6") != std::string::npos;
  })) << m;
  EXPECT_EQ(metric_value(m, "revision_app_request_count"), 1) << "only the holder reached the app\n"
                                                              << m;
}

TEST(QueueProxyE2E, ExplainsUnreachableApp) {
  QueueProxyUnderTest t;
  t.start({}, /*start_app=*/false, /*expect_ready=*/false);
  auto r = curl(t.port, "/");
  EXPECT_EQ(r.status, 502);
  EXPECT_NE(
      r.body.find("connection refused by 127.0.0.1:" + std::to_string(t.user_port) + " after "),
      std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find(" ms"), std::string::npos) << r.body;
  EXPECT_EQ(r.header("Sluice-Error"), "connect_failed");
  EXPECT_EQ(r.header("Sluice-Not-Forwarded"), "true");
}

TEST(QueueProxyE2E, AppThatStopsListeningGives502ThenRecovers) {
  QueueProxyUnderTest t;
  t.start();
  // New connections to the app are refused for 1.5 s; the pooled one still works, so
  // three concurrent requests need two fresh connections, which fail.
  EXPECT_EQ(curl(t.port, "/?fail=refuse&ms=1500").status, 200);
  std::vector<std::future<HttpResponse>> rs;
  for (int i = 0; i < 3; ++i) {
    rs.push_back(std::async(std::launch::async, [&] { return curl(t.port, "/?delay=300"); }));
  }
  int refused = 0;
  for (auto& f : rs) {
    auto r = f.get();
    if (r.status == 502) {
      ++refused;
      EXPECT_NE(r.body.find("connection refused by"), std::string::npos) << r.body;
    }
  }
  EXPECT_GE(refused, 1);
  std::this_thread::sleep_for(1700ms);
  int status = 0;
  for (int i = 0; i < 40 && status != 200; ++i) {
    status = curl(t.port, "/", "-H 'K-Network-Probe: queue'").status;
    if (status != 200)
      std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(status, 200) << "ready again once the app listens";
  EXPECT_EQ(curl(t.port, "/").status, 200);
}

TEST(QueueProxyE2E, RequestLogRecordsTheRequestId) {
  QueueProxyUnderTest t;
  t.start({}, true, true, {{"SERVING_ENABLE_REQUEST_LOG", "true"}});
  curl(t.port, "/hello?x=1", "-H 'run-id: run-77'");
  curl(t.port, "/", "-H 'X-Request-Id: xr-5'");
  std::string log;
  eventually([&] {  // the log line is written after the answer
    log = t.qp->output();
    return log.find(R"("requestId":"xr-5")") != std::string::npos;
  });
  EXPECT_NE(log.find(R"("requestId":"run-77","method":"GET","path":"/hello?x=1","status":200)"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find(R"("requestId":"xr-5")"), std::string::npos) << log;
}

TEST(QueueProxyE2E, ExplainsAppFailures) {
  QueueProxyUnderTest t;
  t.start();
  auto reset = curl(t.port, "/?fail=reset");
  EXPECT_EQ(reset.status, 502);
  EXPECT_NE(reset.body.find("before it answered"), std::string::npos) << reset.body;
  EXPECT_EQ(reset.header("Sluice-Error"), "upstream_closed");
  EXPECT_EQ(reset.header("Sluice-Not-Forwarded"), "") << "the app saw this one";
  // Closed mid-response: the client must see a truncated response, not a clean one.
  auto truncated =
      run("curl -s -o /dev/null --max-time 10 'http://127.0.0.1:" + std::to_string(t.port) +
          "/?fail=close'; echo $?");
  EXPECT_EQ(truncated.out, "18\n") << "curl: partial file";
  EXPECT_EQ(curl(t.port, "/").status, 200) << "still serving";
}

// The mid-response warning printed the request id from a view into the client's read
// buffer, which reading a large body had reallocated (heap-use-after-free under ASan; heap
// and app bytes in the log of a release build). The id in the log is the client's.
TEST(QueueProxyE2E, MidResponseWarningNamesTheRightRequestId) {
  QueueProxyUnderTest t;
  t.start();
  const std::string body_file = testing::TempDir() + "/qp-big-body";
  run("head -c 3000000 /dev/zero | tr '\\0' 'b' > " + body_file);
  for (int i = 0; i < 3; ++i) {
    run("curl -s -o /dev/null --max-time 10 -H 'X-Request-Id: id-" + std::to_string(i) +
        "-abcdef' --data-binary @" + body_file + " 'http://127.0.0.1:" + std::to_string(t.port) +
        "/?fail=close'");
  }
  EXPECT_TRUE(eventually([&] {
    return t.qp->output().find("request id-2-abcdef: app connection broke") != std::string::npos;
  })) << t.qp->output();
  EXPECT_TRUE(t.qp->running()) << t.qp->output();
  EXPECT_EQ(curl(t.port, "/").status, 200);
}

// A small response is written at once when the socket takes it, and only the rest is
// waited for. A client that pipelines many requests and reads late fills its socket:
// the writes are then partial, and every response must still arrive whole and in order.
TEST(QueueProxyE2E, PipelinedAnswersToAClientThatReadsLateArriveWhole) {
  QueueProxyUnderTest t;
  t.start();
  const std::string script = R"(
import socket, sys, time
port, n, size = int(sys.argv[1]), 1500, 4000
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
s.settimeout(60)
s.sendall(b"".join(b"GET /?size=%d&i=%d HTTP/1.1\r\nHost: h\r\n\r\n" % (size, i) for i in range(n)))
time.sleep(1.0)  # the queue-proxy's writes fill the socket meanwhile
buf, whole = b"", 0
while whole < n:
    head_end = buf.find(b"\r\n\r\n")
    if head_end >= 0:
        head = buf[:head_end].decode()
        length = int([l.split(":")[1] for l in head.split("\r\n") if l.lower().startswith("content-length:")][0])
        if len(buf) >= head_end + 4 + length:
            body = buf[head_end + 4:head_end + 4 + length]
            if not head.startswith("HTTP/1.1 200") or body != b"x" * size:
                print("bad answer", whole, head[:40]); sys.exit(1)
            whole += 1
            buf = buf[head_end + 4 + length:]
            continue
    d = s.recv(65536)
    if not d:
        break
    buf += d
print("whole", whole, "left", len(buf))
)";
  const std::string path = testing::TempDir() + "/qp-pipelined.py";
  FILE* f = std::fopen(path.c_str(), "w");
  std::fputs(script.c_str(), f);
  std::fclose(f);
  auto r = run("timeout 120 /usr/bin/python3 " + path + " " + std::to_string(t.port) + " 2>&1");
  EXPECT_EQ(r.out, "whole 1500 left 0\n") << t.qp->output();
  EXPECT_TRUE(t.qp->running()) << t.qp->output();
}

// An app wrote a second response a few ms after a complete one; the pool reused the
// connection blind (it had idled < 10 ms) and the next client got the stale answer.
TEST(QueueProxyE2E, BytesLeftOnAPooledConnectionNeverReachTheNextClient) {
  QueueProxyUnderTest t;
  t.start();
  // Client A's request makes the app write a stray response right after its real one;
  // client B asks at once on its own connection (within the 10 ms the old pool trusted).
  // B goes as soon as the app says (through a file) that the stray bytes are out, so
  // they are on the idle pooled connection before B's request takes one.
  const std::string script = R"(
import os, socket, sys, time
port, mark = int(sys.argv[1]), sys.argv[2]
stale = 0
for i in range(40):
    a = socket.create_connection(("127.0.0.1", port)); b = socket.create_connection(("127.0.0.1", port))
    a.sendall(("GET /?unsolicited=0&mark=%s HTTP/1.1\r\nHost: h\r\n\r\n" % mark).encode())
    got = b""
    while b"hello from sluice-testapp" not in got:
        got += a.recv(4096)
    deadline = time.time() + 10
    while (not os.path.exists(mark) or os.path.getsize(mark) < i + 1) and time.time() < deadline:
        time.sleep(0.0005)
    b.sendall(b"GET /echo HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    got = b""
    while True:
        d = b.recv(4096)
        if not d: break
        got += d
    if b"stale" in got or b"GET /echo" not in got: stale += 1
    a.close(); b.close()
print("stale", stale)
)";
  const std::string path = testing::TempDir() + "/qp-stale.py";
  FILE* f = std::fopen(path.c_str(), "w");
  std::fputs(script.c_str(), f);
  std::fclose(f);
  const std::string mark = testing::TempDir() + "/qp-stale-mark-" + std::to_string(t.port);
  std::remove(mark.c_str());
  auto r = run("timeout 120 /usr/bin/python3 " + path + " " + std::to_string(t.port) + " " + mark +
               " 2>&1");
  EXPECT_EQ(r.out, "stale 0\n") << t.qp->output();
}

// A head longer than one 4 KiB read (1,000 small headers) was refused as "400 malformed
// request (bad field)": Beast took part of it and the rest was fed again from the start.
TEST(QueueProxyE2E, AHeadSpanningSeveralReadsIsParsedAndOnlyAnOversizedOneIs431) {
  QueueProxyUnderTest t;
  t.start();
  std::string many;
  for (int i = 0; i < 1000; ++i)
    many += "X-H" + std::to_string(i) + ": v" + std::to_string(i) + "\r\n";
  const std::string ok = raw_exchange(
      t.port, "GET /echo HTTP/1.1\r\nHost: h\r\n" + many + "Connection: close\r\n\r\n");
  EXPECT_EQ(ok.rfind("HTTP/1.1 200", 0), 0u) << ok.substr(0, 300);
  EXPECT_NE(ok.find("X-H999: v999"), std::string::npos) << ok.substr(0, 300);
  std::string huge;
  for (int i = 0; i < 8000; ++i) huge += "X-H" + std::to_string(i) + ": v\r\n";
  const std::string big = raw_exchange(t.port, "GET / HTTP/1.1\r\nHost: h\r\n" + huge + "\r\n");
  EXPECT_EQ(big.rfind("HTTP/1.1 431", 0), 0u) << big.substr(0, 300);
  EXPECT_NE(big.find("limit is 65536 bytes"), std::string::npos) << big.substr(0, 300);
}

TEST(QueueProxyE2E, RevisionTimeoutIsTimeToResponseStart) {
  QueueProxyUnderTest t;
  t.start({"--revision-timeout", "1s"});
  auto slow = curl(t.port, "/?delay=3000");
  EXPECT_EQ(slow.status, 504);
  EXPECT_EQ(slow.body, "request timeout");
  // A stream that started in time is not cut by the revision timeout.
  auto stream = curl(t.port, "/?chunks=4&interval=500");
  EXPECT_EQ(stream.status, 200);
  EXPECT_EQ(stream.body, "chunk 0\nchunk 1\nchunk 2\nchunk 3\n");
}

TEST(QueueProxyE2E, ServerSentEventsAreNotBuffered) {
  QueueProxyUnderTest t;
  t.start();
  auto started = std::chrono::steady_clock::now();
  // Read only until the first event arrives; the stream goes on for 3 s.
  std::string got =
      raw_exchange(t.port, "GET /?sse=4&interval=1000 HTTP/1.1\r\nHost: x\r\n\r\n", 700ms);
  auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_NE(got.find("text/event-stream"), std::string::npos) << got;
  EXPECT_NE(got.find("data: 0"), std::string::npos) << "first event arrives at once\n" << got;
  EXPECT_EQ(got.find("data: 1"), std::string::npos) << got;
  EXPECT_LT(elapsed, 1s);
}

TEST(QueueProxyE2E, WebSocketOutlivesTheRevisionTimeout) {
  QueueProxyUnderTest t;
  t.start({"--revision-timeout", "1s", "--container-concurrency", "1"});
  // 6 messages 0.5 s apart: 2.5 s, well past the 1 s revision timeout.
  std::string out = ws_client(t.port, 6, 0.5);
  EXPECT_NE(out.find("ok 6"), std::string::npos) << out;
}

TEST(QueueProxyE2E, WebSocketHoldsOneSlot) {
  QueueProxyUnderTest t;
  t.start({"--container-concurrency", "1"});
  auto ws = std::async(std::launch::async, [&] { return ws_client(t.port, 4, 0.5); });
  std::this_thread::sleep_for(500ms);
  // The only slot is the tunnel's: a plain request waits for it.
  auto started = std::chrono::steady_clock::now();
  auto r = curl(t.port, "/");
  EXPECT_EQ(r.status, 200);
  EXPECT_GT(std::chrono::steady_clock::now() - started, 800ms) << "queued behind the tunnel";
  EXPECT_NE(ws.get().find("ok 4"), std::string::npos);
}

TEST(QueueProxyE2E, DrainFinishesInFlightRequestAndWebSocket) {
  QueueProxyUnderTest t;
  t.start({"--drain-quiet-period", "1s"});
  auto slow = std::async(std::launch::async, [&] { return curl(t.port, "/?delay=2500"); });
  auto ws = std::async(std::launch::async, [&] { return ws_client(t.port, 8, 0.4); });
  std::this_thread::sleep_for(300ms);
  t.qp->signal(SIGTERM);
  std::this_thread::sleep_for(100ms);
  auto probe = curl(t.port, "/", "-A kube-probe/1.30 -H 'K-Network-Probe: queue'");
  EXPECT_EQ(probe.status, 503);
  EXPECT_EQ(probe.body, "shutting down");
  EXPECT_EQ(slow.get().status, 200) << "in-flight request finishes";
  EXPECT_NE(ws.get().find("ok 8"), std::string::npos) << "tunnel drains, not cut";
  auto code = t.qp->wait(10s);
  ASSERT_TRUE(code.has_value()) << t.qp->output();
  EXPECT_EQ(*code, 0);
  EXPECT_FALSE(wait_for_port(t.port, 100ms)) << "no longer accepting";
}

TEST(QueueProxyE2E, SigintDuringASigtermDrainSkipsTheQuietPeriod) {
  QueueProxyUnderTest t;
  t.start({"--drain-quiet-period", "300s"});
  t.qp->signal(SIGTERM);
  ASSERT_TRUE(
      eventually([&] { return t.qp->output().find("SIGTERM: draining") != std::string::npos; }));
  t.qp->signal(SIGINT);
  EXPECT_EQ(t.qp->wait(30s), 0) << t.qp->output();
}

TEST(QueueProxyE2E, WaitForDrainReturnsPromptlyWithoutSigterm) {
  QueueProxyUnderTest t;
  t.start();
  auto started = std::chrono::steady_clock::now();
  auto r = curl(t.admin_port, "/wait-for-drain");
  EXPECT_EQ(r.status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  EXPECT_EQ(curl(t.port, "/", "-H 'K-Network-Probe: queue'").status, 200) << "serving goes on";
}

TEST(QueueProxyE2E, StatsAreKnativeProtobuf) {
  QueueProxyUnderTest t;
  t.start();
  // Requests spread over ~2 s, 1 in 3 marked as coming from an activator; every 1 s cut
  // must see some of each, and the proxied share never exceeds the total.
  double max_total = 0, max_proxied = 0;
  std::string pod;
  double uptime = 0;
  for (int i = 0; i < 20; ++i) {
    curl(t.port, "/", i % 3 == 0 ? "-H 'K-Proxy-Request: activator'" : "");
    std::this_thread::sleep_for(100ms);
    auto resp = curl(t.stats_port, "/metrics");
    ASSERT_EQ(resp.status, 200);
    ASSERT_EQ(resp.header("Content-Type"), "application/protobuf");
    sluice::stats::wire::Stat stat;
    ASSERT_TRUE(stat.ParseFromString(resp.body));
    EXPECT_LE(stat.proxied_request_count(), stat.request_count());
    EXPECT_LE(stat.average_proxied_concurrent_requests(),
              stat.average_concurrent_requests() + 1e-9);
    max_total = std::max(max_total, stat.request_count());
    max_proxied = std::max(max_proxied, stat.proxied_request_count());
    pod = stat.pod_name();
    uptime = stat.process_uptime();
  }
  EXPECT_FALSE(pod.empty());
  EXPECT_GT(uptime, 1.0);
  EXPECT_GE(max_total, 3) << "about 7 requests per 1 s window";
  EXPECT_GE(max_proxied, 1);
  EXPECT_LT(max_total, 12) << "a window counts only its own second";
}

TEST(QueueProxyE2E, PrometheusMetricsUseKnativeNames) {
  QueueProxyUnderTest t;
  t.start({"--container-concurrency", "4"});
  curl(t.port, "/");
  curl(t.port, "/?status=503");
  curl(t.port, "/", "-H 'K-Network-Probe: queue'");  // probes are not counted
  std::string m = t.metrics();
  EXPECT_NE(m.find("revision_request_count{namespace_name=\"default\""), std::string::npos) << m;
  EXPECT_NE(m.find("response_code=\"200\",response_code_class=\"2xx\",route_tag=\"DISABLED\"} 1"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("response_code=\"503\",response_code_class=\"5xx\",route_tag=\"DISABLED\"} 1"),
            std::string::npos)
      << m;
  for (auto name :
       {"revision_request_latencies_bucket", "revision_app_request_count",
        "revision_app_request_latencies_bucket", "revision_queue_depth", "breaker_pending_requests",
        "revision_queue_time_seconds_bucket", "revision_proxy_start_latency_seconds_bucket",
        "revision_queue_time_over_threshold_total", "revision_rejected_requests_total"}) {
    EXPECT_NE(m.find(name), std::string::npos) << name;
  }
}

TEST(QueueProxyE2E, BadInputGetsClearErrorsAndIsCounted) {
  QueueProxyUnderTest t;
  t.start({"--header-timeout", "1s"});
  auto malformed = raw_exchange(t.port, "GET / HTTP/1.1\r\nBad Header Line\r\n\r\n");
  EXPECT_EQ(malformed.rfind("HTTP/1.1 400", 0), 0u) << malformed;
  EXPECT_NE(malformed.find("malformed request"), std::string::npos) << malformed;
  EXPECT_NE(malformed.find("Connection: close"), std::string::npos) << malformed;

  auto huge =
      raw_exchange(t.port, "GET / HTTP/1.1\r\nX-Big: " + std::string(70000, 'a') + "\r\n\r\n");
  EXPECT_EQ(huge.rfind("HTTP/1.1 431", 0), 0u) << huge.substr(0, 200);

  auto smuggle = raw_exchange(t.port,
                              "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: "
                              "4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  EXPECT_EQ(smuggle.rfind("HTTP/1.1 400", 0), 0u) << smuggle;
  EXPECT_NE(smuggle.find("ambiguous message framing"), std::string::npos) << smuggle;

  auto started = std::chrono::steady_clock::now();
  auto trickle = raw_exchange(t.port, "GET / HTTP/1.1\r\nHost: x\r\n", 5s);
  EXPECT_EQ(trickle, "") << "cut without an answer";
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s) << "cut by the 1 s header timeout";

  std::string m = t.metrics();
  for (auto reason : {"malformed\"} 1", "header_too_large\"} 1", "ambiguous_framing\"} 1",
                      "header_timeout\"} 1"}) {
    EXPECT_NE(m.find(reason), std::string::npos) << reason << "\n" << m;
  }
  EXPECT_EQ(curl(t.port, "/").status, 200) << "still serving";
}

TEST(QueueProxyE2E, StaleKeepAliveConnectionIsRetriedTransparently) {
  QueueProxyUnderTest t;
  // An app that closes idle keep-alive connections after 200 ms.
  t.start({}, /*start_app=*/false, /*expect_ready=*/false);
  Process app({TESTAPP_BIN, "--port", std::to_string(t.user_port), "--idle-close-ms", "200"});
  ASSERT_TRUE(wait_for_port(t.user_port));
  for (int i = 0; i < 5; ++i) {
    auto r = curl(t.port, "/");
    EXPECT_EQ(r.status, 200) << "request " << i << ": " << r.body;
    std::this_thread::sleep_for(300ms);  // the pooled connection is closed by the app meanwhile
  }
}

TEST(QueueProxyE2E, MissingEnvironmentIsNamed) {
  auto r = run(std::string("env -i SERVING_NAMESPACE=default SERVING_REVISION=r ") + SLUICE_BIN +
               " queue-proxy 2>&1; echo exit=$?");
  EXPECT_NE(r.out.find("required environment variable SERVING_POD is not set"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("CONTAINER_CONCURRENCY"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("exit=1"), std::string::npos) << r.out;
}

TEST(QueueProxyE2E, HelpAndVersion) {
  auto help = run(std::string(SLUICE_BIN) + " --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("queue-proxy"), std::string::npos);
  auto qp_help = run(std::string(SLUICE_BIN) + " queue-proxy --help");
  for (auto flag : {"--port", "--user-port", "--admin-port", "--stats-port", "--metrics-port",
                    "--container-concurrency", "--revision-timeout", "--readiness-probe",
                    "--drain-quiet-period", "--threads"}) {
    EXPECT_NE(qp_help.out.find(flag), std::string::npos) << flag;
  }
  EXPECT_NE(run(std::string(SLUICE_BIN) + " version").out.find("sluice "), std::string::npos);
  auto typo = run(std::string(SLUICE_BIN) + " queue-prxy 2>&1");
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_NE(typo.out.find("unknown subcommand \"queue-prxy\" (one of: queue-proxy, activator, "
                          "autoscaler, run, simulate, version)"),
            std::string::npos)
      << typo.out;
}

TEST(QueueProxyE2E, ServesWithSeveralWorkerThreads) {
  QueueProxyUnderTest t;
  t.start({"--threads", "2", "--container-concurrency", "2"});
  std::vector<std::future<HttpResponse>> rs;
  for (int i = 0; i < 8; ++i) {
    rs.push_back(std::async(std::launch::async, [&] { return curl(t.port, "/?delay=100"); }));
  }
  for (auto& r : rs) EXPECT_EQ(r.get().status, 200);
}

// HTTP/2 cleartext on the serving port: by the connection preface (prior knowledge, what
// gRPC clients send) and by `Upgrade: h2c`; the app behind speaks HTTP/1.1 and gets each
// request translated, with its body framed by Content-Length when the client gave one.
TEST(QueueProxyE2E, Http2ByPrefaceAndByUpgradeReachesAnHttp1App) {
  QueueProxyUnderTest t;
  t.start();
  auto pk = curl(t.port, "/echo?via=preface", "--http2-prior-knowledge --data-binary 'hello h2'");
  EXPECT_EQ(pk.head.rfind("HTTP/2 200", 0), 0u) << pk.head;
  EXPECT_NE(pk.body.find("POST /echo?via=preface"), std::string::npos) << pk.body;
  EXPECT_NE(pk.body.find("Content-Length: 8"), std::string::npos) << pk.body;
  EXPECT_NE(pk.body.find("\n\nhello h2"), std::string::npos) << pk.body;
  auto up = curl(t.port, "/echo?via=upgrade", "--http2");
  EXPECT_EQ(up.head.rfind("HTTP/2 200", 0), 0u) << up.head;
  EXPECT_NE(up.body.find("GET /echo?via=upgrade"), std::string::npos) << up.body;
  // The upgrade's own fields are this hop's business, not the app's.
  EXPECT_EQ(up.body.find("HTTP2-Settings"), std::string::npos) << up.body;
  EXPECT_EQ(up.body.find("h2c"), std::string::npos) << up.body;
  // A body without a declared length (an HTTP/2 stream) reaches the app chunked, whole.
  auto streamed =
      run("head -c 300000 /dev/zero | curl -s --max-time 30 --http2-prior-knowledge "
          "-H 'Content-Length:' -T - 'http://127.0.0.1:" +
          std::to_string(t.port) + "/echo' | wc -c");
  EXPECT_GT(std::atoi(streamed.out.c_str()), 300000) << streamed.out;
  // HTTP/1 on the same port is unchanged.
  EXPECT_EQ(curl(t.port, "/").head.rfind("HTTP/1.1 200", 0), 0u);
}

// --app-protocol auto in front of an HTTP/1 app: the app answers the HTTP/2 preface as
// HTTP/1 does (400, close), so requests keep reaching it over HTTP/1.1, from either kind
// of client; readiness waited for the answer.
TEST(QueueProxyE2E, AutoDetectionKeepsAnHttp1AppOnHttp1) {
  QueueProxyUnderTest t;
  t.start({"--app-protocol", "auto"});
  EXPECT_NE(t.qp->output().find("speaks HTTP/1.1 (detected"), std::string::npos) << t.qp->output();
  EXPECT_EQ(curl(t.port, "/").head.rfind("HTTP/1.1 200", 0), 0u);
  auto h2 = curl(t.port, "/echo", "--http2-prior-knowledge");
  EXPECT_EQ(h2.head.rfind("HTTP/2 200", 0), 0u) << h2.head;
  EXPECT_NE(h2.body.find("GET /echo\n"), std::string::npos) << h2.body;  // an HTTP/1-only app
}

// The conformance suite against the queue-proxy as an h2c server.
TEST(QueueProxyE2E, H2specConformance) {
  QueueProxyUnderTest t;
  t.start();
  EXPECT_EQ(h2spec_failures(t.port), "");
}

}  // namespace
}  // namespace e2e
