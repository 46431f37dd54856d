// `sluice simulate`: replays a traffic trace through the real autoscaler on a manual clock
// (sim/simulator.h), or writes a synthesized trace (sim/synthesize.h).
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "config/duration.h"
#include "core/file.h"
#include "core/time_source.h"
#include "service/service_file.h"
#include "sim/report.h"
#include "sim/simulator.h"
#include "sim/synthesize.h"
#include "sim/trace.h"

namespace sluice::cli {

namespace {

namespace fs = std::filesystem;

// The largest trace or durations file read (the reader refuses more than 100 M
// invocations anyway): a device or a runaway file is an error, not all of memory.
constexpr size_t kMaxFileBytes = size_t{4} << 30;

bool slurp(const std::string& path, std::string& out, std::string& error) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (!ec && (fs::is_character_file(status) || fs::is_block_file(status))) {
    error = fmt::format("{}: a device, not a trace file", path);
    return false;
  }
  if (!ec && fs::is_regular_file(status) && fs::file_size(path, ec) > kMaxFileBytes && !ec) {
    error = fmt::format("{}: larger than {}: a trace this large is refused", path,
                        core::size_text(kMaxFileBytes));
    return false;
  }
  core::FileText read = core::read_file(path, kMaxFileBytes, "a trace this large is refused");
  if (!read.text) {
    error = fmt::format("{}: {}", path, read.error);
    return false;
  }
  out = std::move(*read.text);
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

// A bar on a terminal: the mean of the policies' fractions (they run on several threads).
class Progress {
 public:
  Progress(bool on, size_t runs) : on_(on), fractions_(runs, 0.0) {}
  void update(size_t run, double fraction) {
    if (!on_)
      return;
    std::lock_guard lock(mu_);  // a few calls a run: not a hot path
    fractions_[run] = fraction;
    double sum = 0;
    for (double f : fractions_) sum += f;
    const double mean = sum / static_cast<double>(fractions_.size());
    const int filled = static_cast<int>(mean * 40);
    std::fprintf(stderr, "\r  [%-40s] %3d%%", std::string(static_cast<size_t>(filled), '#').c_str(),
                 static_cast<int>(mean * 100));
    std::fflush(stderr);
  }
  void done() {
    if (on_)
      std::fprintf(stderr, "\r%60s\r", "");
  }

