// `sluice run` end to end: a Service YAML, real replicas (sluice-testapp, its queue-proxy
// work in sluice itself, or behind real `sluice queue-proxy` processes with
// --queue-proxy=process), the embedded activator and autoscaler, real clients.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "harness.h"

namespace e2e {
namespace {

// A Service running testapp with `args`, `annotations` (YAML lines) and a ConfigMap that
// makes idle scale-down quick.
std::string service_yaml(const std::string& name,
                         const std::string& args,
                         const std::string& annotations,
                         int cc = 1) {
  return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-autoscaler\ndata:\n"
         "  scale-to-zero-grace-period: \"1s\"\n---\n"
         "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: " +
         name +
         "\nspec:\n  template:\n    metadata:\n      annotations:\n"
         "        autoscaling.knative.dev/window: \"6s\"\n" +
         annotations + "    spec:\n      containerConcurrency: " + std::to_string(cc) +
         "\n      timeoutSeconds: 30\n      containers:\n        - command: [\"" + TESTAPP_BIN +
         "\"]\n          args: [" + args + "]\n";
}

struct RunUnderTest {
  int port = free_port();
  int metrics_port = free_port();
  std::string dir = ::testing::TempDir() + "run-" + std::to_string(port);
  std::string file = dir + "/service.yaml";
  std::optional<Process> proc;

