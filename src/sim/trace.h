// sim/trace.h
//
// Traffic traces for `sluice simulate`: the three input formats read into one shape, a
// list of invocations (arrival time, service, execution time) sorted by arrival.
//
//   azure2019  the Azure Functions 2019 public dataset: invocations_per_function_md
//              (HashOwner,HashApp,HashFunction,Trigger, then 1,440 per-minute counts),
//              optionally with function_durations_percentiles (HashOwner,HashApp,
//              HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,_1,_25,
//              _50,_75,_99,_100; milliseconds).
//   azure2021  the Azure Functions 2021 per-invocation trace: app,func,end_timestamp,
//              duration (seconds; the arrival is end_timestamp - duration).
//   csv        time_s,service,duration_s.
//
// A service is an app (HashOwner/HashApp, or `app`): Azure scales an app's functions
// together, as a Knative Service's revision scales for all of its paths.
//
// Per-minute counts (azure2019) are spread inside their minute by a seeded rule:
//   exponential  the arrivals of a Poisson process conditioned on the minute's count,
//                i.e. exponential inter-arrivals, drawn as the sorted order statistics of
//                `count` uniform times in the minute (the default);
//   uniform      evenly spaced: minute start + (i + 0.5) * 60 / count.
// Execution times of an azure2019 function are drawn from its percentiles, linear between
// the published points (0, 1, 25, 50, 75, 99, 100); a function without a durations row
// takes `default_duration_s`.
//
// Errors name the file, the line and what is wrong; nothing is read past the first one.
//
// Threading: pure functions; the caller owns the Random.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/random.h"

namespace sluice::sim {

// 16 bytes: a day of the 2019 dataset is ~50 M of these. A float holds a duration to
// 1 part in 16 M (a 1,000 s request to 60 µs), well inside the latency histogram's 1%.
struct Invocation {
  double arrival_s = 0;  // seconds from the trace's start
  uint32_t service = 0;  // index into Trace::services
  float duration_s = 0;  // execution time in the app
};
static_assert(sizeof(Invocation) == 16);

struct Trace {
  std::vector<std::string> services;    // by first appearance
  std::vector<Invocation> invocations;  // sorted by arrival_s
  double length_s = 0;                  // the span the trace covers (a whole day for azure2019)
};

enum class Format { Azure2019, Azure2021, Csv };
enum class Spread { Exponential, Uniform };

struct ReadOptions {
  Spread spread = Spread::Exponential;
  double default_duration_s = 1.0;
  // Bounds a trace's memory (16 bytes an invocation, 1.6 GB at the bound): a day of the
  // 2019 dataset sampled to 1,000 apps holds ~50 M invocations; a trace beyond the bound
  // is refused with the line that crossed it, not read on into memory.
  size_t max_invocations = 100'000'000;
  // The simulation steps through every second of the span: a trace longer than this (a
  // typo'd timestamp, a duration in ms read as s) is refused, not simulated for ages.
  double max_span_s = 366.0 * 86400;
};

// Parses "azure2019", "azure2021", "csv"; false for anything else.
bool parse_format(std::string_view name, Format& out);

using TraceOrError = std::variant<Trace, std::string>;

// `text` is the file's contents, `name` its name for errors. `durations` (azure2019 only)
// may be empty.
TraceOrError read_azure2019(std::string_view text,
                            std::string_view name,
                            std::string_view durations,
                            std::string_view durations_name,
                            const ReadOptions& options,
                            core::Random& random);
TraceOrError read_azure2021(std::string_view text,
                            std::string_view name,
                            const ReadOptions& options);
TraceOrError read_csv(std::string_view text, std::string_view name, const ReadOptions& options);

// A uniform double in [0, 1) from 53 random bits.
double uniform01(core::Random& random);

}  // namespace sluice::sim
