// End-to-end: the real `sluice activator` in front of real queue-proxy replicas.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "harness.h"

namespace e2e {
namespace {

const char* kRevision = "hello-00001";

// The environment Knative's controller gives a queue-proxy of this test's revision,
// serving on `port` in front of the app on `app_port`; `more` adds or overrides.
std::map<std::string, std::string> pod_env(int port,
                                           int app_port,
                                           uint32_t cc,
                                           const std::map<std::string, std::string>& more) {
  std::map<std::string, std::string> env{{"CONTAINER_CONCURRENCY", std::to_string(cc)},
                                         {"QUEUE_SERVING_PORT", std::to_string(port)},
                                         {"QUEUE_SERVING_TLS_PORT", "8112"},
                                         {"USER_PORT", std::to_string(app_port)},
                                         {"REVISION_TIMEOUT_SECONDS", "60"},
                                         {"SERVING_LOGGING_CONFIG", "{}"},
                                         {"SERVING_LOGGING_LEVEL", "info"},
                                         {"SERVING_NAMESPACE", "default"},
                                         {"SERVING_CONFIGURATION", "hello"},
                                         {"SERVING_REVISION", kRevision},
                                         {"SERVING_POD", "pod-" + std::to_string(port)},
                                         {"SERVING_POD_IP", "127.0.0.1"}};
  for (const auto& [k, v] : more) env[k] = v;
  return env;
}

// One replica: the test app and a queue-proxy configured as Knative would (full pod
// environment, so its probe answers name the revision).
struct Replica {
  int port = free_port();
  int app_port = free_port();
  int metrics_port = free_port();
  std::optional<Process> app, qp;

  std::string push_to;  // SLUICE_ACTIVATORS for the queue-proxy

  void start(uint32_t cc, bool wait = true) {
    app.emplace(std::vector<std::string>{TESTAPP_BIN, "--port", std::to_string(app_port)});
    // No readiness probe is configured, so the queue-proxy reports ready at once (as
    // Knative's does): the app must already be listening.
    ASSERT_TRUE(wait_for_port(app_port)) << app->output();
    qp.emplace(std::vector<std::string>{SLUICE_BIN, "queue-proxy", "--admin-port",
                                        std::to_string(free_port()), "--stats-port",
                                        std::to_string(free_port()), "--metrics-port",
                                        std::to_string(metrics_port)},
               pod_env(port, app_port, cc, {{"SLUICE_ACTIVATORS", push_to}}));
    if (wait) {
      ASSERT_TRUE(wait_for_port(port)) << qp->output();
    }
  }
  void kill() {
    if (qp)
      qp->signal(SIGKILL);
    if (app)
      app->signal(SIGKILL);
    if (qp)
      qp->wait(5s);
    if (app)
      app->wait(5s);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

struct ActivatorUnderTest {
  int port = free_port();
  int metrics_port = free_port();
  std::string file = ::testing::TempDir() + "endpoints-" + std::to_string(port) + ".json";
  std::optional<Process> proc;

  // Write-then-rename, as a config agent would.
  void write(const std::string& json) {
    std::string tmp = file + ".tmp";
    std::ofstream(tmp) << json;
    std::filesystem::rename(tmp, file);
  }
  static std::string revision_json(const std::vector<std::string>& endpoints,
                                   int cc,
                                   int timeout = 30,
                                   const std::string& lb_policy = "") {
    std::string eps;
    for (const auto& e : endpoints) eps += (eps.empty() ? "\"" : ",\"") + e + "\"";
    const std::string lb =
        lb_policy.empty() ? "" : "\"loadBalancingPolicy\": \"" + lb_policy + "\", ";
    return "{\"revisions\": [{\"namespace\": \"default\", \"service\": \"hello\", \"name\": \"" +
           std::string(kRevision) + "\", \"containerConcurrency\": " + std::to_string(cc) +
           ", \"timeoutSeconds\": " + std::to_string(timeout) + ", " + lb + "\"endpoints\": [" +
           eps + "]}]}";
  }
  void start(const std::string& json, std::vector<std::string> flags = {}) {
    write(json);
    std::vector<std::string> argv = {SLUICE_BIN,         "activator",
                                     "--port",           std::to_string(port),
                                     "--metrics-port",   std::to_string(metrics_port),
                                     "--endpoints-file", file,
                                     "--threads",        "2"};
    if (std::find(flags.begin(), flags.end(), "--drain-timeout") == flags.end())
      flags.insert(flags.end(), {"--drain-timeout", "200ms"});
    argv.insert(argv.end(), flags.begin(), flags.end());
    proc.emplace(argv);
    ASSERT_TRUE(wait_for_port(port)) << proc->output();
  }
  HttpResponse get(const std::string& path, const std::string& extra = "") {
    return curl(port, path, "-H 'Host: hello.default.example.com' " + extra);
  }
  std::string metrics() { return curl(metrics_port, "/metrics").body; }
  ~ActivatorUnderTest() { std::remove(file.c_str()); }
};

TEST(ActivatorE2E, ColdStartHoldsTheRequestUntilAReplicaIsReady) {
  Replica r;
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({r.address()}, 2));
  auto pending = std::async(std::launch::async, [&] { return a.get("/echo"); });
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(pending.wait_for(0s), std::future_status::timeout) << "no replica yet: waits";
  r.start(2);
  auto resp = pending.get();
  EXPECT_EQ(resp.status, 200) << resp.body;
  EXPECT_NE(resp.body.find("K-Proxy-Request: activator"), std::string::npos) << resp.body;
  EXPECT_NE(resp.body.find("Host: hello.default.example.com"), std::string::npos)
      << "queue-proxy restored the original host\n"
      << resp.body;
}

TEST(ActivatorE2E, ReadyPushReleasesBufferedRequestsWithoutWaitingForAProbe) {
  Replica r;
  ActivatorUnderTest a;
  // Probing every 20 s: only the queue-proxy's push can release the request in time.
  a.start(ActivatorUnderTest::revision_json({r.address()}, 2), {"--probe-interval", "20s"});
  r.push_to = "127.0.0.1:" + std::to_string(a.port);
  auto pending = std::async(std::launch::async, [&] { return a.get("/"); });
  std::this_thread::sleep_for(300ms);
  const auto started = std::chrono::steady_clock::now();
  r.start(2);
  auto resp = pending.get();
  EXPECT_EQ(resp.status, 200) << resp.body << a.proc->output() << r.qp->output() << r.app->output();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_NE(a.proc->output().find(r.address() + ": pending -> healthy"), std::string::npos)
      << a.proc->output();
}

TEST(ActivatorE2E, DrainingPushStopsTrafficToThePod) {
  Replica r1, r2;
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({r1.address(), r2.address()}, 2));
  r1.push_to = r2.push_to = "127.0.0.1:" + std::to_string(a.port);
  r1.start(2);
  r2.start(2);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(a.get("/").status, 200);
  r1.qp->signal(SIGTERM);  // pushes "draining" at once, then waits out its quiet period
  EXPECT_TRUE(eventually([&] {
    return a.proc->output().find(r1.address() + ": healthy -> removed") != std::string::npos;
  })) << a.proc->output();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.get("/").status, 200);
}

TEST(ActivatorE2E, PodStatePushMustComeFromThePod) {
  // A non-loopback pod address, so the activator (which probes its endpoints) and the
  // client run in a network namespace of their own with only a loopback interface:
  // nothing sent to 10.9.9.9 can leave the machine.
  ActivatorUnderTest a;
  a.write(ActivatorUnderTest::revision_json({"10.9.9.9:8012"}, 2));
  Process isolated({"/usr/bin/unshare", "-n", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\"",
                    SLUICE_BIN, "activator", "--port", std::to_string(a.port), "--metrics-port",
                    std::to_string(a.metrics_port), "--endpoints-file", a.file});
  const std::string ns = "/proc/" + std::to_string(isolated.pid()) + "/ns/net";
  const std::string in_ns = "nsenter --net=" + ns + " ";
  const std::string url = "http://127.0.0.1:" + std::to_string(a.port);
  ASSERT_TRUE(eventually([&] {
    return run(in_ns + "curl -s -m 2 -H 'K-Network-Probe: activator' " + url + "/").out ==
           "activator";
  })) << isolated.output();
  ASSERT_NE(std::filesystem::read_symlink(ns), std::filesystem::read_symlink("/proc/self/ns/net"))
      << "the activator must not share the machine's network namespace";
  const auto refused =
      run(in_ns + "curl -s -o /dev/null -w '%{http_code}' -m 10 -X POST " + url +
          "/.sluice/pod-state -H 'Sluice-Namespace: default' -H 'Sluice-Revision: hello-00001' "
          "-H 'Sluice-Pod: 10.9.9.9:8012' -H 'Sluice-Pod-State: draining'");
  EXPECT_EQ(refused.out, "403") << isolated.output();
  // On one machine every loopback address is the pod's own: a replica on 127.0.0.1
  // pushing to an activator on ::1 (sluice run --address ::1) arrives from ::1.
  Replica rep;
  rep.start(2);
  ActivatorUnderTest v6;
  v6.start(ActivatorUnderTest::revision_json({rep.address()}, 2));
  const auto pushed =
      run("curl -s -o /dev/null -w '%{http_code}' -m 10 -g -X POST "
          "'http://[::1]:" +
          std::to_string(v6.port) +
          "/.sluice/pod-state' -H 'Sluice-Namespace: default' "
          "-H 'Sluice-Revision: hello-00001' -H 'Sluice-Pod: " +
          rep.address() + "' -H 'Sluice-Pod-State: ready'");
  if (pushed.out == "000")
    GTEST_SKIP() << "no IPv6 loopback on this machine";
  EXPECT_NE(pushed.out, "403") << "a loopback pod's push from ::1 was refused";
  EXPECT_EQ(pushed.out.substr(0, 1), "2") << pushed.out;
}

TEST(ActivatorE2E, ProbesAndUnknownRevisions) {
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({}, 1));
  auto probe = curl(a.port, "/", "-H 'K-Network-Probe: activator'");
  EXPECT_EQ(probe.status, 200);
  EXPECT_EQ(probe.body, "activator");
  EXPECT_EQ(curl(a.port, "/", "-A kube-probe/1.30").status, 200);
  auto unknown = curl(a.port, "/", "-H 'Host: nope.default.example.com'");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_NE(unknown.body.find("default/nope"), std::string::npos) << unknown.body;
}

