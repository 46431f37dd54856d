// sim/report.h
//
// The self-contained HTML report of a `sluice simulate` run: the policies' totals side by
// side, the cold-start vs idle-replica-seconds trade-off (one point per policy), and, for
// chosen services, replicas under each policy over time against the load. Plots are
// inline SVG (no scripts, no fetches): the file opens anywhere and can be mailed.
//
// Pure: text in, text out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sim/simulator.h"

namespace sluice::sim {

struct PolicyRun {
  std::string name;
  std::vector<ServiceResult> results;  // one per trace service, with series
};

struct Totals {
  uint64_t requests = 0, cold_starts = 0, scale_events = 0;
  double replica_seconds = 0, idle_replica_seconds = 0, worst_added_latency_s = 0;
};
Totals total(const std::vector<ServiceResult>& results);

struct ReportInput {
  std::string title;                  // e.g. the trace's file name
  std::vector<std::string> services;  // the trace's service names
  std::vector<PolicyRun> runs;
  uint32_t series_step_s = 60;
  std::vector<size_t> plotted;  // service indices to plot over time
};

// Services worth plotting when none are named: those with the most cold starts under the
// first policy (where the policies differ), at most `n`.
std::vector<size_t> pick_services(const PolicyRun& first, size_t n);

// The trade-off plot alone (also written next to the report, for a README).
std::string tradeoff_svg(const ReportInput& in);
// One service's replicas per policy and its arrivals per step, over time.
std::string service_svg(const ReportInput& in, size_t service);
std::string html_report(const ReportInput& in);

}  // namespace sluice::sim
