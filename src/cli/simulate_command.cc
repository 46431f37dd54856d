// `sluice simulate`: replays a traffic trace through the real autoscaler on a manual clock
// (sim/simulator.h), or writes a synthesized trace (sim/synthesize.h).
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "cli/commands.h"
#include "config/duration.h"
#include "core/time_source.h"
#include "service/service_file.h"
#include "sim/simulator.h"
#include "sim/synthesize.h"
#include "sim/trace.h"

namespace sluice::cli {

namespace {

namespace fs = std::filesystem;

bool slurp(const std::string& path, std::string& out, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = fmt::format("{}: cannot read it: {}", path, std::strerror(errno));
    return false;
  }
  std::ostringstream s;
  s << in.rdbuf();
  out = s.str();
  return true;
}

bool write_file(const fs::path& path, const std::string& text, std::string& error) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    error = fmt::format("{}: cannot write it: {}", path.string(), std::strerror(errno));
    return false;
  }
  return true;
}

// The format from the file's header line, when --format is not given.
std::optional<sim::Format> guess_format(std::string_view text) {
  const std::string_view head = text.substr(0, text.find('\n'));
  if (head.rfind("HashOwner,HashApp,HashFunction,Trigger", 0) == 0)
    return sim::Format::Azure2019;
  if (head.rfind("app,func,end_timestamp,duration", 0) == 0)
    return sim::Format::Azure2021;
  if (head.rfind("time_s,service,duration_s", 0) == 0)
    return sim::Format::Csv;
  return std::nullopt;
}

// invocations_per_function_md.anon.dNN.csv → function_durations_percentiles.anon.dNN.csv
// in the same directory, as the dataset ships them.
std::string durations_next_to(const std::string& trace) {
  const fs::path p(trace);
  const std::string name = p.filename().string();
  const std::string prefix = "invocations_per_function_md.anon.";
  if (name.rfind(prefix, 0) != 0)
    return "";
  const fs::path d =
      p.parent_path() / ("function_durations_percentiles.anon." + name.substr(prefix.size()));
  return fs::exists(d) ? d.string() : "";
}

class Progress {
 public:
  explicit Progress(bool on) : on_(on) {}
  void operator()(double fraction) {
    if (!on_)
      return;
    const int filled = static_cast<int>(fraction * 40);
    std::fprintf(stderr, "\r  [%-40s] %3d%%", std::string(static_cast<size_t>(filled), '#').c_str(),
                 static_cast<int>(fraction * 100));
    std::fflush(stderr);
  }
  void done() {
    if (on_)
      std::fprintf(stderr, "\r%60s\r", "");
  }

 private:
  bool on_;
};

}  // namespace