TEST(ActivatorE2E, FullQueueAnswers503WithRetryAfterAndDeadline504) {
  Replica r;
  r.start(1);
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({r.address()}, 1, /*timeout=*/2),
          {"--queue-depth", "1"});
  ASSERT_EQ(a.get("/").status, 200);
  auto holder = std::async(std::launch::async, [&] { return a.get("/?delay=1500"); });
  std::this_thread::sleep_for(200ms);
  auto queued = std::async(std::launch::async, [&] { return a.get("/?delay=1500"); });
  ASSERT_TRUE(eventually([&] {
    return metric_value(a.metrics(), "breaker_pending_requests") == 1;
  })) << a.metrics();
  auto full = a.get("/");
  EXPECT_EQ(full.status, 503) << full.body;
  EXPECT_EQ(full.header("Retry-After"), "1");
  EXPECT_EQ(holder.get().status, 200);
  auto late = queued.get();
  EXPECT_EQ(late.status, 504) << "1.5 s in the queue + 1.5 s of work > 2 s timeout: " << late.body;
  EXPECT_NE(late.body.find("no response within the revision timeout ("), std::string::npos)
      << late.body;
}

// A request buffered at cold start whose client gave up (curl -m 1) stayed queued until
// the revision timeout, counted as concurrency, and reached the app once it was ready.
TEST(ActivatorE2E, ABufferedRequestWhoseClientHangsUpLeavesAtOnceAndIsNeverSent) {
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({}, 1, /*timeout=*/60));
  for (int i = 0; i < 4; ++i) {  // on both workers
    raw_exchange(a.port, "GET /echo?from=quitter HTTP/1.1\r\nHost: hello.default\r\n\r\n", 300ms);
  }
  std::string m;
  EXPECT_TRUE(eventually([&] {
    m = a.metrics();
    return metric_value(m, "breaker_pending_requests") == 0;
  })) << "the quitters left the queue\n"
      << m;
  Replica r;
  r.push_to = "127.0.0.1:" + std::to_string(a.port);
  r.start(1);
  a.write(ActivatorUnderTest::revision_json({r.address()}, 1, 60));
  EXPECT_TRUE(eventually([&] { return a.get("/").status == 200; }));
  const std::string qm = curl(r.metrics_port, "/metrics").body;
  EXPECT_LE(metric_value(qm, "revision_app_request_count"), 1) << "no quitter reached the app\n"
                                                               << qm;
}

TEST(ActivatorE2E, KillingAReplicaUnderLoadCostsNoErrors) {
  Replica r1, r2;
  r1.start(4);
  r2.start(4);
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({r1.address(), r2.address()}, 4));
  for (int i = 0; i < 20; ++i) ASSERT_EQ(a.get("/").status, 200);
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> clients;
  const auto until = std::chrono::steady_clock::now() + 2500ms;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&] {
      while (std::chrono::steady_clock::now() < until) {
        auto resp = a.get("/?delay=20");
        (resp.status == 200 ? ok : failed)++;
      }
    });
  }
  std::this_thread::sleep_for(800ms);
  r1.kill();  // app and queue-proxy, kill -9
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed.load(), 0) << ok.load() << " ok";
  EXPECT_GT(ok.load(), 40);
  EXPECT_NE(a.proc->output().find(r1.address() + ": healthy -> quarantined"), std::string::npos)
      << a.proc->output();
  // ... and visible in the metrics.
  const std::string m = a.metrics();
  EXPECT_GE(metric_value(m, "activator_pod_quarantine_entries_total"), 1) << m;
  EXPECT_EQ(metric_value(m, "activator_pods_quarantined"), 1) << m;
  EXPECT_EQ(metric_value(m, "activator_healthy_targets"), 1) << m;
  EXPECT_NE(m.find("activator_transport_failures_total{"), std::string::npos) << m;
  EXPECT_NE(m.find("activator_request_concurrency{"), std::string::npos) << m;
  EXPECT_NE(
      m.find("revision_name=\"hello-00001\",pod_name=\"activator\",container_name=\"activator\","
             "response_code=\"200\",response_code_class=\"2xx\"}"),
      std::string::npos)
      << m;
  EXPECT_EQ(m.find("response_code=\"5"), std::string::npos) << "no 5xx reached a client\n" << m;
}

// The app behind one queue-proxy dies while its queue-proxy lives on: the queue-proxy
// answers 502 marked "never reached the app", and the activator tries the other replica.
// With no other replica left the client's 502 says what the queue-proxy said.
TEST(ActivatorE2E, AQueueProxyWhoseAppIsGoneIsRetriedElsewhereAndNamedWhenAlone) {
  Replica r1, r2;
  r1.start(2);
  r2.start(2);
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({r1.address(), r2.address()}, 2, 2));
  for (int i = 0; i < 4; ++i) ASSERT_EQ(a.get("/").status, 200);
  r1.app->signal(SIGKILL);
  r1.app->wait(5s);
  for (int i = 0; i < 6; ++i) {
    auto resp = a.get("/");
    EXPECT_EQ(resp.status, 200) << resp.body << a.proc->output();
  }
  r2.app->signal(SIGKILL);
  r2.app->wait(5s);
  auto alone = a.get("/");
  EXPECT_EQ(alone.status, 502) << alone.body;
  EXPECT_NE(alone.body.find("queue-proxy answered 502 (connect_failed) before the app saw the "
                            "request, after "),
            std::string::npos)
      << alone.body;
}