  void start(const std::string& yaml, const std::vector<std::string>& extra = {}) {
    std::filesystem::create_directories(dir);
    std::ofstream(file) << yaml;
    std::vector<std::string> argv{SLUICE_BIN,
                                  "run",
                                  file,
                                  "--port",
                                  std::to_string(port),
                                  "--metrics-port",
                                  std::to_string(metrics_port)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc.emplace(argv);
    ASSERT_TRUE(wait_for_port(port)) << proc->output();
  }
  HttpResponse get(const std::string& service, const std::string& path = "/") {
    return curl(port, path, "-H 'Host: " + service + ".default.localhost'");
  }
  bool logged(const std::string& text) { return proc->output().find(text) != std::string::npos; }
  // Log lines are written by sluice's own threads, after (or while) the client got its
  // answer: wait for them rather than expect them at once.
  bool shows(const std::string& text, Millis timeout = 10s) {
    return eventually([&] { return logged(text); }, timeout);
  }
  std::string metrics() { return curl(metrics_port, "/metrics").body; }
  // `pgrep -a -P`: one "PID COMMAND LINE" per child process of sluice.
  std::vector<std::string> children() {
    std::vector<std::string> lines;
    std::istringstream in(run("pgrep -a -P " + std::to_string(proc->pid())).out);
    for (std::string line; std::getline(in, line);)
      if (!line.empty())
        lines.push_back(line);
    return lines;
  }
  ~RunUnderTest() { std::filesystem::remove_all(dir); }
};

TEST(RunE2E, TheFirstRequestStartsAReplicaFromZeroAndIsAnswered) {
  RunUnderTest sluice;
  sluice.start(service_yaml("hello", "", "", /*cc=*/10));  // target 7/replica: one replica
  EXPECT_TRUE(sluice.shows("hello: http://hello.default.localhost:" + std::to_string(sluice.port)))
      << sluice.proc->output();
  EXPECT_FALSE(sluice.logged("replica hello-00001-1 starting")) << "starts at zero";
  const auto r = sluice.get("hello");
  EXPECT_EQ(r.status, 200) << r.body << sluice.proc->output();
  EXPECT_TRUE(sluice.shows("hello: 0 → 1 (first request")) << sluice.proc->output();
  EXPECT_TRUE(sluice.shows("replica hello-00001-1 ready")) << sluice.proc->output();
  const std::string m = sluice.metrics();
  EXPECT_EQ(metric_value(m, "autoscaler_desired_pods"), 1) << m;
  EXPECT_NE(m.find("activator_request_count{"), std::string::npos) << m;
  EXPECT_EQ(curl(sluice.metrics_port, "/nope").status, 404) << "metrics are at /metrics only";
  // Knative's revision headers route too.
  const auto by_header = curl(sluice.port, "/",
                              "-H 'Knative-Serving-Namespace: default' "
                              "-H 'Knative-Serving-Revision: hello-00001'");
  EXPECT_EQ(by_header.status, 200);
}

// `sluice run` takes HTTP/2 on its one port like HTTP/1: a cold start through HTTP/2
// (prior knowledge, as gRPC clients connect; and Upgrade: h2c), to an HTTP/1 app.
TEST(RunE2E, Http2ClientsReachAnHttp1AppFromZero) {
  RunUnderTest sluice;
  sluice.start(service_yaml("hello", "", "", /*cc=*/10));
  const std::string host = "-H 'Host: hello.default.localhost' ";
  const auto pk = curl(sluice.port, "/echo", host + "--http2-prior-knowledge -d 'from h2'");
  EXPECT_EQ(pk.head.rfind("HTTP/2 200", 0), 0u) << pk.head << pk.body << sluice.proc->output();
  EXPECT_NE(pk.body.find("\n\nfrom h2"), std::string::npos) << pk.body;
  const auto up = curl(sluice.port, "/", host + "--http2");
  EXPECT_EQ(up.head.rfind("HTTP/2 200", 0), 0u) << up.head;
}

// Issue 13: by default a replica is one process, the user's command. The queue-proxy's
// work runs inside sluice, so the app sees one hop (one X-Forwarded-For entry, the
// client's Host, never a client's K-Original-Host), and the queue-proxy's metrics are on
// sluice run's metrics port, one family per name beside the activator's.
TEST(RunE2E, AReplicaIsOneProcessAndTheAppSeesOneHop) {
  RunUnderTest sluice;
  sluice.start(service_yaml("one", "", "        autoscaling.knative.dev/min-scale: \"2\"\n", 10));
  ASSERT_TRUE(sluice.shows("replica one-00001-2 ready")) << sluice.proc->output();
  const auto children = sluice.children();
  ASSERT_EQ(children.size(), 2u) << "one process per replica";
  for (const auto& c : children) {
    EXPECT_NE(c.find(TESTAPP_BIN), std::string::npos) << c;
    EXPECT_EQ(c.find("queue-proxy"), std::string::npos) << c;
  }
  const auto echo = curl(sluice.port, "/echo",
                         "-H 'Host: one.default.localhost' -H 'K-Original-Host: admin.other'");
  ASSERT_EQ(echo.status, 200) << echo.body << sluice.proc->output();
  EXPECT_NE(echo.body.find("Host: one.default.localhost\n"), std::string::npos) << echo.body;
  EXPECT_NE(echo.body.find("X-Forwarded-For: 127.0.0.1\n"), std::string::npos) << echo.body;
  EXPECT_NE(echo.body.find("K-Proxy-Request: activator\n"), std::string::npos) << echo.body;
  EXPECT_NE(echo.body.find("X-Request-Id: "), std::string::npos) << echo.body;
  EXPECT_EQ(echo.body.find("admin.other"), std::string::npos) << echo.body;
  // Knative's queue-proxy metrics, by replica, live: counted as soon as answered.
  const std::string m = sluice.metrics();
  EXPECT_NE(m.find("revision_request_count{namespace_name=\"default\",service_name=\"one\""),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("pod_name=\"one-00001-"), std::string::npos) << m;
  EXPECT_NE(m.find("container_name=\"queue-proxy\""), std::string::npos) << m;
  std::set<std::string> types;
  std::istringstream lines(m);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("# TYPE ", 0) == 0) {
      EXPECT_TRUE(types.insert(line).second) << "a family twice: " << line;
    }
  }
  EXPECT_TRUE(types.count("# TYPE breaker_pending_requests gauge")) << m;
}

// --queue-proxy=process keeps the layout of a cluster: a `sluice queue-proxy` process in
// front of each replica's app, two hops, from zero and back.
TEST(RunE2E, QueueProxyProcessKeepsTheTwoHopLayout) {
  RunUnderTest sluice;
  sluice.start(service_yaml("two", "", "", 10), {"--queue-proxy", "process"});
  const auto echo = curl(sluice.port, "/echo", "-H 'Host: two.default.localhost'");
  ASSERT_EQ(echo.status, 200) << echo.body << sluice.proc->output();
  EXPECT_NE(echo.body.find("X-Forwarded-For: 127.0.0.1, 127.0.0.1\n"), std::string::npos)
      << "two hops\n"
      << echo.body;
  EXPECT_TRUE(sluice.shows("replica two-00001-1 ready")) << sluice.proc->output();
  const auto children = sluice.children();
  EXPECT_EQ(children.size(), 2u);
  EXPECT_TRUE(std::any_of(children.begin(), children.end(), [](const std::string& c) {
    return c.find("queue-proxy") != std::string::npos;
  })) << "a queue-proxy process";
  EXPECT_TRUE(sluice.shows("two: 1 → 0", 40s)) << sluice.proc->output();
  EXPECT_TRUE(sluice.shows("replica two-00001-1 stopped")) << sluice.proc->output();
  EXPECT_EQ(curl(sluice.port, "/", "-H 'Host: two.default.localhost'").status, 200);
  sluice.proc->signal(SIGINT);
  EXPECT_EQ(sluice.proc->wait(20s), 0) << sluice.proc->output();
}

// In one hop a WebSocket still holds its replica's slot for its whole life, as it does in
// a queue-proxy process: with containerConcurrency 1 and one replica, a request sent
// while the socket is open waits for it to close.
TEST(RunE2E, AWebSocketHoldsItsReplicasSlotInOneHop) {
  RunUnderTest sluice;
  sluice.start(service_yaml("ws", "",
                            "        autoscaling.knative.dev/min-scale: \"1\"\n"
                            "        autoscaling.knative.dev/max-scale: \"1\"\n",
                            /*cc=*/1));
  ASSERT_TRUE(sluice.shows("replica ws-00001-1 ready")) << sluice.proc->output();
  Process socket({"/usr/bin/python3", std::string(E2E_DIR) + "/ws_client.py",
                  "ws://127.0.0.1:" + std::to_string(sluice.port) + "/ws", "12", "0.2",
                  "Knative-Serving-Revision:ws-00001,Knative-Serving-Namespace:default"});
  // The socket is open (and holds the one slot) once the app has echoed its first message.
  ASSERT_TRUE(eventually([&] { return socket.output().find("echo 0") != std::string::npos; }))
      << socket.output();
  const auto sent = std::chrono::steady_clock::now();
  const auto r = sluice.get("ws");
  const auto waited = std::chrono::steady_clock::now() - sent;
  // 12 messages 0.2 s apart keep the socket open ~2.2 s after its first echo.
  const bool socket_was_done = socket.output().find("echo 11") != std::string::npos;
  EXPECT_EQ(socket.wait(30s), 0) << socket.output();
  EXPECT_NE(socket.output().find("ok 12"), std::string::npos) << socket.output();
  EXPECT_EQ(r.status, 200) << r.body << sluice.proc->output();
  EXPECT_TRUE(socket_was_done) << "answered while the socket still held the slot";
  EXPECT_GE(waited, 1s) << "the request did not wait for the socket's slot";
}

// Knative's queue-proxy timers start when the replica gets the request, after the
// activator buffered it through a cold start: in one hop too. The app starts in 1.5 s and
// answers after 1 s; responseStartTimeoutSeconds 2 is not spent by the cold start.
TEST(RunE2E, TheResponseStartTimeoutStartsWhenTheReplicaTakesTheRequest) {
  RunUnderTest sluice;
  std::string yaml = service_yaml("late", "\"--startup-delay-ms\", \"1500\"", "", 10);
  const std::string timeout = "      timeoutSeconds: 30\n";
  yaml.replace(yaml.find(timeout), timeout.size(),
               timeout + "      responseStartTimeoutSeconds: 2\n");
  sluice.start(yaml);
  const auto r = sluice.get("late", "/?delay=1000");
  EXPECT_EQ(r.status, 200) << r.body << sluice.proc->output();
  // And it still bounds the app: 3 s without a response start is cut at 2 s.
  const auto cut = sluice.get("late", "/?delay=3000");
  EXPECT_EQ(cut.status, 504) << cut.body;
}

// 103 Early Hints reach the client through the one hop; an app that keeps sending
// interim answers has its request ended with a 502 that says so, and serves on.
TEST(RunE2E, InterimAnswersAreRelayedAndAStormOfThemIsCut) {
  constexpr int kMaxInterim = 16;  // the documented limit (http::kMaxInterimResponses)
  RunUnderTest sluice;
  sluice.start(service_yaml("hints", "", "", 10));
  const std::string get =
      "GET /?hints=%d HTTP/1.1\r\nHost: hints.default.localhost\r\n"
      "Connection: close\r\n\r\n";
  auto request = [&](int hints) {
    char buf[256];
    std::snprintf(buf, sizeof(buf), get.c_str(), hints);
    return raw_exchange(sluice.port, buf, 30s);
  };
  auto count = [](const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
    return n;
  };
  const std::string two = request(2);
  EXPECT_EQ(count(two, "HTTP/1.1 103 Early Hints\r\n"), 2u) << two << sluice.proc->output();
  EXPECT_NE(two.find("Link: </hint-1.css>"), std::string::npos) << two;
  EXPECT_NE(two.find("HTTP/1.1 200 OK"), std::string::npos) << two;
  EXPECT_NE(two.find("hello from sluice-testapp"), std::string::npos) << two;

  const std::string storm = request(kMaxInterim + 1);
  EXPECT_EQ(count(storm, "HTTP/1.1 103 Early Hints\r\n"), size_t(kMaxInterim)) << storm;
  EXPECT_NE(storm.find("HTTP/1.1 502"), std::string::npos) << storm << sluice.proc->output();
  EXPECT_NE(storm.find("interim (1xx) responses"), std::string::npos) << storm;
  EXPECT_EQ(storm.find("hello from sluice-testapp"), std::string::npos) << storm;
  EXPECT_EQ(sluice.get("hints").status, 200) << sluice.proc->output();
}

TEST(RunE2E, AnUnknownQueueProxyLayoutIsRefused) {
  RunUnderTest sluice;
  std::filesystem::create_directories(sluice.dir);
  std::ofstream(sluice.file) << service_yaml("x", "", "");
  const auto r =
      run(std::string(SLUICE_BIN) + " run " + sluice.file + " --queue-proxy sidecar --port 0 2>&1");
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("--queue-proxy"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sidecar"), std::string::npos) << r.out;
}

// The conformance suite against `sluice run`'s one port, with a replica kept warm.
TEST(RunE2E, H2specConformance) {
  RunUnderTest sluice;
  sluice.start(service_yaml("hello", "", "        autoscaling.knative.dev/min-scale: \"1\"\n", 10));
  ASSERT_EQ(sluice.get("hello").status, 200) << sluice.proc->output();
  EXPECT_EQ(h2spec_failures(sluice.port, "hello.default.localhost"), "") << sluice.proc->output();
}

// gRPC end to end through `sluice run` (activator, queue-proxy and app all on HTTP/2):
// a real grpcio server whose port is named h2c, and a real grpcio client. Every RPC
// shape, metadata and trailers, statuses, a deadline, a cancellation that reaches the
// app, a 64 MiB message, and server-streamed messages arriving as they are written.
TEST(RunE2E, GrpcThroughEveryHopToAnH2cApp) {
  RunUnderTest sluice;
  sluice.start(
      "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: grpc\nspec:\n"
      "  template:\n    spec:\n      containerConcurrency: 10\n      timeoutSeconds: 30\n"
      "      containers:\n        - command: [\"/usr/bin/python3\", \"" +
      std::string(E2E_DIR) + "/grpc_app.py\"]\n          ports:\n            - name: h2c\n");
  auto call = [&](const std::string& method, const std::string& extra) {
    return run("timeout 120 /usr/bin/python3 " + std::string(E2E_DIR) +
               "/grpc_client.py 127.0.0.1:" + std::to_string(sluice.port) +
               " grpc.default.localhost " + method + " " + extra + " 2>&1")
        .out;
  };
  // Unary, from zero replicas: the call waits for the cold start.
  std::string out = call("/echo.Echo/Say", "--payload hello");
  EXPECT_EQ(out, "ok hello\ntrailer x-echo-len=5\n") << out << sluice.proc->output();
  // The app's own status and message pass through.
  out = call("/echo.Echo/Say", "--metadata x-status=PERMISSION_DENIED");
  EXPECT_EQ(out, "error PERMISSION_DENIED asked to fail with PERMISSION_DENIED\n") << out;
  // Server streaming: written 300 ms apart, they arrive apart (buffered, together).
  out = call("/echo.Echo/Count", "--mode stream --payload '3 300'");
  std::istringstream lines(out);
  std::vector<long> at;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("msg ", 0) == 0)
      at.push_back(std::atol(line.c_str() + 4));
  }
  ASSERT_EQ(at.size(), 3u) << out;
  EXPECT_GE(at[2] - at[0], 450) << out;
  EXPECT_NE(out.find("end OK"), std::string::npos) << out;
  // Client streaming and bidirectional (each answer comes before the next message goes:
  // the request body and the response flow at once).
  out = call("/echo.Echo/Sum", "--mode client --payload aaaabbbbccccdddd");
  EXPECT_EQ(out, "ok 16\n") << out;
  out = call("/echo.Echo/Chat", "--mode bidi --payload 'one two three'");
  EXPECT_NE(out.find("ONE\n"), std::string::npos) << out;
  EXPECT_NE(out.find("THREE\nend OK"), std::string::npos) << out;
  // A deadline shorter than the app takes, and a cancel: both reach the app.
  out = call("/echo.Echo/Say", "--metadata x-sleep=10 --deadline 1");
  EXPECT_EQ(out.rfind("error DEADLINE_EXCEEDED", 0), 0u) << out;
  out = call("/echo.Echo/Say", "--metadata x-sleep=10 --cancel-after 1");
  EXPECT_EQ(out, "cancelled\n") << out;
  EXPECT_TRUE(eventually(
      [&] {
        const std::string log = sluice.proc->output();
        size_t n = 0;
        for (size_t at = log.find("cancelled Say"); at != std::string::npos;
             at = log.find("cancelled Say", at + 1))
          ++n;
        return n >= 2;
      },
      20s))
      << "the app saw both cancellations\n"
      << sluice.proc->output();
  // 64 MiB each way.
  out = call("/echo.Echo/Say", "--size 67108864 --deadline 100");
  EXPECT_EQ(out.rfind("ok 67108864\n", 0), 0u) << out;
}