 private:
  bool on_;
  std::mutex mu_;
  std::vector<double> fractions_;
};

// A policy to compare: Knative's defaults with a keep-alive policy (kpa: none), or the
// --services file's annotations as written.
struct Policy {
  enum class Kind { Defaults, Services };
  std::string name;
  Kind kind = Kind::Defaults;
  autoscaler::KeepAliveSpec keep_alive;
};

std::optional<Policy> parse_policy(const std::string& name, std::string& error) {
  Policy p;
  p.name = name;
  if (name == "services") {
    p.kind = Policy::Kind::Services;
    return p;
  }
  // fixed-keepalive:10m is the keep-alive annotation's fixed:10m.
  const std::string prefix = "fixed-keepalive:";
  const bool fixed = name.rfind(prefix, 0) == 0;
  std::string why;
  auto k = autoscaler::parse_keep_alive(fixed ? "fixed:" + name.substr(prefix.size()) : name, &why);
  if (!k) {
    error = fixed || name.rfind("histogram:", 0) == 0
                ? why
                : fmt::format(
                      "\"{}\": one of kpa (Knative's defaults), services (the --services "
                      "annotations), fixed-keepalive:DURATION, histogram, "
                      "histogram:FALLBACK",
                      name);
    return std::nullopt;
  }
  p.keep_alive = *k;
  return p;
}

// Plots want about a day's worth of minutes: one point a minute, coarser for long traces.
uint32_t series_step(double length_s) {
  return static_cast<uint32_t>(std::max(60.0, std::ceil(length_s / 1440.0 / 60.0) * 60.0));
}

}  // namespace

Action add_simulate_command(CLI::App& app) {
  struct Raw {
    std::string trace;
    std::string format;
    std::string durations;
    std::string services;
    std::vector<std::string> policies;
    std::vector<std::string> plots;
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
  app.add_option("--out", raw->out,
                 "Directory for results.csv, report.html and its plots (or, with --synthesize, "
                 "the trace)");
  app.add_option("--plot", raw->plots,
                 "A service to plot over time in the report (repeatable; default: the 4 with "
                 "the most cold starts under the first policy)");
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
      const bool written =
          sim::synthesize({raw->synthesize, raw->days}, random, [&](uint32_t d, sim::SynthDay day) {
            const auto inv = fs::path(raw->out) /
                             fmt::format("invocations_per_function_md.anon.d{:02d}.csv", d + 1);
            const auto dur = fs::path(raw->out) /
                             fmt::format("function_durations_percentiles.anon.d{:02d}.csv", d + 1);
            if (!write_file(inv, day.invocations, error) || !write_file(dur, day.durations, error))
              return false;
            std::printf("%s\n%s\n", inv.c_str(), dur.c_str());
            std::fflush(stdout);
            return true;
          });
      if (!written) {
        std::fprintf(stderr, "sluice simulate: %s\n", error.c_str());
        return 1;
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
    std::vector<std::string> names = raw->policies;
    if (names.empty()) {
      names = {"kpa", "fixed-keepalive:10m", "histogram"};
      if (!raw->services.empty())
        names.insert(names.begin() + 1, "services");
    }
    std::vector<Policy> policies;
    for (const auto& n : names) {
      auto p = parse_policy(n, error);
      if (!p) {
        std::fprintf(stderr, "sluice simulate: --policy %s\n", error.c_str());
        return 2;
      }
      if (p->kind == Policy::Kind::Services && raw->services.empty()) {
        std::fprintf(stderr,
                     "sluice simulate: --policy services: the annotations come from --services "
                     "FILE: name one\n");
        return 2;
      }
      policies.push_back(*p);
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
    std::vector<size_t> plotted;
    for (const auto& name : raw->plots) {
      auto it = std::find(trace.services.begin(), trace.services.end(), name);
      if (it == trace.services.end()) {
        std::fprintf(stderr, "sluice simulate: --plot %s: no such service in %s\n", name.c_str(),
                     raw->trace.c_str());
        return 2;
      }
      plotted.push_back(static_cast<size_t>(it - trace.services.begin()));
    }
    text.clear();
    text.shrink_to_fit();

    // Each trace service's setup: containerConcurrency from the Service of its name in
    // --services (the app's own property, under every policy); scaling as the policy says.
    std::map<std::string, service::ServiceSpec> named;
    if (!raw->services.empty()) {
      auto loaded = service::load_service_files({raw->services});
      if (!loaded.errors.empty()) {
        for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.c_str());
        std::fprintf(stderr, "sluice simulate: %zu error(s) in --services\n", loaded.errors.size());
        return 2;
      }
      for (auto& s : loaded.services) named[s.name] = std::move(s);
    }
    size_t matched = 0;
    std::vector<const service::ServiceSpec*> spec_of(trace.services.size(), nullptr);
    for (size_t i = 0; i < trace.services.size(); ++i) {
      auto it = named.find(trace.services[i]);
      if (it != named.end()) {
        spec_of[i] = &it->second;
        ++matched;
      }
    }
    // Knative's defaults for a containerConcurrency (its target follows from it).
    std::map<uint32_t, autoscaler::ScalingSpec> defaults_for;
    auto knative_defaults = [&](uint32_t cc) {
      auto it = defaults_for.find(cc);
      if (it == defaults_for.end())
        it = defaults_for.emplace(cc, service::scaling_from_annotations({}, {}, cc).scaling).first;
      return it->second;
    };
    auto setups_for = [&](const Policy& p) {
      std::vector<sim::ServiceSetup> setups(trace.services.size());
      for (size_t i = 0; i < setups.size(); ++i) {
        sim::ServiceSetup& su = setups[i];
        su.start_time = *start;
        su.container_concurrency = spec_of[i] ? spec_of[i]->container_concurrency : 0;
        if (p.kind == Policy::Kind::Services && spec_of[i]) {
          su.scaling = spec_of[i]->scaling;
        } else {
          su.scaling = knative_defaults(su.container_concurrency);
          su.scaling.keep_alive = p.keep_alive;
        }
      }
      return setups;
    };

    std::fprintf(
        stderr, "sluice simulate: %s: %zu service(s), %zu invocations over %.0f s; %zu set by %s\n",
        raw->trace.c_str(), trace.services.size(), trace.invocations.size(), trace.length_s,
        matched, raw->services.empty() ? "(no --services)" : raw->services.c_str());
    // Time series for the report: for every service (the default plots are picked after
    // the run), unless that would hold more than ~256 MiB; then for the --plot ones only.
    std::vector<uint32_t> series_of;
    const double series_bytes = static_cast<double>(trace.services.size()) *
                                (trace.length_s / series_step(trace.length_s)) *
                                sizeof(sim::SeriesPoint) * static_cast<double>(policies.size());
    if (!raw->out.empty() && series_bytes > 256.0 * 1024 * 1024) {
      for (size_t i : plotted) series_of.push_back(static_cast<uint32_t>(i));
      if (series_of.empty()) {
        std::fprintf(stderr,
                     "sluice simulate: %zu services: the report plots only services named "
                     "with --plot (none named)\n",
                     trace.services.size());
        series_of.push_back(UINT32_MAX);  // record none
      }
    }
    Progress progress(isatty(STDERR_FILENO) != 0, policies.size());
    core::SteadyTimeSource wall;  // how long the simulation took, for people
    const auto t0 = wall.now();
    // The policies are independent runs over the same trace, and so are the services in
    // a run: with fewer policies than cores each policy's services are split into shards
    // of about equal work (invocations, plus a second's decision per simulated second),
    // one thread per run, as many at once as there are cores.
    std::vector<std::vector<sim::ServiceResult>> results(policies.size());
    // Set up before the threads start (setups_for fills a shared cache).
    std::vector<std::vector<sim::ServiceSetup>> policy_setups;
    for (const auto& p : policies) policy_setups.push_back(setups_for(p));
    const size_t cores = std::max<size_t>(1, std::thread::hardware_concurrency());
    // A shard a core (measured: four shards on two cores took longer than two: each
    // shard reads the whole trace and skips the others' requests).
    const size_t shards =
        std::max<size_t>(1, std::min(trace.services.size(), cores / policies.size()));
    std::vector<std::vector<uint32_t>> shard_services(shards);
    if (shards > 1) {
      std::vector<double> work(trace.services.size(), trace.length_s);
      for (const auto& inv : trace.invocations) work[inv.service] += 1;
      std::vector<uint32_t> order(trace.services.size());
      for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(),
                       [&](uint32_t a, uint32_t b) { return work[a] > work[b]; });
      std::vector<double> load(shards, 0);
      for (uint32_t i : order) {
        const size_t k =
            static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
        shard_services[k].push_back(i);
        load[k] += work[i];
      }
      for (auto& v : shard_services) std::sort(v.begin(), v.end());
    }
    const size_t units = policies.size() * shards;
    std::vector<std::vector<sim::ServiceResult>> unit_results(units);
    const size_t workers = std::min(units, cores);
    {
      std::atomic<size_t> next_unit{0};
      std::vector<std::thread> threads;
      for (size_t w = 0; w < workers; ++w) {
        threads.emplace_back([&] {
          for (size_t u; (u = next_unit.fetch_add(1)) < units;) {
            const size_t i = u / shards;
            sim::SimOptions sopts;
            sopts.seed = raw->seed;
            sopts.progress = [&progress, i](double f) { progress.update(i, f); };
            sopts.series_step_s = raw->out.empty() ? 0 : series_step(trace.length_s);
            sopts.series_of = series_of;
            sopts.services = shard_services[u % shards];
            unit_results[u] = sim::simulate(trace, policy_setups[i], sopts);
            progress.update(i, 1);
          }
        });
      }
      for (auto& t : threads) t.join();
    }
    for (size_t p = 0; p < policies.size(); ++p) {
      if (shards == 1) {
        results[p] = std::move(unit_results[p]);
        continue;
      }
      results[p].resize(trace.services.size());
      for (size_t k = 0; k < shards; ++k)
        for (uint32_t i : shard_services[k])
          results[p][i] = std::move(unit_results[p * shards + k][i]);
    }
    const double took = core::to_seconds(wall.now() - t0);
    progress.done();

    std::printf(
        "| policy | services | requests | cold starts | cold-start rate | replica-seconds | idle "
        "replica-seconds | scale events | worst added latency s |\n");
    std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t p = 0; p < policies.size(); ++p) {
      const sim::Totals t = sim::total(results[p]);
      std::printf(
          "| %s | %zu | %llu | %llu | %.3f%% | %.0f | %.0f | %llu | %.2f |\n",
          policies[p].name.c_str(), results[p].size(), static_cast<unsigned long long>(t.requests),
          static_cast<unsigned long long>(t.cold_starts),
          t.requests ? 100.0 * static_cast<double>(t.cold_starts) / static_cast<double>(t.requests)
                     : 0.0,
          t.replica_seconds, t.idle_replica_seconds,
          static_cast<unsigned long long>(t.scale_events), t.worst_added_latency_s);
    }
    const double simulated = trace.length_s * static_cast<double>(policies.size());
    std::fprintf(stderr, "simulated %zu × %.0f s in %.2f s (%.0f× real time, %zu thread(s))\n",
                 policies.size(), trace.length_s, took, took > 0 ? simulated / took : 0.0, workers);
    if (!raw->out.empty()) {
      std::error_code ec;
      fs::create_directories(raw->out, ec);
      std::string csv =
          "policy,service,requests,cold_starts,added_latency_p50_s,added_latency_p99_s,added_"
          "latency_max_s,"
          "replica_seconds,idle_replica_seconds,scale_events\n";
      for (size_t p = 0; p < policies.size(); ++p) {
        for (size_t i = 0; i < results[p].size(); ++i) {
          const auto& r = results[p][i];
          csv += fmt::format("{},{},{},{},{:.6f},{:.6f},{:.6f},{:.3f},{:.3f},{}\n",
                             policies[p].name, trace.services[i], r.requests, r.cold_starts,
                             r.added_latency.quantile(0.5), r.added_latency.quantile(0.99),
                             r.added_latency.max(), r.replica_seconds, r.idle_replica_seconds,
                             r.scale_events);
        }
      }
      const auto path = fs::path(raw->out) / "results.csv";
      if (!write_file(path, csv, error)) {
        std::fprintf(stderr, "sluice simulate: %s\n", error.c_str());
        return 1;
      }
      std::fprintf(stderr, "wrote %s\n", path.c_str());

      sim::ReportInput report;
      report.title = fs::path(raw->trace).filename().string();
      report.services = trace.services;
      report.series_step_s = series_step(trace.length_s);
      for (size_t p = 0; p < policies.size(); ++p)
        report.runs.push_back({policies[p].name, std::move(results[p])});
      if (!plotted.empty())
        report.plotted = plotted;
      else if (series_of.empty())
        report.plotted = sim::pick_services(report.runs.front(), 4);
      std::vector<std::pair<fs::path, std::string>> files = {
          {fs::path(raw->out) / "report.html", sim::html_report(report)},
          {fs::path(raw->out) / "tradeoff.svg", sim::tradeoff_svg(report)}};
      for (size_t i = 0; i < report.plotted.size(); ++i)
        files.emplace_back(fs::path(raw->out) / fmt::format("service-{}.svg", i + 1),
                           sim::service_svg(report, report.plotted[i]));
      for (const auto& [file, body] : files) {
        if (!write_file(file, body, error)) {
          std::fprintf(stderr, "sluice simulate: %s\n", error.c_str());
          return 1;
        }
      }
      std::fprintf(stderr, "wrote %s (and its plots as .svg next to it)\n",
                   files.front().first.c_str());
    }
    return 0;
  };
}

}  // namespace sluice::cli