// A POST the queue-proxy marked Sluice-Not-Forwarded reached the client as 502: only
// body-less requests were retried. A small body is now read first and sent again.
TEST(ActivatorE2E, APostTheAppNeverSawIsRetriedOnTheOtherPod) {
  Replica r1, r2;
  r1.start(1);
  r2.start(1);
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({r1.address(), r2.address()}, 1, 30, "round-robin"));
  for (int i = 0; i < 4; ++i) ASSERT_EQ(a.get("/").status, 200);
  r1.app->signal(SIGKILL);
  r1.app->wait(5s);
  for (int i = 0; i < 4; ++i) {
    auto resp = a.get("/echo", "-d payload-" + std::to_string(i));
    EXPECT_EQ(resp.status, 200) << resp.body << a.proc->output();
    EXPECT_NE(resp.body.find("\npayload-" + std::to_string(i)), std::string::npos) << resp.body;
  }
  // With Expect: 100-continue the activator asks for the body itself.
  const std::string body(20000, 'e');
  auto expect = a.get("/echo", "-H 'Expect: 100-continue' --data-binary " + body);
  EXPECT_EQ(expect.status, 200) << expect.body;
  EXPECT_NE(expect.body.find("\n" + body), std::string::npos);
}

// Differential framing: the classics of request smuggling, each followed by a pipelined
// "GET /smuggled". Sent to the queue-proxy directly and through activator → queue-proxy;
// the app (testapp's /echo, which answers what it parsed) must never see /smuggled, a
// refused request is a 400 that closes the connection, and an accepted one reaches the
// app with exactly the body the client framed.
TEST(ActivatorE2E, AmbiguousFramingNeverSmugglesARequestToTheApp) {
  Replica r;
  r.start(0);
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({r.address()}, 0));
  ASSERT_EQ(a.get("/").status, 200);
  // testapp echoes it, so the answers show whether the app parsed it as a request.
  const std::string smuggled =
      "GET /echo?smuggled HTTP/1.1\r\nHost: hello.default\r\nConnection: close\r\n\r\n";
  struct Case {
    const char* name;
    std::string head_and_body;
    std::string accepted_body;  // empty: must be refused with 400
  };
  const std::string post = "POST /echo HTTP/1.1\r\nHost: hello.default\r\n";
  const std::vector<Case> cases = {
      {"CL.TE", post + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ""},
      {"TE.CL", post + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", ""},
      {"TE twice in one field", post + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", ""},
      {"TE twice",
       post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ""},
      {"TE obfuscated", post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", ""},
      {"TE with space before colon", post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", ""},
      {"TE gzip, chunked", post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", ""},
      {"TE on HTTP/1.0",
       "POST /echo HTTP/1.0\r\nHost: hello.default\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       ""},
      {"differing Content-Lengths", post + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
       ""},
      {"signed Content-Length", post + "Content-Length: +3\r\n\r\nabc", ""},
      {"chunk-size overflow",
       post + "Transfer-Encoding: chunked\r\n\r\n10000000000000003\r\nabc\r\n0\r\n\r\n", ""},
      {"bare LF chunks", post + "Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n", ""},
      {"obs-fold", post + "Content-Length: 3\r\nX-A: a\r\n b\r\n\r\nabc", ""},
      {"NUL in a value",
       post + "Content-Length: 3\r\nX-A: a" + std::string(1, '\0') + "b\r\n\r\nabc", ""},
      {"CR in a value", post + "Content-Length: 3\r\nX-A: a\rb\r\n\r\nabc", ""},
      {"chunked, tab before the value",
       post + "Transfer-Encoding:\tchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "abc"},
      {"Content-Length", post + "Content-Length: 3\r\n\r\nabc", "abc"},
      {"Expect: 100-continue", post + "Content-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
       "abc"},
  };
  for (const auto& c : cases) {
    for (const int port : {r.port, a.port}) {
      const std::string where = port == r.port ? " (queue-proxy)" : " (activator)";
      const std::string got = raw_exchange(port, c.head_and_body + smuggled, 3s);
      if (c.accepted_body.empty()) {
        // Refused: the bytes after it are never read as a request.
        EXPECT_EQ(got.find("GET /echo?smuggled"), std::string::npos) << c.name << where << "\n"
                                                                     << got;
        EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << c.name << where << "\n" << got;
        EXPECT_EQ(got.find("HTTP/1.1", 1), std::string::npos)
            << c.name << where << ": one answer, then close\n"
            << got;
      } else {
        // Accepted: its body as framed, then the next request as a request of its own.
        const auto body_at = got.find("\n\n" + c.accepted_body + "HTTP/1.1 ");
        EXPECT_NE(body_at, std::string::npos) << c.name << where << "\n" << got;
        EXPECT_NE(got.find("GET /echo?smuggled", body_at), std::string::npos)
            << c.name << where << "\n"
            << got;
      }
    }
  }
  // Absolute-form: its authority routes, and the app sees origin-form.
  const std::string abs = raw_exchange(a.port,
                                       "GET http://hello.default/echo?x=1 HTTP/1.1\r\nHost: "
                                       "other.nowhere\r\nConnection: close\r\n\r\n");
  EXPECT_NE(abs.find("GET /echo?x=1\n"), std::string::npos) << abs;
  // Pipelining: both answered, in order.
  const std::string two = raw_exchange(
      a.port,
      "GET /echo?n=1 HTTP/1.1\r\nHost: hello.default\r\n\r\nGET /echo?n=2 HTTP/1.1\r\nHost: "
      "hello.default\r\nConnection: close\r\n\r\n");
  EXPECT_LT(two.find("GET /echo?n=1"), two.find("GET /echo?n=2")) << two;
}

TEST(ActivatorE2E, BadInputGetsClearErrorsAndTheActivatorKeepsServing) {
  Replica r;
  r.start(2);
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({r.address()}, 2));
  auto garbage = raw_exchange(a.port, "GARBAGE\r\n\r\n");
  EXPECT_EQ(garbage.rfind("HTTP/1.1 400", 0), 0u) << garbage;
  EXPECT_NE(garbage.find("malformed request"), std::string::npos) << garbage;
  auto huge = raw_exchange(a.port, "GET / HTTP/1.1\r\nHost: hello.default.example.com\r\nX-Big: " +
                                       std::string(70000, 'a') + "\r\n\r\n");
  EXPECT_EQ(huge.rfind("HTTP/1.1 431", 0), 0u) << huge.substr(0, 200);
  // Two hops could route one request two ways.
  auto two_hosts = raw_exchange(a.port,
                                "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Host: hello.default.example.com\r\n\r\n");
  EXPECT_EQ(two_hosts.rfind("HTTP/1.1 400", 0), 0u) << two_hosts;
  EXPECT_NE(two_hosts.find("more than one Host header"), std::string::npos) << two_hosts;
  // Routed and forwarded, then the chunked body turns out broken.
  auto bad_body = raw_exchange(a.port,
                               "POST /echo HTTP/1.1\r\nHost: hello.default.example.com\r\n"
                               "Transfer-Encoding: chunked\r\n\r\nZZ\r\n");
  EXPECT_EQ(bad_body.rfind("HTTP/1.1 400", 0), 0u) << bad_body;
  EXPECT_NE(bad_body.find("Sluice-Error: malformed_body"), std::string::npos) << bad_body;
  EXPECT_NE(bad_body.find("malformed body (bad chunk)"), std::string::npos) << bad_body;
  EXPECT_EQ(a.get("/").status, 200) << "still serving";
}

// Responses without a body (204, 304, HEAD) end at their head on both hops, and the
// client's keep-alive connection carries on: one connection for the whole sequence.
TEST(ActivatorE2E, BodylessResponsesKeepTheConnectionInStep) {
  Replica r;
  r.start(2);
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({r.address()}, 2));
  // One curl, one connection; --next starts each request's own options.
  std::string command = "curl -s --max-time 10";
  for (const char* request : {"'/?status=204'", "'/'", "'/?status=304'", "-I '/?size=10'", "'/'"}) {
    std::string req = request;
    const auto quote = req.find('\'');
    req.insert(quote + 1, "http://127.0.0.1:" + std::to_string(a.port));
    command +=
        " -H 'Host: hello.default.example.com' -o /dev/null"
        " -w '%{http_code} %{num_connects} %{size_download}\\n' " +
        req + " --next";
  }
  command.resize(command.size() - std::string(" --next").size());
  const std::string out = run(command).out;
  EXPECT_EQ(out, "204 1 0\n200 0 26\n304 0 0\n200 0 0\n200 0 26\n") << command << "\n" << out;
}

bool ipv6_loopback_available() {
  return run("python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind((\"::1\", 0))'")
             .exit_code == 0;
}

// IPv6 and dual-stack clusters: pods listed by IPv6 address are probed and served over
// IPv6, and the activator and queue-proxy answer IPv6 clients as well as IPv4 ones.
TEST(ActivatorE2E, IPv6PodsAndClientsAreServed) {
  if (!ipv6_loopback_available())
    GTEST_SKIP() << "no IPv6 loopback on this machine";
  Replica r;
  r.start(2);
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({"[::1]:" + std::to_string(r.port)}, 2));
  const std::string url = "http://[::1]:" + std::to_string(a.port) + "/echo";
  const auto out =
      run("curl -s -g --max-time 10 -H 'Host: hello.default.example.com' '" + url + "'");
  EXPECT_NE(out.out.find("GET /echo"), std::string::npos) << out.out << a.proc->output();
  EXPECT_NE(out.out.find("X-Forwarded-For: ::1"), std::string::npos) << out.out;
  EXPECT_NE(a.proc->output().find("[::1]:" + std::to_string(r.port) + ": pending -> healthy"),
            std::string::npos)
      << a.proc->output();
  // An IPv4 client of the same dual-stack socket is still an IPv4 address to the app.
  const auto v4 = a.get("/echo");
  EXPECT_EQ(v4.status, 200);
  EXPECT_NE(v4.body.find("X-Forwarded-For: 127.0.0.1"), std::string::npos) << v4.body;
}

TEST(ActivatorE2E, AReplicaRestartedOnTheSameAddressComesBackThroughPending) {
  ActivatorUnderTest a;
  Replica r1, r2;
  r1.push_to = r2.push_to = "127.0.0.1:" + std::to_string(a.port);
  r1.start(2);
  r2.start(2);
  a.start(ActivatorUnderTest::revision_json({r1.address(), r2.address()}, 2, 30, "round-robin"));
  for (int i = 0; i < 10; ++i) ASSERT_EQ(a.get("/").status, 200);
  r1.kill();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.get("/").status, 200) << "retried on r2";
  const std::string quarantined = r1.address() + ": healthy -> quarantined";
  ASSERT_TRUE(eventually([&] { return a.proc->output().find(quarantined) != std::string::npos; }))
      << a.proc->output();
  // Same ports, new processes. However long the restart takes (its quarantine backoff
  // may expire and probe the dead address meanwhile), the new process is a new pod.
  r1.start(2);
  const std::string back = " -> pending (a new queue-proxy process";
  ASSERT_TRUE(eventually([&] {
    const std::string out = a.proc->output();
    const auto at = out.find(r1.address() + ": ", out.find(quarantined));
    const auto moved = out.find(back, at);
    return at != std::string::npos && moved != std::string::npos &&
           out.find(r1.address() + ": pending -> healthy", moved) != std::string::npos;
  })) << a.proc->output();
  EXPECT_EQ(a.proc->output().find(r1.address() + ": recovering -> healthy"), std::string::npos)
      << "a restarted replica is a new pod, not the old one on probation\n"
      << a.proc->output();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.get("/").status, 200);
  const std::string m = curl(r1.metrics_port, "/metrics").body;
  EXPECT_GE(metric_value(m, "revision_app_request_count"), 4) << "round robin reaches r1 again\n"
                                                              << m;
  EXPECT_EQ(metric_value(a.metrics(), "activator_pods_quarantined"), 0);
}

TEST(ActivatorE2E, EndpointsFileReloadsAndKeepsTheLastGoodState) {
  Replica r;
  r.start(2);
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({}, 2, /*timeout=*/1));
  const auto none = a.get("/");
  EXPECT_EQ(none.status, 504) << "no endpoints: waits until the 1 s timeout";
  EXPECT_NE(none.body.find("revision hello-00001: no replica took the request within "),
            std::string::npos)
      << none.body;
  EXPECT_NE(none.body.find("(pods: no replicas)"), std::string::npos) << none.body;
  a.write(ActivatorUnderTest::revision_json({r.address()}, 2));
  EXPECT_TRUE(eventually([&] { return a.get("/").status == 200; }));
  a.write("{\"revisions\": [{\"namespace\": \"default\", \"nmae\": \"typo\"}]}");
  EXPECT_TRUE(eventually([&] {
    return a.metrics().find("activator_endpoints_reload_failures_total 1") != std::string::npos;
  })) << a.metrics();
  EXPECT_EQ(a.get("/").status, 200) << "a bad file keeps the last good state";
  EXPECT_NE(a.proc->output().find("unknown key \"nmae\""), std::string::npos) << a.proc->output();
}