// The app inherited sluice run's listening sockets; a daemon it left behind kept the
// ports after sluice exited, and the next start failed with "Address already in use".
TEST(RunE2E, AReplicaInheritsNoDescriptorButStdio) {
  RunUnderTest sluice;
  const std::string fds = sluice.dir + "/fds.txt";
  const std::string yaml = service_yaml("fds", "\"--list-fds\", \"" + fds + "\"", "", 10);
  sluice.start(yaml);
  ASSERT_EQ(sluice.get("fds").status, 200) << sluice.proc->output();
  std::ifstream in(fds);
  std::string listed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(listed, "0\n1\n2\n") << "descriptors the app inherited";
}

// Sluice runs with its allocator setting (core/malloc_tuning.h: one re-exec with
// GLIBC_TUNABLES), and the app it starts inherits neither that nor the marker.
TEST(RunE2E, SluiceRunsWithItsMallocTuningAndTheAppInheritsNone) {
  RunUnderTest sluice;
  const std::string env_file = sluice.dir + "/env.txt";
  const std::string yaml =
      "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: env\nspec:\n"
      "  template:\n    spec:\n      containers:\n        - command: [\"/bin/sh\", \"-c\", "
      "\"env > " +
      env_file + " && exec " + TESTAPP_BIN + "\"]\n";
  sluice.start(yaml);
  ASSERT_EQ(sluice.get("env").status, 200) << sluice.proc->output();
  std::ifstream in(env_file);
  const std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(env.find("PORT="), std::string::npos) << env;
  EXPECT_EQ(env.find("GLIBC_TUNABLES"), std::string::npos) << env;
  EXPECT_EQ(env.find("SLUICE_MALLOC_TUNED"), std::string::npos) << env;
  // /proc/PID/environ is what the (re-)executed image started with.
  std::ifstream own("/proc/" + std::to_string(sluice.proc->pid()) + "/environ");
  const std::string started((std::istreambuf_iterator<char>(own)),
                            std::istreambuf_iterator<char>());
  EXPECT_NE(started.find(std::string("GLIBC_TUNABLES=glibc.malloc.tcache_count=1024\0", 46)),
            std::string::npos);
}