Action add_simulate_command(CLI::App& app) {
  struct Raw {
    std::string trace;
    std::string format;
    std::string durations;
    std::string services;
    std::vector<std::string> policies;
    std::string out;
    std::string start_time = "1s";
    std::string spread = "exponential";
    uint64_t seed = 1;
    uint32_t synthesize = 0;
    uint32_t days = 1;
  };
  auto raw = std::make_shared<Raw>();
  app.add_option("--trace", raw->trace, "The trace to replay (azure2019, azure2021 or csv)");
  app.add_option("--format", raw->format,
                 "azure2019|azure2021|csv (default: told by the file's header line)");
  app.add_option("--durations", raw->durations,
                 "azure2019: function_durations_percentiles file (default: the one next to "
                 "the trace with the same day number)");
  app.add_option(
      "--services", raw->services,
      "Knative Service YAML: a Service named like a trace service gives it its "
      "annotations and containerConcurrency (its ConfigMaps apply to the Services in it); "
      "the rest get Knative's defaults");
  app.add_option("--policy", raw->policies, "Scaling policy to compare (default kpa; repeatable)");
  app.add_option("--out", raw->out, "Directory for results.csv (or, with --synthesize, the trace)");
  app.add_option(
      "--start-time", raw->start_time,
      "A replica's start time, asked-for to ready (default 1s; e.g. 20s for a model load)");
  app.add_option("--spread", raw->spread,
                 "azure2019: how a minute's count is spread in it: exponential|uniform");
  app.add_option("--seed", raw->seed, "Seed for spreading, durations, sampling and --synthesize");
  app.add_option("--synthesize", raw->synthesize,
                 "Write a trace of this many services from the 2019 dataset's published "
                 "statistics into --out, instead of simulating")
      ->check(CLI::Range(1, 100000));
  app.add_option("--days", raw->days, "Days to synthesize (default 1)")->check(CLI::Range(1, 366));

  return [raw]() -> int {
    std::string error;
    if (raw->synthesize > 0) {
      if (raw->out.empty()) {
        std::fprintf(stderr,
                     "sluice simulate: --synthesize writes files: name a directory with --out\n");
        return 2;
      }
      std::error_code ec;
      fs::create_directories(raw->out, ec);
      if (ec) {
        std::fprintf(stderr, "sluice simulate: --out %s: %s\n", raw->out.c_str(),
                     ec.message().c_str());
        return 2;
      }
      core::FastRandom random(raw->seed);
      const auto days = sim::synthesize({raw->synthesize, raw->days}, random);
      for (size_t d = 0; d < days.size(); ++d) {
        const auto inv =
            fs::path(raw->out) / fmt::format("invocations_per_function_md.anon.d{:02d}.csv", d + 1);
        const auto dur = fs::path(raw->out) /
                         fmt::format("function_durations_percentiles.anon.d{:02d}.csv", d + 1);
        if (!write_file(inv, days[d].invocations, error) ||
            !write_file(dur, days[d].durations, error)) {
          std::fprintf(stderr, "sluice simulate: %s\n", error.c_str());
          return 1;
        }
        std::printf("%s\n%s\n", inv.c_str(), dur.c_str());
      }
      return 0;
    }

    if (raw->trace.empty()) {
      std::fprintf(stderr,
                   "sluice simulate: name a trace with --trace FILE (or write one with "
                   "--synthesize N --out DIR)\n");
      return 2;
    }
    std::string text;
    if (!slurp(raw->trace, text, error)) {
      std::fprintf(stderr, "sluice simulate: --trace %s\n", error.c_str());
      return 2;
    }
    sim::Format format{};
    if (!raw->format.empty()) {
      if (!sim::parse_format(raw->format, format)) {
        std::fprintf(stderr, "sluice simulate: --format %s: one of azure2019, azure2021, csv\n",
                     raw->format.c_str());
        return 2;
      }
    } else if (auto g = guess_format(text)) {
      format = *g;
    } else {
      std::fprintf(
          stderr,
          "sluice simulate: %s: its first line is not a header of azure2019, azure2021 or csv; "
          "name the format with --format\n",
          raw->trace.c_str());
      return 2;
    }
    sim::ReadOptions ropts;
    if (raw->spread == "uniform") {
      ropts.spread = sim::Spread::Uniform;
    } else if (raw->spread != "exponential") {
      std::fprintf(stderr, "sluice simulate: --spread %s: exponential or uniform\n",
                   raw->spread.c_str());
      return 2;
    }
    std::string start_error;
    const auto start = config::parse_duration(raw->start_time, &start_error);
    if (!start || start->count() < 0) {
      std::fprintf(stderr, "sluice simulate: --start-time %s: %s\n", raw->start_time.c_str(),
                   start ? "must not be negative" : start_error.c_str());
      return 2;
    }
    std::vector<std::string> policies =
        raw->policies.empty() ? std::vector<std::string>{"kpa"} : raw->policies;
    for (const auto& p : policies) {
      if (p != "kpa") {
        std::fprintf(stderr, "sluice simulate: --policy %s: this build simulates kpa only\n",
                     p.c_str());
        return 2;
      }
    }

    core::FastRandom random(raw->seed);
    sim::TraceOrError read;
    if (format == sim::Format::Azure2019) {
      std::string durations_path =
          raw->durations.empty() ? durations_next_to(raw->trace) : raw->durations;
      std::string durations;
      if (!durations_path.empty() && !slurp(durations_path, durations, error)) {
        std::fprintf(stderr, "sluice simulate: --durations %s\n", error.c_str());
        return 2;
      }
      read = sim::read_azure2019(text, raw->trace, durations, durations_path, ropts, random);
    } else if (format == sim::Format::Azure2021) {
      read = sim::read_azure2021(text, raw->trace, ropts);
    } else {
      read = sim::read_csv(text, raw->trace, ropts);
    }
    if (auto* err = std::get_if<std::string>(&read)) {
      std::fprintf(stderr, "sluice simulate: %s\n", err->c_str());
      return 2;
    }
    const sim::Trace& trace = std::get<sim::Trace>(read);
    text.clear();
    text.shrink_to_fit();

    // Each trace service's setup: the Service of its name in --services, else defaults
    // (with the file's ConfigMaps, when there is a file).
    std::vector<sim::ServiceSetup> setups(trace.services.size());
    sim::ServiceSetup defaults;
    defaults.start_time = *start;
    std::map<std::string, sim::ServiceSetup> named;
    if (!raw->services.empty()) {
      auto loaded = service::load_service_files({raw->services});
      if (!loaded.errors.empty()) {
        for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.c_str());
        std::fprintf(stderr, "sluice simulate: %zu error(s) in --services\n", loaded.errors.size());
        return 2;
      }
      for (const auto& s : loaded.services) {
        sim::ServiceSetup setup = defaults;
        setup.scaling = s.scaling;
        setup.container_concurrency = s.container_concurrency;
        named[s.name] = setup;
      }
    }
    size_t matched = 0;
    for (size_t i = 0; i < trace.services.size(); ++i) {
      auto it = named.find(trace.services[i]);
      matched += it != named.end();
      setups[i] = it != named.end() ? it->second : defaults;
    }

    std::fprintf(
        stderr, "sluice simulate: %s: %zu service(s), %zu invocations over %.0f s; %zu set by %s\n",
        raw->trace.c_str(), trace.services.size(), trace.invocations.size(), trace.length_s,
        matched, raw->services.empty() ? "(no --services)" : raw->services.c_str());
    Progress progress(isatty(STDERR_FILENO) != 0);
    sim::SimOptions sopts;
    sopts.seed = raw->seed;
    sopts.progress = [&progress](double f) { progress(f); };
    core::SteadyTimeSource wall;  // how long the simulation took, for people
    const auto t0 = wall.now();
    const auto results = sim::simulate(trace, setups, sopts);
    const double took = core::to_seconds(wall.now() - t0);
    progress.done();

    // Totals, and per service into --out/results.csv.
    uint64_t requests = 0, cold = 0, events = 0;
    double replica_s = 0, idle_s = 0, worst = 0;
    sim::LatencyHistogram all;
    for (const auto& r : results) {
      requests += r.requests;
      cold += r.cold_starts;
      events += r.scale_events;
      replica_s += r.replica_seconds;
      idle_s += r.idle_replica_seconds;
      worst = std::max(worst, r.added_latency.max());
    }
    std::printf(
        "| policy | services | requests | cold starts | cold-start rate | replica-seconds | idle "
        "replica-seconds | scale events | worst added latency s |\n");
    std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    std::printf("| kpa | %zu | %llu | %llu | %.3f%% | %.0f | %.0f | %llu | %.2f |\n",
                results.size(), static_cast<unsigned long long>(requests),
                static_cast<unsigned long long>(cold),
                requests ? 100.0 * static_cast<double>(cold) / static_cast<double>(requests) : 0.0,
                replica_s, idle_s, static_cast<unsigned long long>(events), worst);
    std::fprintf(stderr, "simulated %.0f s in %.2f s (%.0f× real time)\n", trace.length_s, took,
                 took > 0 ? trace.length_s / took : 0.0);
    if (!raw->out.empty()) {
      std::error_code ec;
      fs::create_directories(raw->out, ec);
      std::string csv =
          "policy,service,requests,cold_starts,added_latency_p50_s,added_latency_p99_s,added_"
          "latency_max_s,"
          "replica_seconds,idle_replica_seconds,scale_events\n";
      for (size_t i = 0; i < results.size(); ++i) {
        const auto& r = results[i];
        csv += fmt::format(
            "kpa,{},{},{},{:.6f},{:.6f},{:.6f},{:.3f},{:.3f},{}\n", trace.services[i], r.requests,
            r.cold_starts, r.added_latency.quantile(0.5), r.added_latency.quantile(0.99),
            r.added_latency.max(), r.replica_seconds, r.idle_replica_seconds, r.scale_events);
      }
      const auto path = fs::path(raw->out) / "results.csv";
      if (!write_file(path, csv, error)) {
        std::fprintf(stderr, "sluice simulate: %s\n", error.c_str());
        return 1;
      }
      std::fprintf(stderr, "wrote %s\n", path.c_str());
    }
    return 0;
  };
}

}  // namespace sluice::cli