TEST(ActivatorE2E, WebSocketThroughActivatorAndQueueProxy) {
  Replica r;
  r.start(2);
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({r.address()}, 2));
  ASSERT_EQ(a.get("/").status, 200);
  // Routed by Knative's revision headers (the client sets Host to the address).
  auto out = run(std::string("/usr/bin/python3 ") + E2E_DIR + "/ws_client.py ws://127.0.0.1:" +
                 std::to_string(a.port) + "/ws 4 0.2 " + "Knative-Serving-Revision:" + kRevision +
                 ",Knative-Serving-Namespace:default 2>&1")
                 .out;
  EXPECT_NE(out.find("ok 4"), std::string::npos) << out;
}

TEST(ActivatorE2E, TwoActivatorsNeverPutTwoRequestsOnASingleSlotReplica) {
  std::vector<std::unique_ptr<Replica>> replicas;
  std::vector<std::string> addresses;
  for (int i = 0; i < 4; ++i) {
    auto r = std::make_unique<Replica>();
    r->start(1);
    addresses.push_back(r->address());
    replicas.push_back(std::move(r));
  }
  ActivatorUnderTest a1, a2;
  const std::string acts = "\"127.0.0.1:" + std::to_string(a1.port) +
                           "\", \"127.0.0.1:" + std::to_string(a2.port) + "\"";
  std::string json = ActivatorUnderTest::revision_json(addresses, 1);
  json = "{\"activators\": [" + acts + "], " + json.substr(1);
  a1.start(json, {"--id", "127.0.0.1:" + std::to_string(a1.port)});
  a2.start(json, {"--id", "127.0.0.1:" + std::to_string(a2.port)});
  // Warm up until both activators see their pods healthy.
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(a1.get("/").status, 200);
    ASSERT_EQ(a2.get("/").status, 200);
  }
  // 12 slow requests at once, half through each activator: each may use only its own two
  // pods, one request each, so no queue-proxy ever queues one.
  std::vector<std::future<HttpResponse>> rs;
  for (int i = 0; i < 12; ++i) {
    ActivatorUnderTest& a = i % 2 == 0 ? a1 : a2;
    rs.push_back(std::async(std::launch::async, [&a] { return a.get("/?delay=300"); }));
  }
  for (auto& r : rs) EXPECT_EQ(r.get().status, 200);
  for (auto& r : replicas) {
    // A second concurrent request on a CC=1 replica would have waited in its breaker.
    const std::string m = curl(r->metrics_port, "/metrics").body;
    EXPECT_LT(metric_value(m, "revision_queue_time_seconds_sum"), 0.05) << r->address() << "\n"
                                                                        << m;
    EXPECT_GE(metric_value(m, "revision_queue_time_seconds_count"), 1) << "every replica used";
  }
  EXPECT_EQ(metric_value(a1.metrics(), "activator_revision_capacity"), 2);
  EXPECT_EQ(metric_value(a2.metrics(), "activator_revision_capacity"), 2);
}

