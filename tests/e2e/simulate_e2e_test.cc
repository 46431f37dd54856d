// `sluice simulate` through the real binary: a synthesized day replayed, results written,
// and bad input answered with what is wrong (exit 2) rather than a crash.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "harness.h"

namespace e2e {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string fmt_call(double at, const std::string& service) {
  std::ostringstream s;
  s << at << "," << service << ",0.1\n";
  return s.str();
}

TEST(SimulateE2E, ASynthesizedDayIsReplayedAndItsResultsWritten) {
  const std::string dir = ::testing::TempDir() + "/sim-e2e";
  ASSERT_EQ(run("rm -rf " + dir).exit_code, 0);
  const auto synth =
      run(std::string(SLUICE_BIN) + " simulate --synthesize 40 --seed 3 --out " + dir + " 2>&1");
  ASSERT_EQ(synth.exit_code, 0) << synth.out;
  EXPECT_NE(synth.out.find("invocations_per_function_md.anon.d01.csv"), std::string::npos)
      << synth.out;
  const auto sim =
      run(std::string(SLUICE_BIN) + " simulate --trace " + dir +
          "/invocations_per_function_md.anon.d01.csv --start-time 20s --out " + dir + " 2>&1");
  ASSERT_EQ(sim.exit_code, 0) << sim.out;
  // The default policies side by side.
  for (const char* p : {"| kpa | 40 |", "| fixed-keepalive:10m | 40 |", "| histogram | 40 |"})
    EXPECT_NE(sim.out.find(p), std::string::npos) << p << "\n" << sim.out;
  EXPECT_NE(sim.out.find("40 service(s)"), std::string::npos) << sim.out;
  const std::string csv = slurp(dir + "/results.csv");
  // A header and one line per service and policy.
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 3 * 40) << csv;
  EXPECT_NE(csv.find("\nhistogram,"), std::string::npos) << csv;
  EXPECT_EQ(csv.rfind("policy,service,requests,cold_starts,", 0), 0u) << csv;
  // With a 20 s start, a cold request waits 20 s: the worst added latency says so.
  EXPECT_NE(sim.out.find("| 20.00 |"), std::string::npos) << sim.out;
}

TEST(SimulateE2E, BadInputIsNamedAndNothingRuns) {
  const std::string dir = ::testing::TempDir();
  ASSERT_EQ(run("printf 'time_s,service,duration_s\\n1,a,soon\\n' > " + dir + "/bad.csv").exit_code,
            0);
  ASSERT_EQ(run("printf 'time_s,service,duration_s\\n1,a,0.5\\n' > " + dir + "/good.csv").exit_code,
            0);
  struct Case {
    std::string args, want;
  } cases[] = {
      {"", "name a trace with --trace FILE"},
      {"--trace /nonexistent/t.csv", "--trace /nonexistent/t.csv: cannot read it"},
      {"--trace " + dir + "/bad.csv", dir + "/bad.csv:2: duration_s is 'soon', not seconds"},
      {"--trace " + dir + "/bad.csv --format azure2020",
       "--format azure2020: one of azure2019, azure2021, csv"},
      {"--trace " + dir + "/bad.csv --start-time soon", "--start-time soon:"},
      {"--synthesize 5", "--synthesize writes files: name a directory with --out"},
      {"--trace /dev/zero", "--trace /dev/zero: a device, not a trace file"},
      {"--trace " + dir + "/good.csv --plot nobody", "--plot nobody: no such service"},
      {"--trace " + dir + "/bad.csv --policy warm",
       "--policy \"warm\": one of kpa (Knative's defaults), services"},
      {"--trace " + dir + "/bad.csv --policy fixed-keepalive:soon", "--policy \"fixed:soon\""},
      {"--trace " + dir + "/bad.csv --policy services", "the annotations come from --services"},
  };
  for (const auto& c : cases) {
    const auto r = run(std::string(SLUICE_BIN) + " simulate " + c.args + " 2>&1");
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.want), std::string::npos) << c.args << "\n" << r.out;
  }
}

// --- The simulator agrees with reality ------------------------------------------------

// Seconds of the day from a log line's "HH:MM:SS.mmm" prefix (-1 if it has none).
double log_time(const std::string& line) {
  int h = 0, m = 0, sec = 0, ms = 0;
  if (std::sscanf(line.c_str(), "%2d:%2d:%2d.%3d", &h, &m, &sec, &ms) != 4)
    return -1;
  return h * 3600.0 + m * 60.0 + sec + ms / 1000.0;
}

// Replica-seconds per service from `sluice run`'s log: each replica from "starting" to
// "stopped".
std::map<std::string, double> replica_seconds(const std::string& log) {
  std::map<std::string, double> started, total;
  std::istringstream in(log);
  double day = 0, last = 0;
  for (std::string line; std::getline(in, line);) {
    double t = log_time(line);
    if (t < 0)
      continue;
    if (t + day < last - 3600)
      day += 86400;  // past midnight
    t += day;
    last = t;
    const size_t at = line.find(": replica ");
    if (at == std::string::npos)
      continue;
    const std::string service = line.substr(13, at - 13);
    std::istringstream rest(line.substr(at + 10));
    std::string replica, what;
    rest >> replica >> what;
    if (what == "starting")
      started[replica] = t;
    else if (what == "stopped" && started.count(replica))
      total[service] += t - started[replica];
  }
  return total;
}

