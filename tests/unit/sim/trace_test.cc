#include "sim/trace.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice::sim {
namespace {

std::string azure2019_header() {
  std::string h = "HashOwner,HashApp,HashFunction,Trigger";
  for (int m = 1; m <= 1440; ++m) h += "," + std::to_string(m);
  return h + "\n";
}

// One function's row: `counts` maps minute (1-based) to invocations.
std::string azure2019_row(const std::string& owner,
                          const std::string& app,
                          const std::string& fn,
                          std::initializer_list<std::pair<int, int>> counts) {
  std::vector<int> per(1440, 0);
  for (auto [m, c] : counts) per[m - 1] = c;
  std::string r = owner + "," + app + "," + fn + ",http";
  for (int c : per) r += "," + std::to_string(c);
  return r + "\n";
}

Trace ok(TraceOrError r) {
  if (const auto* err = std::get_if<std::string>(&r))
    ADD_FAILURE() << *err;
  auto* t = std::get_if<Trace>(&r);
  return t ? std::move(*t) : Trace{};
}

std::string error(const TraceOrError& r) {
  const auto* err = std::get_if<std::string>(&r);
  return err ? *err : "(no error)";
}

TEST(Trace, Azure2019CountsLandInsideTheirMinuteSortedAndAppsAreServices) {
  const std::string text = azure2019_header() + azure2019_row("o1", "a1", "f1", {{1, 3}, {3, 1}}) +
                           azure2019_row("o1", "a1", "f2", {{2, 2}}) +
                           azure2019_row("o2", "a9", "f1", {{1440, 1}});
  core::FastRandom random(7);
  const Trace t = ok(read_azure2019(text, "inv.csv", "", "", {}, random));
  ASSERT_EQ(t.invocations.size(), 7u);
  EXPECT_EQ(t.services, (std::vector<std::string>{"o1/a1", "o2/a9"}));
  EXPECT_DOUBLE_EQ(t.length_s, 86400);
  int per_minute[1441] = {};
  for (size_t i = 0; i < t.invocations.size(); ++i) {
    const auto& inv = t.invocations[i];
    if (i > 0) {
      EXPECT_LE(t.invocations[i - 1].arrival_s, inv.arrival_s);
    }
    ++per_minute[static_cast<int>(inv.arrival_s / 60) + 1];
    EXPECT_EQ(inv.service, inv.arrival_s >= 1439 * 60 ? 1u : 0u);
    EXPECT_DOUBLE_EQ(inv.duration_s, 1.0);  // no durations file: the default
  }
  EXPECT_EQ(per_minute[1], 3);
  EXPECT_EQ(per_minute[2], 2);
  EXPECT_EQ(per_minute[3], 1);
  EXPECT_EQ(per_minute[1440], 1);
}

TEST(Trace, Azure2019SpreadIsSeededAndUniformIsEvenlySpaced) {
  const std::string text = azure2019_header() + azure2019_row("o", "a", "f", {{2, 4}});
  core::FastRandom r1(42), r2(42), r3(43);
  const Trace a = ok(read_azure2019(text, "inv.csv", "", "", {}, r1));
  const Trace b = ok(read_azure2019(text, "inv.csv", "", "", {}, r2));
  const Trace c = ok(read_azure2019(text, "inv.csv", "", "", {}, r3));
  ASSERT_EQ(a.invocations.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(a.invocations[i].arrival_s, b.invocations[i].arrival_s);
  EXPECT_NE(a.invocations[0].arrival_s, c.invocations[0].arrival_s);

  ReadOptions even;
  even.spread = Spread::Uniform;
  const Trace u = ok(read_azure2019(text, "inv.csv", "", "", even, r1));
  ASSERT_EQ(u.invocations.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(u.invocations[i].arrival_s, 60 + 7.5 + 15.0 * i);
}

TEST(Trace, Azure2019DurationsAreDrawnBetweenTheFunctionsPercentiles) {
  const std::string text = azure2019_header() + azure2019_row("o", "a", "f", {{1, 1000}}) +
                           azure2019_row("o", "a", "g", {{1, 10}});
  const std::string durations =
      "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,"
      "percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,"
      "percentile_Average_99,percentile_Average_100\n"
      "o,a,f,150,1000,100,200,100,101,125,150,175,199,200\n";
  core::FastRandom random(1);
  ReadOptions opt;
  opt.default_duration_s = 2.5;
  const Trace t = ok(read_azure2019(text, "inv.csv", durations, "dur.csv", opt, random));
  ASSERT_EQ(t.invocations.size(), 1010u);
  int from_f = 0, below_median = 0, defaulted = 0;
  for (const auto& inv : t.invocations) {
    if (inv.duration_s == 2.5) {
      ++defaulted;
      continue;
    }
    ++from_f;
    EXPECT_GE(inv.duration_s, 0.100);
    EXPECT_LE(inv.duration_s, 0.200);
    below_median += inv.duration_s < 0.150;
  }
  EXPECT_EQ(defaulted, 10);  // g has no durations row
  EXPECT_EQ(from_f, 1000);
  // Half of the draws fall under the median (binomial, 1000 draws: ±5 sigma is ±79).
  EXPECT_NEAR(below_median, 500, 80);
}

TEST(Trace, Azure2021ArrivalIsEndMinusDurationFromTheFirstArrival) {
  const std::string text =
      "app,func,end_timestamp,duration\n"
      "a1,f1,100.5,0.5\n"
      "a2,f1,101.0,2.0\r\n"
      "a1,f2,103.0,1.0\n";
  const Trace t = ok(read_azure2021(text, "2021.csv", {}));
  ASSERT_EQ(t.invocations.size(), 3u);
  EXPECT_EQ(t.services, (std::vector<std::string>{"a1", "a2"}));
  // Arrivals 100, 99, 102 → sorted and shifted to start at 0: 0 (a2), 1 (a1), 3 (a1).
  EXPECT_DOUBLE_EQ(t.invocations[0].arrival_s, 0);
  EXPECT_EQ(t.invocations[0].service, 1u);
  EXPECT_DOUBLE_EQ(t.invocations[0].duration_s, 2.0);
  EXPECT_DOUBLE_EQ(t.invocations[1].arrival_s, 1);
  EXPECT_DOUBLE_EQ(t.invocations[2].arrival_s, 3);
  EXPECT_DOUBLE_EQ(t.length_s, 4);
}

TEST(Trace, CsvIsReadAsWritten) {
  const Trace t =
      ok(read_csv("time_s,service,duration_s\n5,b,0.2\n1.5,a,1\n\n1.5,b,3\n", "t.csv", {}));
  ASSERT_EQ(t.invocations.size(), 3u);
  EXPECT_EQ(t.services, (std::vector<std::string>{"b", "a"}));
  EXPECT_DOUBLE_EQ(t.invocations[0].arrival_s, 1.5);
  EXPECT_EQ(t.invocations[0].service, 1u);  // stable: a before the later line's b
  EXPECT_EQ(t.invocations[1].service, 0u);
  EXPECT_DOUBLE_EQ(t.length_s, 5.2);
}

TEST(Trace, BadInputNamesTheFileTheLineAndWhatIsWrong) {
  core::FastRandom random(1);
  const std::string h = azure2019_header();
  struct Case {
    const char* name;
    TraceOrError got;
    const char* want;
  } cases[] = {
      {"2019 wrong header", read_azure2019("a,b,c\n", "inv.csv", "", "", {}, random),
       "inv.csv:1: not an invocations_per_function_md file"},
      {"2019 short row", read_azure2019(h + "o,a,f,http,1,2\n", "inv.csv", "", "", {}, random),
       "inv.csv:2: 6 fields, the header has 1444"},
      {"2019 negative count",
       read_azure2019(h + azure2019_row("o", "a", "f", {{7, -1}}), "inv.csv", "", "", {}, random),
       "inv.csv:2: minute 7 is '-1', not a count"},
      {"2019 empty", read_azure2019("", "inv.csv", "", "", {}, random),
       "inv.csv: empty: no header line"},
      {"2019 durations header",
       read_azure2019(h, "inv.csv", "HashOwner,x\n", "dur.csv", {}, random),
       "dur.csv:1: not a function_durations_percentiles file"},
      {"2021 header", read_azure2021("app,func,end,duration\n", "t.csv", {}),
       "t.csv:1: not an Azure 2021 trace"},
      {"2021 duration past end",
       read_azure2021("app,func,end_timestamp,duration\na,f,1,2\n", "t.csv", {}),
       "t.csv:2: duration is '2', not seconds between 0 and end_timestamp"},
      {"csv not a number", read_csv("time_s,service,duration_s\nsoon,a,1\n", "t.csv", {}),
       "t.csv:2: time_s is 'soon', not seconds from the start"},
      {"csv nan", read_csv("time_s,service,duration_s\n1,a,nan\n", "t.csv", {}),
       "t.csv:2: duration_s is 'nan', not seconds"},
      {"csv beyond a year", read_csv("time_s,service,duration_s\n1e12,a,1\n", "t.csv", {}),
       "t.csv: the trace spans 11574074 days (arrivals plus durations); at most 366"},
      {"2021 beyond a year",
       read_azure2021("app,func,end_timestamp,duration\na,f,1,0\nb,g,4e7,0\n", "t.csv", {}),
       "t.csv: the trace spans 463 days"},
      {"csv empty service", read_csv("time_s,service,duration_s\n1,,1\n", "t.csv", {}),
       "t.csv:2: the service is empty"},
  };
  for (const auto& c : cases)
    EXPECT_EQ(error(c.got).rfind(c.want, 0), 0u) << c.name << ": " << error(c.got);
}

TEST(Trace, ATraceOverItsBoundIsRefusedNotRead) {
  ReadOptions small;
  small.max_invocations = 5;
  core::FastRandom random(1);
  const std::string err =
      error(read_azure2019(azure2019_header() + azure2019_row("o", "a", "f", {{1, 6}}), "inv.csv",
                           "", "", small, random));
  EXPECT_EQ(err.rfind("inv.csv:2: more than 5 invocations", 0), 0u) << err;
  EXPECT_NE(error(read_csv("time_s,service,duration_s\n1,a,1\n1,a,1\n1,a,1\n1,a,1\n1,a,1\n1,a,1\n",
                           "t.csv", small))
                .find("more than 5"),
            std::string::npos);
}

}  // namespace
}  // namespace sluice::sim