TEST(ActivatorE2E, BadEndpointsFileAtStartIsRefused) {
  ActivatorUnderTest a;
  a.write("{\"revisions\": 7}");
  auto r = run(std::string(SLUICE_BIN) + " activator --port " + std::to_string(a.port) +
               " --metrics-port " + std::to_string(a.metrics_port) + " --endpoints-file " + a.file +
               " 2>&1; echo exit=$?");
  EXPECT_NE(r.out.find("revisions: missing or not a list"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("exit=1"), std::string::npos) << r.out;
}

// HTTP/2 on the main port and on Knative's h2c port (8013 in a cluster), each serving
// HTTP/1 as well; through the activator and a queue-proxy to an HTTP/1 app.
TEST(ActivatorE2E, Http2OnTheMainPortAndOnTheH2cPort) {
  Replica r;
  r.start(4);
  ActivatorUnderTest a;
  const int h2c = free_port();
  a.start(ActivatorUnderTest::revision_json({r.address()}, 4), {"--h2c-port", std::to_string(h2c)});
  ASSERT_TRUE(wait_for_port(h2c)) << a.proc->output();
  const std::string host = "-H 'Host: hello.default.example.com' ";
  for (int port : {a.port, h2c}) {
    SCOPED_TRACE("port " + std::to_string(port));
    auto pk = curl(port, "/echo", host + "--http2-prior-knowledge --data-binary 'over h2'");
    EXPECT_EQ(pk.head.rfind("HTTP/2 200", 0), 0u) << pk.head << pk.body;
    EXPECT_NE(pk.body.find("K-Proxy-Request: activator"), std::string::npos) << pk.body;
    EXPECT_NE(pk.body.find("\n\nover h2"), std::string::npos) << pk.body;
    auto up = curl(port, "/echo", host + "--http2");
    EXPECT_EQ(up.head.rfind("HTTP/2 200", 0), 0u) << up.head;
    auto h1 = curl(port, "/echo", host);
    EXPECT_EQ(h1.head.rfind("HTTP/1.1 200", 0), 0u) << h1.head;
    // Sluice's own answers reach an HTTP/2 client with the same status, body and headers.
    auto miss = curl(port, "/", "-H 'Host: nope.default.example.com' --http2-prior-knowledge");
    EXPECT_EQ(miss.head.rfind("HTTP/2 404", 0), 0u) << miss.head;
    EXPECT_NE(miss.body.find("revision not found"), std::string::npos) << miss.body;
  }
}

// A streamed response over HTTP/2 arrives event by event, not at the end.
TEST(ActivatorE2E, Http2StreamsAResponseAsItIsWritten) {
  Replica r;
  r.start(4);
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({r.address()}, 4));
  // Each line stamped with the time it arrived (ms).
  auto out =
      run("curl -sN --max-time 30 --http2-prior-knowledge -H 'Host: hello.default.example.com' "
          "'http://127.0.0.1:" +
          std::to_string(a.port) +
          "/?sse=3&interval=400' | while IFS= read -r l; do [ -n \"$l\" ] && echo "
          "\"$(($(date +%s%N)/1000000)) $l\"; done");
  std::istringstream lines(out.out);
  std::vector<long long> at;
  for (std::string line; std::getline(lines, line);) at.push_back(std::atoll(line.c_str()));
  ASSERT_EQ(at.size(), 3u) << out.out;
  // Written 400 ms apart: buffered until the end, they would arrive together.
  EXPECT_GE(at[2] - at[0], 600) << out.out;
}

// 1,000 streams on one connection, 100 at a time, to a revision of containerConcurrency
// 10: each stream is a request (one breaker slot each, queued beyond that, none lost),
// and the app never holds more than 10.
TEST(ActivatorE2E, AThousandStreamsOnOneConnectionAreQueuedNotLost) {
  Replica r;
  r.start(10);
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({r.address()}, 10));
  auto out =
      run("timeout 120 h2load -n 1000 -c 1 -m 100 -H 'Host: hello.default.example.com' "
          "'http://127.0.0.1:" +
          std::to_string(a.port) + "/?delay=5' 2>&1");
  EXPECT_NE(out.out.find("1000 succeeded, 0 failed, 0 errored"), std::string::npos) << out.out;
  EXPECT_NE(out.out.find("status codes: 1000 2xx"), std::string::npos) << out.out;
  auto most = curl(r.app_port, "/max-inflight");
  EXPECT_LE(std::atoi(most.body.c_str()), 10) << most.body;
  EXPECT_GE(std::atoi(most.body.c_str()), 2) << "the streams ran concurrently\n" << most.body;
}

// A real gRPC client (Debian's python3-grpcio) gets Sluice's own answers as gRPC statuses
// whose message names the cause, not an HTTP error it cannot read.
TEST(ActivatorE2E, GrpcClientsGetSluicesErrorsAsGrpcStatuses) {
  auto call = [](int port, const std::string& extra) {
    return run("timeout 60 /usr/bin/python3 " + std::string(E2E_DIR) +
               "/grpc_client.py 127.0.0.1:" + std::to_string(port) +
               " hello.default.example.com /echo.Echo/Say " + extra + " 2>&1")
        .out;
  };
  {
    // No replica ever becomes ready: UNAVAILABLE (safe to retry), naming the wait.
    ActivatorUnderTest a;
    a.start(ActivatorUnderTest::revision_json({}, 1, /*timeout=*/1));
    const std::string out = call(a.port, "");
    EXPECT_EQ(out.rfind("error UNAVAILABLE revision " + std::string(kRevision) +
                            ": no replica took the request within",
                        0),
              0u)
        << out;
  }
  {
    // The client's deadline passes while its call waits for a replica: the request leaves
    // the queue then, not at the revision timeout, whether Sluice's own clock (grpc-timeout:
    // a 504 it answers) or grpcio's reset (a 499) ends it first.
    ActivatorUnderTest a;
    a.start(ActivatorUnderTest::revision_json({}, 1, /*timeout=*/60));
    const std::string out = call(a.port, "--deadline 0.5");
    EXPECT_EQ(out.rfind("error DEADLINE_EXCEEDED", 0), 0u) << out;
    EXPECT_TRUE(eventually(
        [&] {
          const std::string m = a.metrics();
          return (m.find("response_code=\"499\"") != std::string::npos ||
                  m.find("response_code=\"504\"") != std::string::npos) &&
                 metric_value(m, "activator_request_concurrency") == 0;
        },
        20s))
        << a.metrics() << a.proc->output();
  }
  {
    // A replica whose app speaks HTTP/1: gRPC cannot cross that hop; said so at once.
    Replica r;
    r.start(2);
    ActivatorUnderTest a;
    a.start(ActivatorUnderTest::revision_json({r.address()}, 2));
    const std::string out = call(a.port, "");
    EXPECT_NE(out.find("error UNIMPLEMENTED"), std::string::npos) << out;
    EXPECT_NE(out.find("gRPC needs HTTP/2 on every hop"), std::string::npos) << out;
  }
}