// A small trace through the real `sluice run` (real processes, a 2 s start, sped-up
// windows) and through `sluice simulate` with the same Service file: cold starts match
// exactly and replica-seconds within 10%. Requests are either well inside or well
// outside a replica's keep-alive, so that real timing (the autoscaler's 2 s tick phase,
// process start jitter) cannot move one across.
TEST(SimulateE2E, TheSimulatorAgreesWithSluiceRun) {
  const std::string dir = ::testing::TempDir() + "/sim-honesty";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto service = [](const std::string& name, const std::string& annotations) {
    return "---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: " + name +
           "\nspec:\n  template:\n    metadata:\n      annotations:\n"
           "        autoscaling.knative.dev/window: \"30s\"\n" +
           annotations +
           "    spec:\n      containerConcurrency: 10\n      containers:\n        - command: [\"" +
           TESTAPP_BIN + "\"]\n          args: [\"--startup-delay-ms\", \"2000\"]\n";
  };
  const std::string yaml =
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-autoscaler\ndata:\n"
      "  scale-to-zero-grace-period: \"1s\"\n" +
      service("steady", "") + service("kept", "        sluice.dev/keep-alive: fixed:45s\n") +
      service("retained",
              "        autoscaling.knative.dev/scale-to-zero-pod-retention-period: \"40s\"\n");
  std::ofstream(dir + "/service.yaml") << yaml;
  // steady (KPA, 30 s window): cold at 1.5 and 80.5. kept (fixed 45 s): cold at 2.5 and
  // 120.5, warm at 40.5. retained (40 s past the window): cold at 3.5, warm at 60.5.
  struct Call {
    double at;
    std::string service;
  };
  const std::vector<Call> calls = {
      {1.5, "steady"}, {2.5, "kept"},      {3.5, "retained"}, {4.5, "steady"},  {7.5, "steady"},
      {40.5, "kept"},  {60.5, "retained"}, {80.5, "steady"},  {83.5, "steady"}, {120.5, "kept"}};
  std::string csv = "time_s,service,duration_s\n";
  for (const auto& c : calls) csv += fmt_call(c.at, c.service);
  std::ofstream(dir + "/trace.csv") << csv;

  const int port = free_port();
  Process sluice({SLUICE_BIN, "run", dir + "/service.yaml", "--port", std::to_string(port),
                  "--metrics-port", std::to_string(free_port())});
  ASSERT_TRUE(wait_for_port(port)) << sluice.output();
  const auto t0 = std::chrono::steady_clock::now();
  std::map<std::string, int> cold;
  std::vector<std::string> answers(calls.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < calls.size(); ++i) {
    std::this_thread::sleep_until(t0 + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                           std::chrono::duration<double>(calls[i].at)));
    clients.emplace_back([&, i] {
      answers[i] =
          run("curl -s -o /dev/null -m 30 -w '%{http_code} %{time_total}' -H 'Host: " +
              calls[i].service + ".default.localhost' 'http://127.0.0.1:" + std::to_string(port) +
              "/?delay=100'")
              .out;
    });
  }
  for (auto& c : clients) c.join();
  for (size_t i = 0; i < calls.size(); ++i) {
    int status = 0;
    double took = 0;
    ASSERT_EQ(std::sscanf(answers[i].c_str(), "%d %lf", &status, &took), 2) << answers[i];
    EXPECT_EQ(status, 200) << calls[i].service << " at " << calls[i].at;
    // A 2 s start against a 0.1 s request: a wait over 1 s was a wait for a replica.
    cold[calls[i].service] += took > 1.0;
  }
  // Every replica gone (each service back at zero), then stop.
  ASSERT_TRUE(eventually(
      [&] {
        const std::string out = sluice.output();
        auto count = [&](const std::string& w) {
          size_t n = 0;
          for (size_t at = out.find(w); at != std::string::npos; at = out.find(w, at + 1)) ++n;
          return n;
        };
        return count(" starting\n") == count(" stopped\n");
      },
      120s))
      << sluice.output();
  sluice.signal(SIGINT);
  ASSERT_EQ(sluice.wait(60s), 0) << sluice.output();
  const auto real_rs = replica_seconds(sluice.output());

  const auto sim =
      run(std::string(SLUICE_BIN) + " simulate --trace " + dir + "/trace.csv --services " + dir +
          "/service.yaml --policy services --start-time 2s --out " + dir + " 2>&1");
  ASSERT_EQ(sim.exit_code, 0) << sim.out;
  std::istringstream in(slurp(dir + "/results.csv"));
  std::string line;
  std::getline(in, line);  // header
  int rows = 0;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::istringstream fields(line);
    for (std::string x; std::getline(fields, x, ',');) f.push_back(x);
    ASSERT_EQ(f.size(), 10u) << line;
    const std::string& name = f[1];
    ++rows;
    EXPECT_EQ(std::stoi(f[3]), cold[name]) << name << ": cold starts, simulated vs real\n"
                                           << sluice.output();
    const double simulated = std::stod(f[7]);
    std::printf("%-8s cold starts real %d simulated %s; replica-seconds real %.1f simulated %.1f\n",
                name.c_str(), cold[name], f[3].c_str(), real_rs.count(name) ? real_rs.at(name) : -1,
                simulated);
    EXPECT_NEAR(simulated, real_rs.at(name), 0.10 * real_rs.at(name))
        << name << ": replica-seconds, simulated vs real\n"
        << sluice.output();
  }
  EXPECT_EQ(rows, 3);
  EXPECT_EQ(cold["steady"], 2);
  EXPECT_EQ(cold["kept"], 2);
  EXPECT_EQ(cold["retained"], 1);
}

}  // namespace
}  // namespace e2e
