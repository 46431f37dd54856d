#include "sim/report.h"

#include <gtest/gtest.h>

namespace sluice::sim {
namespace {

ServiceResult result(uint64_t cold, double idle_s, std::vector<SeriesPoint> series = {}) {
  ServiceResult r;
  r.requests = 10;
  r.cold_starts = cold;
  r.replica_seconds = idle_s + 100;
  r.idle_replica_seconds = idle_s;
  r.series = std::move(series);
  return r;
}

ReportInput input() {
  ReportInput in;
  in.title = "trace <1>.csv";
  in.services = {"a&b", "quiet", "busy"};
  in.series_step_s = 60;
  in.runs.push_back({"kpa",
                     {result(3, 3600, {{1, 4}, {0, 0}, {1, 2}}), result(0, 0),
                      result(7, 7200, {{2, 9}, {2, 9}, {3, 12}})}});
  in.runs.push_back({"histogram",
                     {result(1, 7200, {{1, 4}, {1, 0}, {1, 2}}), result(0, 0),
                      result(2, 9000, {{2, 9}, {3, 9}, {3, 12}})}});
  return in;
}

TEST(Report, TotalsAddUpEveryService) {
  const Totals t = total(input().runs[0].results);
  EXPECT_EQ(t.requests, 30u);
  EXPECT_EQ(t.cold_starts, 10u);
  EXPECT_DOUBLE_EQ(t.idle_replica_seconds, 10800);
  EXPECT_DOUBLE_EQ(t.replica_seconds, 10800 + 300);
}

// The services plotted by default: most cold starts under the first policy first, and
// none without a cold start while another has one.
TEST(Report, PicksTheServicesWithTheMostColdStarts) {
  const ReportInput in = input();
  EXPECT_EQ(pick_services(in.runs[0], 4), (std::vector<size_t>{2, 0}));
  EXPECT_EQ(pick_services(in.runs[0], 1), (std::vector<size_t>{2}));
}

// Self-contained: no scripts, no links out; names escaped; one trade-off point and one
// legend entry per policy; a step line per policy in each service plot.
TEST(Report, IsSelfContainedAndEscapesNames) {
  ReportInput in = input();
  in.plotted = {0, 2};
  const std::string html = html_report(in);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_NE(html.find("trace &lt;1&gt;.csv"), std::string::npos);
  EXPECT_NE(html.find("a&amp;b: replicas per policy"), std::string::npos);
  EXPECT_EQ(html.find("a&b"), std::string::npos);
  const std::string trade = tradeoff_svg(in);
  EXPECT_NE(trade.find("<title>kpa: 10 cold starts, 3 idle replica-hours</title>"),
            std::string::npos)
      << trade;
  EXPECT_NE(trade.find("<title>histogram: 3 cold starts, 4 idle replica-hours</title>"),
            std::string::npos)
      << trade;
  const std::string svc = service_svg(in, 2);
  size_t paths = 0;
  for (size_t at = svc.find("<path"); at != std::string::npos; at = svc.find("<path", at + 1))
    ++paths;
  EXPECT_EQ(paths, 2u);
  EXPECT_NE(svc.find("peak 12 per 60 s"), std::string::npos) << svc;
}

}  // namespace
}  // namespace sluice::sim