TEST(RunE2E, OnePortServesEveryServiceByHost) {
  RunUnderTest sluice;
  std::string two = service_yaml("alpha", "", "", 10);
  const std::string beta = service_yaml("beta", "", "", 10);
  two += "---\n" + beta.substr(beta.find("apiVersion: serving"));  // one ConfigMap
  sluice.start(two);
  EXPECT_EQ(sluice.get("alpha").status, 200);
  EXPECT_EQ(sluice.get("beta").status, 200);
  EXPECT_TRUE(sluice.shows("replica alpha-00001-1 ready")) << sluice.proc->output();
  EXPECT_TRUE(sluice.shows("replica beta-00001-1 ready")) << sluice.proc->output();
  const auto unknown = sluice.get("gamma");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_NE(unknown.body.find("gamma"), std::string::npos) << unknown.body;
}

TEST(RunE2E, ScalesOutUnderLoadAndBackToZeroWithoutAFailedRequest) {
  RunUnderTest sluice;
  sluice.start(service_yaml("load", "", "        autoscaling.knative.dev/max-scale: \"4\"\n"));
  std::atomic<int> ok{0}, failed{0};
  std::string first_failure;
  std::mutex mu;
  auto load = [&](std::chrono::milliseconds length, int clients) {
    std::vector<std::thread> threads;
    const auto until = std::chrono::steady_clock::now() + length;
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&] {
        while (std::chrono::steady_clock::now() < until) {
          const auto r = sluice.get("load", "/?delay=50");
          if (r.status == 200) {
            ++ok;
          } else {
            ++failed;
            std::lock_guard lock(mu);
            first_failure = std::to_string(r.status) + " " + r.body;
          }
        }
      });
    }
    for (auto& t : threads) t.join();
  };
  load(5s, 6);  // CC=1, target 0.7/replica: 6 clients want more than 4 replicas
  EXPECT_TRUE(sluice.shows("replica load-00001-4 ready")) << sluice.proc->output();
  EXPECT_TRUE(sluice.shows(" → 4 (")) << "scaled out to max-scale\n" << sluice.proc->output();
  // Idle: down by at most half every 2 s once the 6 s window empties, then to zero.
  EXPECT_TRUE(sluice.shows("load: 1 → 0", 40s)) << sluice.proc->output();
  EXPECT_TRUE(sluice.shows("replica load-00001-1 stopped"));
  // From zero again.
  load(1s, 1);
  EXPECT_EQ(failed.load(), 0) << first_failure << "\n" << sluice.proc->output();
  EXPECT_GT(ok.load(), 50);
}