// A replica of an h2c revision: the gRPC test app behind a queue-proxy that reaches it
// over HTTP/2 (SLUICE_APP_PROTOCOL=h2c, what a port named h2c means; `env` may say
// otherwise).
struct GrpcReplica {
  int port = free_port();
  int app_port = free_port();
  std::optional<Process> app, qp;
  // `app_script` (in tests/e2e) is the app: the gRPC one, or h2_sink.py that never answers.
  void start(std::map<std::string, std::string> env = {{"SLUICE_APP_PROTOCOL", "h2c"}},
             const std::string& app_script = "grpc_app.py") {
    app.emplace(std::vector<std::string>{
        "/usr/bin/python3", std::string(E2E_DIR) + "/" + app_script, std::to_string(app_port)});
    ASSERT_TRUE(wait_for_port(app_port, 30s)) << app->output();
    qp.emplace(std::vector<std::string>{SLUICE_BIN, "queue-proxy", "--admin-port",
                                        std::to_string(free_port()), "--stats-port",
                                        std::to_string(free_port()), "--metrics-port",
                                        std::to_string(free_port())},
               pod_env(port, app_port, 10, env));
    ASSERT_TRUE(wait_for_port(port)) << qp->output();
  }
  void kill() {
    qp->signal(SIGKILL);
    app->signal(SIGKILL);
    qp->wait(5s);
    app->wait(5s);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

// gRPC through the activator to queue-proxies of an h2c revision ("protocol": "h2c"),
// HTTP/2 on every hop; one replica killed under load: no call that had not reached its
// app fails (they are retried on the other replica), and calls keep succeeding after.
TEST(ActivatorE2E, GrpcToAnH2cRevisionSurvivesAReplicaKilledUnderLoad) {
  GrpcReplica r1, r2;
  r1.start();
  r2.start();
  ActivatorUnderTest a;
  a.start("{\"revisions\": [{\"namespace\": \"default\", \"service\": \"hello\", \"name\": \"" +
          std::string(kRevision) +
          "\", \"containerConcurrency\": 10, \"protocol\": \"h2c\", \"endpoints\": [\"" +
          r1.address() + "\", \"" + r2.address() + "\"]}]}");
  auto call = [&](const std::string& extra) {
    return run("timeout 120 /usr/bin/python3 " + std::string(E2E_DIR) +
               "/grpc_client.py 127.0.0.1:" + std::to_string(a.port) +
               " hello.default.example.com /echo.Echo/Say " + extra + " 2>&1")
        .out;
  };
  ASSERT_EQ(call("--payload hi"), "ok hi\ntrailer x-echo-len=2\n") << a.proc->output();
  // Calls of 50 ms each, 8 at a time; r1 dies while they run.
  auto load = std::async(std::launch::async, [&] {
    return call("--mode load --count 400 --concurrency 8 --metadata x-sleep=0.05");
  });
  std::this_thread::sleep_for(1s);
  r1.kill();
  const std::string out = load.get();
  // What may fail: calls the dead app had already taken (at most the 8 in flight).
  int failed = 0;
  std::istringstream lines(out);
  for (std::string code; lines >> code;) {
    if (code == "first") {
      std::string rest;
      std::getline(lines, rest);
      continue;
    }
    int n = 0;
    lines >> n;
    if (code != "OK")
      failed += n;
  }
  EXPECT_NE(out.find("OK "), std::string::npos) << out;
  EXPECT_LE(failed, 8) << out << a.proc->output();
  EXPECT_EQ(call("--payload after"), "ok after\ntrailer x-echo-len=5\n") << a.proc->output();
}

// 1,000 gRPC calls at once on one channel (one HTTP/2 connection) to an h2c revision of
// containerConcurrency 10: each stream is a request, queued in the activator beyond the
// 10 slots, none lost, and the app never runs more than 10. (250 are on the wire at a
// time, the activator's SETTINGS_MAX_CONCURRENT_STREAMS; grpcio holds the rest.)
TEST(ActivatorE2E, AThousandGrpcCallsOnOneConnectionAreQueuedNotLost) {
  GrpcReplica r;
  r.start();
  ActivatorUnderTest a;
  a.start("{\"revisions\": [{\"namespace\": \"default\", \"service\": \"hello\", \"name\": \"" +
          std::string(kRevision) +
          "\", \"containerConcurrency\": 10, \"protocol\": \"h2c\", \"endpoints\": [\"" +
          r.address() + "\"]}]}");
  auto call = [&](const std::string& extra) {
    return run("timeout 300 /usr/bin/python3 " + std::string(E2E_DIR) +
               "/grpc_client.py 127.0.0.1:" + std::to_string(a.port) +
               " hello.default.example.com /echo.Echo/Say " + extra + " 2>&1")
        .out;
  };
  const std::string out =
      call("--mode load --count 1000 --concurrency 1000 --deadline 240 --metadata x-sleep=0.02");
  EXPECT_EQ(out, "OK 1000\n") << a.proc->output();
  const std::string most = call("--metadata x-max-inflight=1");
  ASSERT_EQ(most.rfind("ok ", 0), 0u) << most;
  EXPECT_LE(std::atoi(most.c_str() + 3), 10) << most;
  EXPECT_GE(std::atoi(most.c_str() + 3), 2) << "the calls ran concurrently\n" << most;
}

// grpc-timeout bounds a call like the revision timeout does, at each hop: a call that
// waits for a slot past it, or whose app has not answered by it, gets DEADLINE_EXCEEDED
// from Sluice naming where it was, the app's stream is reset, and the app is told only
// what is left of the deadline after the queue. curl sends the gRPC request so nothing
// on the client side enforces the deadline: what ends the call is Sluice.
TEST(ActivatorE2E, AGrpcCallsDeadlineBoundsItAtEveryHopAndTheAppSeesWhatIsLeft) {
  GrpcReplica r, sink;
  r.start();
  // An app that never answers (and enforces no deadline of its own, as grpcio does):
  // what ends its calls is Sluice.
  sink.start({{"SLUICE_APP_PROTOCOL", "h2c"}, {"SERVING_REVISION", "silent-00001"}}, "h2_sink.py");
  // A pod whose queue-proxy says the call's deadline passed before the activator's own
  // copy of it does (both hops hold the same deadline, so on a loaded machine either
  // can expire first). Two of them, so a failure blamed on one could quarantine it (the
  // ejection cap spares a revision's only pod).
  std::vector<std::string> expiring_pods;
  std::vector<std::unique_ptr<Process>> expiring;
  for (int i = 0; i < 2; ++i) {
    const int port = free_port();
    expiring.push_back(std::make_unique<Process>(
        std::vector<std::string>{"/usr/bin/python3", std::string(E2E_DIR) + "/h2_sink.py",
                                 std::to_string(port), "--as-expiring-queue-proxy"}));
    ASSERT_TRUE(wait_for_port(port, 30s)) << expiring.back()->output();
    expiring_pods.push_back("127.0.0.1:" + std::to_string(port));
  }
  ActivatorUnderTest a;
  a.start("{\"revisions\": [{\"namespace\": \"default\", \"service\": \"hello\", \"name\": \"" +
          std::string(kRevision) +
          "\", \"containerConcurrency\": 1, \"protocol\": \"h2c\", \"endpoints\": [\"" +
          r.address() +
          "\"]}, {\"namespace\": \"default\", \"service\": \"silent\", \"name\": "
          "\"silent-00001\", \"containerConcurrency\": 1, \"protocol\": \"h2c\", "
          "\"endpoints\": [\"" +
          sink.address() +
          "\"]}, {\"namespace\": \"default\", \"service\": \"expiring\", \"name\": "
          "\"expiring-00001\", \"containerConcurrency\": 1, \"protocol\": \"h2c\", "
          "\"endpoints\": [\"" +
          expiring_pods[0] + "\", \"" + expiring_pods[1] + "\"]}]}");
  // One gRPC message "ping" (a 5-byte frame header, then the bytes); Trailers-Only
  // answers carry grpc-status and grpc-message in the head curl prints.
  const std::string body = ::testing::TempDir() + "/grpc-ping.bin";
  ASSERT_EQ(run("printf '\\000\\000\\000\\000\\004ping' > " + body).exit_code, 0);
  auto raw_call = [&](int port, const std::string& host, const std::string& timeout,
                      const std::string& sleep) {
    return run("timeout 60 curl -s --http2-prior-knowledge -D - -o /dev/null "
               "-H 'Host: " +
               host +
               "' -H 'content-type: application/grpc' "
               "-H 'te: trailers' -H 'grpc-timeout: " +
               timeout + "' -H 'x-sleep: " + sleep + "' --data-binary @" + body +
               " http://127.0.0.1:" + std::to_string(port) + "/echo.Echo/Say 2>&1")
        .out;
  };
  {
    // The app has not answered by the deadline: the activator says so, and resets the
    // app's stream; the app was given what was left, not the 500 ms the client sent.
    const std::string out = raw_call(a.port, "silent.default.example.com", "500m", "0");
    EXPECT_NE(out.find("grpc-status: 4"), std::string::npos) << out;
    EXPECT_NE(out.find("grpc-message: revision silent-00001: the call's deadline (grpc-timeout "
                       "0.500 s) passed before pod " +
                       sink.address() + " answered"),
              std::string::npos)
        << out << a.proc->output();
    EXPECT_TRUE(eventually(
        [&] { return sink.app->output().find("reset /echo.Echo/Say") != std::string::npos; }, 20s))
        << sink.app->output();
    const std::string seen = sink.app->output();
    const auto at = seen.find("grpc-timeout=");
    ASSERT_NE(at, std::string::npos) << seen;
    EXPECT_NE(seen.substr(at, 17), "grpc-timeout=500m") << seen;
    EXPECT_EQ(seen[seen.find_first_not_of("0123456789", at + 13)], 'u') << seen;
  }
  {
    // Whichever hop's copy of the deadline passes first, the client hears the activator's
    // answer, naming the revision and the pod; the pod is not blamed for it.
    ASSERT_TRUE(eventually(
        [&] {
          const std::string log = a.proc->output();
          return log.find(expiring_pods[0] + ": pending -> healthy") != std::string::npos &&
                 log.find(expiring_pods[1] + ": pending -> healthy") != std::string::npos;
        },
        20s))
        << a.proc->output();
    const std::string out = raw_call(a.port, "expiring.default.example.com", "30S", "0");
    EXPECT_NE(out.find("grpc-status: 4"), std::string::npos) << out;
    EXPECT_NE(out.find("grpc-message: revision expiring-00001: the call's deadline (grpc-timeout "
                       "30.000 s) passed before pod 127.0.0.1:"),
              std::string::npos)
        << out << a.proc->output();
    EXPECT_EQ(out.find("at the queue-proxy"), std::string::npos) << out;
    EXPECT_EQ(a.proc->output().find("healthy -> quarantined"), std::string::npos)
        << a.proc->output();
  }
  {
    // No time at all ("0m"), and a deadline past what a clock holds: the first is
    // answered at once without bothering a pod, the second is as good as none.
    std::string out = raw_call(a.port, "hello.default.example.com", "0m", "0");
    EXPECT_NE(out.find("the call's deadline (grpc-timeout 0.000 s) passed before the request "
                       "reached a replica"),
              std::string::npos)
        << out;
    out = raw_call(a.port, "hello.default.example.com", "99999999H", "0");
    EXPECT_NE(out.find("grpc-status: 0"), std::string::npos) << out;
  }
  {
    // The same at the queue-proxy alone, whose hop to the app is the last.
    const std::string out = raw_call(sink.port, "silent.default.example.com", "300m", "0");
    EXPECT_NE(out.find("grpc-status: 4"), std::string::npos) << out;
    EXPECT_NE(out.find("grpc-message: the call's deadline (grpc-timeout 0.300 s) passed before "
                       "127.0.0.1:" +
                       std::to_string(sink.app_port) + " answered"),
              std::string::npos)
        << out << sink.qp->output();
  }
  {
    // The only slot is taken (containerConcurrency 1): a call queued past its deadline
    // leaves the queue then, with DEADLINE_EXCEEDED saying it never reached a replica.
    auto busy = std::async(std::launch::async, [&] {
      return raw_call(a.port, "hello.default.example.com", "30S", "4");
    });
    ASSERT_TRUE(eventually(
        [&] {
          std::istringstream lines(a.metrics());
          for (std::string line; std::getline(lines, line);) {
            if (line.rfind("activator_request_concurrency{", 0) == 0 &&
                line.find("revision_name=\"" + std::string(kRevision) + "\"") != std::string::npos)
              return std::atof(line.c_str() + line.rfind(' ') + 1) >= 1;
          }
          return false;
        },
        20s))
        << a.metrics();
    const std::string out = raw_call(a.port, "hello.default.example.com", "300m", "0");
    EXPECT_NE(out.find("grpc-status: 4"), std::string::npos) << out;
    EXPECT_NE(out.find("the call's deadline (grpc-timeout 0.300 s) passed while no replica took "
                       "the request"),
              std::string::npos)
        << out;
    EXPECT_NE(busy.get().find("grpc-status: 0"), std::string::npos);
  }
  {
    // Two calls of 1.5 s with 10 s deadlines, one slot: the second waits for the first,
    // and its app is told what is left (at most 10 - 1.5 s), not the 10 s it was sent with.
    auto out = run("timeout 60 /usr/bin/python3 " + std::string(E2E_DIR) +
                   "/grpc_client.py 127.0.0.1:" + std::to_string(a.port) +
                   " hello.default.example.com /echo.Echo/Say --mode load --count 2 "
                   "--concurrency 2 --deadline 10 --metadata x-sleep=1.5 x-show-left=1 "
                   "--show-trailer x-time-left-ms 2>&1")
                   .out;
    std::vector<int> left;
    for (size_t at = 0; (at = out.find("x-time-left-ms=", at)) != std::string::npos; ++at)
      left.push_back(std::atoi(out.c_str() + at + 15));
    ASSERT_EQ(left.size(), 2u) << out;
    std::sort(left.begin(), left.end());
    // (grpcio rounds the 10 s it sends up to a coarser unit: 10.1 s, say.)
    EXPECT_LE(left[1], 10'500) << out;
    EXPECT_GT(left[0], 0) << out;
    EXPECT_LE(left[0], left[1] - 1'000)
        << "the second call's 1.5 s in the queue counts against its deadline\n"
        << out;
  }
}

// The conformance suite against the activator as an h2c server, its requests routed to
// a revision (answered by the app, so each request body is read to its end).
// ENABLE_HTTP2_AUTO_DETECTION (Knative's autodetect-http2 feature) with no protocol
// named: the queue-proxy asks the app once it is ready and reaches a gRPC app over h2c
// (Knative only probes with it), so gRPC works end to end through the activator.
TEST(ActivatorE2E, AQueueProxyDetectsAnH2cAppWhenAskedTo) {
  GrpcReplica r;
  r.start({{"ENABLE_HTTP2_AUTO_DETECTION", "true"}});
  ASSERT_TRUE(eventually(
      [&] { return r.qp->output().find("speaks h2c (detected") != std::string::npos; }, 30s))
      << r.qp->output();
  ActivatorUnderTest a;
  a.start("{\"revisions\": [{\"namespace\": \"default\", \"service\": \"hello\", \"name\": \"" +
          std::string(kRevision) +
          "\", \"containerConcurrency\": 10, \"protocol\": \"h2c\", \"endpoints\": [\"" +
          r.address() + "\"]}]}");
  auto out = run("timeout 60 /usr/bin/python3 " + std::string(E2E_DIR) +
                 "/grpc_client.py 127.0.0.1:" + std::to_string(a.port) +
                 " hello.default.example.com /echo.Echo/Say --payload detected 2>&1")
                 .out;
  EXPECT_EQ(out.rfind("ok detected\n", 0), 0u) << out << r.qp->output();
}

TEST(ActivatorE2E, H2specConformance) {
  Replica r;
  r.start(4);
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({r.address()}, 4));
  EXPECT_EQ(h2spec_failures(a.port, "hello.default.example.com"), "") << a.proc->output();
}

// The limits of an internet-facing HTTP/2 server, against a client that breaks them on
// purpose (tests/e2e/h2_attack.py writes the raw frames): each violation ends as HTTP/2
// says, is counted by reason, and leaves the activator serving everyone else.
TEST(ActivatorE2E, Http2AbuseIsRefusedCountedAndHarmless) {
  Replica r;
  r.start(4);
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({r.address()}, 4), {"--header-timeout", "2s"});
  const std::string host = "hello.default.example.com";
  auto attack = [&](const std::string& mode, int n) {
    return run("timeout 150 /usr/bin/python3 " + std::string(E2E_DIR) + "/h2_attack.py " +
               std::to_string(a.port) + " " + host + " " + mode + " " + std::to_string(n) + " 2>&1")
        .out;
  };
  auto rejected = [&](const std::string& reason) {
    const std::string m = a.metrics();
    const std::string key = "reason=\"" + reason + "\"";
    std::istringstream lines(m);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("activator_rejected_requests_total{", 0) == 0 &&
          line.find(key) != std::string::npos)
        return std::atof(line.substr(line.rfind(' ') + 1).c_str());
    }
    ADD_FAILURE() << "no activator_rejected_requests_total for " << reason << "\n" << m;
    return -1.0;
  };
  {
    SCOPED_TRACE("rapid reset");
    const std::string out = attack("rapid-reset", 2000);
    EXPECT_NE(out.find("goaway ENHANCE_YOUR_CALM"), std::string::npos) << out;
    EXPECT_EQ(rejected("http2_rapid_reset"), 1);
  }
  {
    SCOPED_TRACE("CONTINUATION flood");
    const std::string out = attack("continuation", 50);
    EXPECT_NE(out.find("closed"), std::string::npos) << out;
    EXPECT_EQ(out.find("headers 1"), std::string::npos) << "the request was not served\n" << out;
    EXPECT_EQ(rejected("http2_continuation_flood"), 1);
  }
  {
    SCOPED_TRACE("more streams than SETTINGS_MAX_CONCURRENT_STREAMS");
    const std::string out = attack("streams", 260);
    size_t refused = 0;
    for (size_t at = 0; (at = out.find("REFUSED_STREAM", at)) != std::string::npos; ++at) ++refused;
    EXPECT_EQ(refused, 10u) << out;
    EXPECT_EQ(rejected("http2_too_many_streams"), 10);
  }
  {
    SCOPED_TRACE("PING flood, the ACKs never read");
    const std::string out = attack("ping-flood", 1000000);
    EXPECT_NE(out.find("closed"), std::string::npos) << out;
    EXPECT_EQ(rejected("http2_control_flood"), 1);
  }
  {
    SCOPED_TRACE("a header block left unfinished");
    const std::string out = attack("stalled-header", 0);
    EXPECT_NE(out.find("goaway PROTOCOL_ERROR"), std::string::npos) << out;
    EXPECT_NE(out.find("closed"), std::string::npos) << out;
    EXPECT_EQ(rejected("header_timeout"), 1);
  }
  {
    SCOPED_TRACE("the preface without SETTINGS");
    const std::string out = attack("no-settings", 0);
    EXPECT_NE(out.find("goaway SETTINGS_TIMEOUT"), std::string::npos) << out;
    EXPECT_NE(out.find("closed"), std::string::npos) << out;
    EXPECT_EQ(rejected("header_timeout"), 2);
  }
  // Everyone else is still served, over both protocols.
  auto h2 = curl(a.port, "/", "-H 'Host: " + host + "' --http2-prior-knowledge");
  EXPECT_EQ(h2.head.rfind("HTTP/2 200", 0), 0u) << h2.head << a.proc->output();
  EXPECT_EQ(a.get("/").status, 200);
}

