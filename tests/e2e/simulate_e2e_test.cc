// `sluice simulate` through the real binary: a synthesized day replayed, results written,
// and bad input answered with what is wrong (exit 2) rather than a crash.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "harness.h"

namespace e2e {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
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

}  // namespace
}  // namespace e2e