// Knative leaves a revision without max-scale unbounded; on one machine that lets a
// burst of clients start a copy of the app per 0.7 requests. sluice run caps it at 4
// replicas per CPU, says so at start, and the burst waits in the activator instead.
TEST(RunE2E, ARevisionWithoutMaxScaleIsCappedToTheMachine) {
  const int cap = 4 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  RunUnderTest sluice;
  sluice.start(service_yaml("burst", "", ""));  // CC 1: target 0.7/replica
  EXPECT_TRUE(sluice.shows("scale 0.." + std::to_string(cap) +
                           ": no max-scale given, this machine's default)"))
      << sluice.proc->output();
  std::atomic<int> ok{0};
  std::atomic<size_t> most{0};
  std::atomic<bool> done{false};
  std::thread watch([&] {
    while (!done) {
      most = std::max(most.load(), sluice.children().size());
      std::this_thread::sleep_for(100ms);
    }
  });
  std::vector<std::thread> clients;
  for (int c = 0; c < cap + 8; ++c)
    clients.emplace_back([&] {
      if (sluice.get("burst", "/?delay=3000").status == 200)
        ++ok;
    });
  for (auto& t : clients) t.join();
  done = true;
  watch.join();
  EXPECT_EQ(ok.load(), cap + 8) << sluice.proc->output();
  EXPECT_TRUE(sluice.shows("capped at max-scale " + std::to_string(cap))) << sluice.proc->output();
  EXPECT_LE(most.load(), size_t(cap)) << sluice.proc->output();
}