// SIGTERM drains an HTTP/2 connection in two steps (RFC 9113 §6.8): a GOAWAY naming the
// highest stream id as a shutdown notice, then the real one naming the last stream
// taken; the stream in flight still gets its whole answer, then the connection closes.
TEST(ActivatorE2E, SigtermDrainsHttp2InTwoGoawaysAndFinishesOpenStreams) {
  Replica r;
  r.start(4);
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({r.address()}, 4), {"--drain-timeout", "1s"});
  auto client = std::async(std::launch::async, [&] {
    return run("timeout 90 /usr/bin/python3 " + std::string(E2E_DIR) + "/h2_attack.py " +
               std::to_string(a.port) + " hello.default.example.com slow 4000 2>&1")
        .out;
  });
  ASSERT_TRUE(eventually(
      [&] { return std::atoi(curl(r.app_port, "/max-inflight").body.c_str()) >= 1; }, 30s))
      << "the request never reached the app";
  a.proc->signal(SIGTERM);
  const std::string out = client.get();
  const size_t notice = out.find("goaway NO_ERROR last=2147483647");
  const size_t last = out.find("goaway NO_ERROR last=1\n");
  const size_t answer = out.find("headers 1 200");
  ASSERT_NE(notice, std::string::npos) << out;
  ASSERT_NE(last, std::string::npos) << out;
  ASSERT_NE(answer, std::string::npos) << out;
  EXPECT_LT(notice, last) << out;
  EXPECT_NE(out.find("closed"), std::string::npos) << out;
  auto rc = a.proc->wait(60s);
  ASSERT_TRUE(rc.has_value()) << a.proc->output();
  EXPECT_EQ(*rc, 0) << a.proc->output();
}

// A second SIGTERM ends the readiness drain at once (the first one waits it out, which
// with Knative's 45 s default is long to wait for an operator who means it).
TEST(ActivatorE2E, ASecondSigtermStopsWithoutWaitingOutTheDrain) {
  ActivatorUnderTest a;
  a.start(ActivatorUnderTest::revision_json({}, 1), {"--drain-timeout", "600s"});
  a.proc->signal(SIGTERM);
  EXPECT_FALSE(a.proc->wait(500ms).has_value()) << "the first SIGTERM drains";
  a.proc->signal(SIGTERM);
  auto rc = a.proc->wait(30s);
  ASSERT_TRUE(rc.has_value()) << "still draining after a second SIGTERM\n" << a.proc->output();
  EXPECT_EQ(*rc, 0) << a.proc->output();
}

}  // namespace
}  // namespace e2e