TEST(RunE2E, TheScaleBufferAddsReplicasWhileThereIsTraffic) {
  RunUnderTest sluice;
  sluice.start(service_yaml("buffered", "", "        autoscaling.knative.dev/scale-buffer: \"2\"\n",
                            /*cc=*/10));
  EXPECT_EQ(sluice.get("buffered").status, 200);
  EXPECT_TRUE(
      sluice.shows("buffered: 0 → 3 (first request; stable: 1 concurrent, target "
                   "7/replica + scale buffer 2)"))
      << sluice.proc->output();
  EXPECT_TRUE(sluice.shows("replica buffered-00001-3 ready")) << sluice.proc->output();
  EXPECT_EQ(metric_value(sluice.metrics(), "autoscaler_scale_buffer"), 2);
}

TEST(RunE2E, ACrashedReplicaIsRestartedAndServesAgain) {
  RunUnderTest sluice;
  sluice.start(service_yaml("crashy", "\"--exit-after-ms\", \"1500\"",
                            "        autoscaling.knative.dev/min-scale: \"1\"\n"));
  EXPECT_TRUE(sluice.shows("replica crashy-00001-1 ready"));
  EXPECT_TRUE(sluice.shows("replica crashy-00001-1 app exited with status 3"))
      << sluice.proc->output();
  EXPECT_TRUE(sluice.shows("restarting in 0.5s")) << sluice.proc->output();
  EXPECT_TRUE(sluice.shows("replica crashy-00001-1 starting (restart 1)"));
  EXPECT_EQ(sluice.get("crashy").status, 200) << sluice.proc->output();
}

TEST(RunE2E, ACrashLoopFailsWaitingRequestsWithTheCause) {
  RunUnderTest sluice;
  // containerConcurrency 10 (target 7/replica): one request asks for exactly one replica.
  // (At CC=1 it asks for two, and which of them fails first is a race.)
  sluice.start(service_yaml("broken", "\"--exit-after-ms\", \"0\"", "", /*cc=*/10));
  const auto r = sluice.get("broken");  // waits while the replica crashes 5 times (~7.5 s)
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("revision broken-00001: replica broken-00001-1 failed: app exited with "
                        "status 3 (last output: sluice-testapp: exiting with 3 as told"),
            std::string::npos)
      << r.body << sluice.proc->output();
  EXPECT_TRUE(sluice.shows("broken: replica broken-00001-1 failed")) << sluice.proc->output();
  // New requests learn it at once instead of waiting.
  const auto again = sluice.get("broken");
  EXPECT_EQ(again.status, 503);
}

TEST(RunE2E, ACommandThatCannotStartAnswers503NamingIt) {
  RunUnderTest sluice;
  std::string yaml = service_yaml("missing", "", "");
  yaml.replace(yaml.find(TESTAPP_BIN), std::string(TESTAPP_BIN).size(), "/no/such/program");
  sluice.start(yaml);
  const auto r = sluice.get("missing");
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("cannot start /no/such/program: No such file or directory"),
            std::string::npos)
      << r.body;
}

// A readinessProbe naming a port the app does not listen on (Knative 1.18 probes the
// port it names): the replica stays unready, and the warning says which port was probed
// and that it is not the app's $PORT, instead of blaming the app for ignoring $PORT.
TEST(RunE2E, AProbeOnAPortNobodyListensOnIsNamedInTheWarning) {
  RunUnderTest sluice;
  const int nobody = free_port();
  std::string yaml = service_yaml("unready", "", "");
  yaml += "          readinessProbe:\n            tcpSocket:\n              port: " +
          std::to_string(nobody) + "\n";
  sluice.start(yaml);
  // The request waits for a replica that never becomes ready; the client gives up.
  curl(sluice.port, "/", "--max-time 2 -H 'Host: unready.default.localhost'");
  const std::string warning = "nothing listens on port " + std::to_string(nobody) +
                              ", the port the readinessProbe names; the app's $PORT is ";
  EXPECT_TRUE(sluice.shows(warning, 60s)) << sluice.proc->output();
  EXPECT_FALSE(sluice.logged("the app must listen on the port in $PORT")) << sluice.proc->output();
}

TEST(RunE2E, BadYamlIsRefusedWithFileLineKeyAndRuleBeforeAnythingStarts) {
  RunUnderTest sluice;
  std::filesystem::create_directories(sluice.dir);
  std::ofstream(sluice.file) << service_yaml("hello", "",
                                             "        autoscaling.knative.dev/min-scale: \"5\"\n"
                                             "        autoscaling.knative.dev/max-scale: \"2\"\n"
                                             "        autoscaling.knative.dev/targt: \"3\"\n");
  const auto r = run(std::string(SLUICE_BIN) + " run " + sluice.file + " --port " +
                     std::to_string(sluice.port) + " 2>&1");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find(sluice.file + ":17: autoscaling.knative.dev/min-scale: min-scale 5 > "
                                     "max-scale 2"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(sluice.file + ":19: autoscaling.knative.dev/targt: unknown autoscaling "
                                     "annotation (did you mean autoscaling.knative.dev/target?)"),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(wait_for_port(sluice.port, 300ms)) << "nothing started";
}

// containerPort equal to --port was silent: the probe reached sluice's own listener,
// every request got 400, and the app crash-looped on "Address already in use".
// A file that never ends (a device, a runaway generator) is refused at 4 MiB, not read
// into memory until the machine runs out.
TEST(RunE2E, AnEndlessServiceFileIsRefusedAtItsLimit) {
  const auto r = run(std::string(SLUICE_BIN) + " run /dev/zero --port 0 2>&1");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("/dev/zero: larger than 4 MiB: not a Service file"), std::string::npos)
      << r.out;
}

TEST(RunE2E, AContainerPortThatIsSluicesOwnPortIsRefusedBeforeStarting) {
  RunUnderTest sluice;
  std::filesystem::create_directories(sluice.dir);
  std::ofstream(sluice.file) << service_yaml("clash", "", "", 10) +
                                    "          ports:\n"
                                    "            - containerPort: " +
                                    std::to_string(sluice.port) + "\n";
  const auto r = run(std::string(SLUICE_BIN) + " run " + sluice.file + " --port " +
                     std::to_string(sluice.port) + " 2>&1");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("containerPort: " + std::to_string(sluice.port) +
                       " is also sluice run's --port " + std::to_string(sluice.port)),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(wait_for_port(sluice.port, 300ms)) << "nothing started";
}

// The listening sockets of `pid` whose port is `port`, as "ADDR" hex strings from
// /proc/net/tcp{,6} (state 0A = LISTEN).
std::vector<std::string> listen_addresses(int port) {
  std::vector<std::string> out;
  char want[8];
  std::snprintf(want, sizeof want, ":%04X", port);
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state;
      fields >> slot >> local >> remote >> state;
      if (state == "0A" && local.size() > 5 && local.ends_with(want))
        out.push_back(local.substr(0, local.size() - 5));
    }
  }
  return out;
}

// A development server listened on every interface (reachable from the machine's
// network), and --port 0 printed ":0" in the service URL.
TEST(RunE2E, ListensOnLoopbackByDefaultAndPrintsTheRealPortForPortZero) {
  RunUnderTest sluice;
  std::filesystem::create_directories(sluice.dir);
  std::ofstream(sluice.file) << service_yaml("zero", "", "", 10);
  Process proc({SLUICE_BIN, "run", sluice.file, "--port", "0", "--metrics-port",
                std::to_string(sluice.metrics_port)});
  int port = 0;
  ASSERT_TRUE(eventually([&] {
    const std::string out = proc.output();
    const std::string prefix = "http://zero.default.localhost:";
    const auto at = out.find(prefix);
    if (at == std::string::npos)
      return false;
    port = std::atoi(out.c_str() + at + prefix.size());
    return true;
  })) << proc.output();
  ASSERT_GT(port, 0) << proc.output();
  EXPECT_EQ(curl(port, "/", "-H 'Host: zero.default.localhost'").status, 200) << proc.output();
  EXPECT_EQ(listen_addresses(port), std::vector<std::string>{"0100007F"}) << "127.0.0.1 only";
  EXPECT_EQ(listen_addresses(sluice.metrics_port), std::vector<std::string>{"0100007F"});
  EXPECT_NE(proc.output().find("listening on 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << proc.output();
  proc.signal(SIGINT);
  EXPECT_EQ(proc.wait(30s), 0) << proc.output();
}

// `sluice run ... | tee log`: Ctrl-C ends tee too, and sluice's next log line killed it
// with SIGPIPE (exit 141) in the middle of draining.
TEST(RunE2E, AClosedStdoutDoesNotKillIt) {
  RunUnderTest sluice;
  std::filesystem::create_directories(sluice.dir);
  std::ofstream(sluice.file) << service_yaml("pipe", "", "", 10);
  const std::string pidfile = sluice.dir + "/pid", rcfile = sluice.dir + "/rc";
  // stdout and stderr go to `head -c 1`, which exits after the first byte.
  std::thread shell([&] {
    run("(" + std::string(SLUICE_BIN) + " run " + sluice.file + " --port " +
        std::to_string(sluice.port) + " --metrics-port " + std::to_string(sluice.metrics_port) +
        " 2>&1 & echo $! > " + pidfile + "; wait $!; echo $? > " + rcfile +
        ") | head -c 1 > /dev/null");
  });
  ASSERT_TRUE(wait_for_port(sluice.port));
  EXPECT_EQ(sluice.get("pipe").status, 200) << "serves, and logs into the closed pipe";
  int pid = 0;
  std::ifstream(pidfile) >> pid;
  ASSERT_GT(pid, 0);
  ::kill(pid, SIGINT);
  std::string rc;
  EXPECT_TRUE(eventually(
      [&] {
        std::ifstream in(rcfile);
        return static_cast<bool>(in >> rc);
      },
      30s));
  EXPECT_EQ(rc, "0") << "141 is death by SIGPIPE";
  shell.join();
}

// Ctrl-C waited up to the revision timeout for buffered requests (285 s seen), and the
// second Ctrl-C said "stopping replicas now" but changed nothing.
TEST(RunE2E, ASecondCtrlCStopsNowAndTellsBufferedRequestsWhy) {
  RunUnderTest sluice;
  // An app that takes far longer to start than anyone waits: its request stays buffered.
  sluice.start(service_yaml("slow", "\"--startup-delay-ms\", \"600000\"", "", 10));
  auto buffered = std::async(std::launch::async, [&] { return sluice.get("slow"); });
  ASSERT_TRUE(sluice.shows("replica slow-00001-1 starting")) << sluice.proc->output();
  sluice.proc->signal(SIGINT);
  ASSERT_TRUE(sluice.shows("Ctrl-C again stops now")) << sluice.proc->output();
  EXPECT_EQ(buffered.wait_for(300ms), std::future_status::timeout) << "the first one drains";
  sluice.proc->signal(SIGINT);
  const auto r = buffered.get();
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.body.find("sluice is shutting down"), std::string::npos) << r.body;
  EXPECT_TRUE(sluice.proc->wait(30s).has_value()) << sluice.proc->output();
  EXPECT_TRUE(sluice.logged("second Ctrl-C: stopping now")) << sluice.proc->output();
}

TEST(RunE2E, CtrlCDrainsAndExitsZeroAndKill9LeavesNoOrphans) {
  {
    RunUnderTest sluice;
    sluice.start(service_yaml("drain", "", "        autoscaling.knative.dev/min-scale: \"1\"\n"));
    ASSERT_TRUE(sluice.shows("replica drain-00001-1 ready"));
    auto slow = std::async(std::launch::async, [&] { return sluice.get("drain", "/?delay=700"); });
    std::this_thread::sleep_for(200ms);
    sluice.proc->signal(SIGINT);
    EXPECT_EQ(slow.get().status, 200) << "the request in flight finishes";
    EXPECT_EQ(sluice.proc->wait(10s), 0) << sluice.proc->output();
    EXPECT_TRUE(sluice.shows("replica drain-00001-1 stopped")) << sluice.proc->output();
  }
  RunUnderTest sluice;
  sluice.start(service_yaml("orphan", "", "        autoscaling.knative.dev/min-scale: \"2\"\n"));
  ASSERT_TRUE(sluice.shows("replica orphan-00001-2 ready"));
  const auto children = run("pgrep -P " + std::to_string(sluice.proc->pid())).out;
  ASSERT_FALSE(children.empty());
  sluice.proc->signal(SIGKILL);
  sluice.proc->wait(5s);
  EXPECT_TRUE(eventually(
      [&] {
        for (size_t at = 0, nl; (nl = children.find('\n', at)) != std::string::npos; at = nl + 1) {
          if (::kill(std::atoi(children.substr(at, nl - at).c_str()), 0) == 0)
            return false;
        }
        return true;
      },
      5s))
      << "children of a killed sluice must die with it: " << children;
}

}  // namespace
}  // namespace e2e
