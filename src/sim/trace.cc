#include "sim/trace.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <optional>
#include <unordered_map>

namespace sluice::sim {

namespace {

constexpr int kMinutes = 1440;

// Splits one CSV line on commas (the Azure files quote nothing); a trailing \r is dropped.
std::vector<std::string_view> split(std::string_view line) {
  if (!line.empty() && line.back() == '\r')
    line.remove_suffix(1);
  std::vector<std::string_view> out;
  size_t at = 0;
  while (true) {
    const size_t comma = line.find(',', at);
    out.push_back(
        line.substr(at, comma == std::string_view::npos ? std::string_view::npos : comma - at));
    if (comma == std::string_view::npos)
      return out;
    at = comma + 1;
  }
}

// Calls `each(line_number, line)` for every non-empty line; stops at the first error it
// returns.
template <typename F>
std::optional<std::string> each_line(std::string_view text, F&& each) {
  size_t line_no = 0;
  size_t at = 0;
  while (at < text.size()) {
    const size_t nl = text.find('\n', at);
    std::string_view line =
        text.substr(at, nl == std::string_view::npos ? std::string_view::npos : nl - at);
    at = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    if (line.empty() || line == "\r")
      continue;
    if (auto err = each(line_no, line))
      return err;
  }
  return std::nullopt;
}

bool parse_double(std::string_view s, double& out) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  if (s.empty())
    return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size() && std::isfinite(out);
}

bool parse_count(std::string_view s, uint64_t& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size();
}

// Services by name, in order of first appearance.
class Names {
 public:
  uint32_t id(std::string name, std::vector<std::string>& services) {
    auto [it, fresh] = ids_.try_emplace(std::move(name), static_cast<uint32_t>(services.size()));
    if (fresh)
      services.push_back(it->first);
    return it->second;
  }

 private:
  std::unordered_map<std::string, uint32_t> ids_;
};

// One function's execution times: the published percentiles (ms), drawn from linearly
// between the points.
struct DurationDist {
  static constexpr std::array<double, 7> kAt = {0, 0.01, 0.25, 0.50, 0.75, 0.99, 1.0};
  std::array<double, 7> ms{};

  double draw_s(core::Random& random) const {
    const double u = uniform01(random);
    size_t i = 1;
    while (i + 1 < kAt.size() && u > kAt[i]) ++i;
    const double f = (u - kAt[i - 1]) / (kAt[i] - kAt[i - 1]);
    return (ms[i - 1] + f * (ms[i] - ms[i - 1])) / 1000.0;
  }
};

std::string where(std::string_view name, size_t line) {
  return fmt::format("{}:{}", name, line);
}

std::string too_many(std::string_view name, size_t line, const ReadOptions& options) {
  return fmt::format("{}: more than {} invocations; a trace this large is refused",
                     where(name, line), options.max_invocations);
}

// Sorts by arrival, stably, as std::stable_sort would, but in two cheap steps: a stable
// counting sort by minute, then a stable sort inside each minute (a minute's requests fit
// in cache; a day of 47 M requests sorts in a fraction of a global merge sort's time).
void sort_by_arrival(std::vector<Invocation>& v, const ReadOptions& options) {
  auto earlier = [](const Invocation& a, const Invocation& b) { return a.arrival_s < b.arrival_s; };
  if (v.size() < 2 || std::is_sorted(v.begin(), v.end(), earlier))
    return;
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end(), earlier);
  const double first = lo->arrival_s, span = hi->arrival_s - first;
  if (!(span <= options.max_span_s)) {  // refused after this anyway: no minute table for it
    std::stable_sort(v.begin(), v.end(), earlier);
    return;
  }
  auto minute = [first](const Invocation& i) {
    return static_cast<size_t>((i.arrival_s - first) / 60.0);
  };
  std::vector<size_t> start(minute(*hi) + 2, 0);
  for (const auto& i : v) ++start[minute(i) + 1];
  for (size_t m = 1; m < start.size(); ++m) start[m] += start[m - 1];
  std::vector<Invocation> out(v.size());
  std::vector<size_t> next(start.begin(), start.end() - 1);
  for (const auto& i : v) out[next[minute(i)]++] = i;
  for (size_t m = 0; m + 1 < start.size(); ++m)
    std::stable_sort(out.begin() + static_cast<std::ptrdiff_t>(start[m]),
                     out.begin() + static_cast<std::ptrdiff_t>(start[m + 1]), earlier);
  v.swap(out);
}

// What every reader does once its lines are read: the first error, or an empty file,
// else the invocations sorted (and, `from_first_arrival`, its clock started at the first
// one) and the span checked.
TraceOrError finished(Trace t,
                      std::optional<std::string> error,
                      bool no_header,
                      std::string_view name,
                      const ReadOptions& options,
                      bool from_first_arrival) {
  if (error)
    return *std::move(error);
  if (no_header)
    return fmt::format("{}: empty: no header line", name);
  sort_by_arrival(t.invocations, options);
  if (from_first_arrival && !t.invocations.empty()) {
    const double start = t.invocations.front().arrival_s;
    for (auto& i : t.invocations) i.arrival_s -= start;
    t.length_s -= start;
  }
  if (t.length_s > options.max_span_s)
    return fmt::format(
        "{}: the trace spans {:.0f} days (arrivals plus durations); at most {:.0f} are simulated",
        name, t.length_s / 86400, options.max_span_s / 86400);
  return t;
}

}  // namespace

double uniform01(core::Random& random) {
  return static_cast<double>(random.next_u64() >> 11) * 0x1.0p-53;
}

bool parse_format(std::string_view name, Format& out) {
  if (name == "azure2019")
    out = Format::Azure2019;
  else if (name == "azure2021")
    out = Format::Azure2021;
  else if (name == "csv")
    out = Format::Csv;
  else
    return false;
  return true;
}

TraceOrError read_azure2019(std::string_view text,
                            std::string_view name,
                            std::string_view durations,
                            std::string_view durations_name,
                            const ReadOptions& options,
                            core::Random& random) {
  // Durations first, keyed by owner/app/function.
  std::unordered_map<std::string, DurationDist> dists;
  if (!durations.empty()) {
    bool header = true;
    auto err = each_line(
        durations, [&](size_t line_no, std::string_view line) -> std::optional<std::string> {
          const auto f = split(line);
          if (header) {
            header = false;
            if (f.size() < 14 || f[0] != "HashOwner" || f[3] != "Average" ||
                f[7] != "percentile_Average_0" || f[13] != "percentile_Average_100")
              return fmt::format(
                  "{}: not a function_durations_percentiles file: the header must be "
                  "HashOwner,HashApp,"
                  "HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,_1,_25,_50,_75,_"
                  "99,_100",
                  where(durations_name, line_no));
            return std::nullopt;
          }
          if (f.size() != 14)
            return fmt::format("{}: {} fields, the header has 14", where(durations_name, line_no),
                               f.size());
          DurationDist d;
          for (size_t i = 0; i < 7; ++i) {
            if (!parse_double(f[7 + i], d.ms[i]) || d.ms[i] < 0)
              return fmt::format("{}: percentile field {} is '{}', not a duration in ms",
                                 where(durations_name, line_no), 8 + i, f[7 + i]);
            if (i > 0 && d.ms[i] < d.ms[i - 1])
              return fmt::format("{}: the percentiles decrease ({} after {})",
                                 where(durations_name, line_no), d.ms[i], d.ms[i - 1]);
          }
          dists[fmt::format("{}/{}/{}", f[0], f[1], f[2])] = d;
          return std::nullopt;
        });
    if (err)
      return *err;
  }

  Trace t;
  t.length_s = kMinutes * 60.0;
  Names names;
  bool header = true;
  std::vector<double> times;
  auto err =
      each_line(text, [&](size_t line_no, std::string_view line) -> std::optional<std::string> {
        const auto f = split(line);
        if (header) {
          header = false;
          if (f.size() != 4 + kMinutes || f[0] != "HashOwner" || f[1] != "HashApp" ||
              f[2] != "HashFunction" || f[3] != "Trigger" || f[4] != "1")
            return fmt::format(
                "{}: not an invocations_per_function_md file: the header must be HashOwner,HashApp,"
                "HashFunction,Trigger,1,...,1440 ({} fields here)",
                where(name, line_no), f.size());
          return std::nullopt;
        }
        if (f.size() != 4 + kMinutes)
          return fmt::format("{}: {} fields, the header has {}", where(name, line_no), f.size(),
                             4 + kMinutes);
        const uint32_t service = names.id(fmt::format("{}/{}", f[0], f[1]), t.services);
        const auto dist = dists.find(fmt::format("{}/{}/{}", f[0], f[1], f[2]));
        for (int m = 0; m < kMinutes; ++m) {
          uint64_t count = 0;
          if (!parse_count(f[4 + m], count))
            return fmt::format("{}: minute {} is '{}', not a count", where(name, line_no), m + 1,
                               f[4 + m]);
          if (count == 0)
            continue;
          if (t.invocations.size() + count > options.max_invocations)
            return too_many(name, line_no, options);
          // Exponential inter-arrivals given the minute's count are that many uniform
          // points in it: drawn here unordered, put in order by sort_by_arrival with the
          // rest of the minute.
          times.clear();
          for (uint64_t i = 0; i < count; ++i)
            times.push_back(options.spread == Spread::Uniform
                                ? (static_cast<double>(i) + 0.5) * 60.0 / count
                                : uniform01(random) * 60.0);
          for (double at : times)
            t.invocations.push_back(
                {m * 60.0 + at, service,
                 static_cast<float>(dist == dists.end() ? options.default_duration_s
                                                        : dist->second.draw_s(random))});
        }
        return std::nullopt;
      });
  return finished(std::move(t), std::move(err), header, name, options, false);
}

TraceOrError read_azure2021(std::string_view text,
                            std::string_view name,
                            const ReadOptions& options) {
  Trace t;
  Names names;
  bool header = true;
  auto err =
      each_line(text, [&](size_t line_no, std::string_view line) -> std::optional<std::string> {
        const auto f = split(line);
        if (header) {
          header = false;
          if (f.size() != 4 || f[0] != "app" || f[1] != "func" || f[2] != "end_timestamp" ||
              f[3] != "duration")
            return fmt::format(
                "{}: not an Azure 2021 trace: the header must be app,func,end_timestamp,duration",
                where(name, line_no));
          return std::nullopt;
        }
        if (f.size() != 4)
          return fmt::format("{}: {} fields, the header has 4", where(name, line_no), f.size());
        double end = 0, duration = 0;
        if (!parse_double(f[2], end) || end < 0)
          return fmt::format("{}: end_timestamp is '{}', not seconds", where(name, line_no), f[2]);
        if (!parse_double(f[3], duration) || duration < 0 || duration > end)
          return fmt::format("{}: duration is '{}', not seconds between 0 and end_timestamp",
                             where(name, line_no), f[3]);
        if (t.invocations.size() >= options.max_invocations)
          return too_many(name, line_no, options);
        t.invocations.push_back({end - duration, names.id(std::string(f[0]), t.services),
                                 static_cast<float>(duration)});
        t.length_s = std::max(t.length_s, end);
        return std::nullopt;
      });
  // The 2021 file counts from an epoch: its clock starts at its first arrival.
  return finished(std::move(t), std::move(err), header, name, options, true);
}

TraceOrError read_csv(std::string_view text, std::string_view name, const ReadOptions& options) {
  Trace t;
  Names names;
  bool header = true;
  auto err =
      each_line(text, [&](size_t line_no, std::string_view line) -> std::optional<std::string> {
        const auto f = split(line);
        if (header) {
          header = false;
          if (f.size() != 3 || f[0] != "time_s" || f[1] != "service" || f[2] != "duration_s")
            return fmt::format("{}: the header must be time_s,service,duration_s",
                               where(name, line_no));
          return std::nullopt;
        }
        if (f.size() != 3)
          return fmt::format("{}: {} fields, the header has 3", where(name, line_no), f.size());
        double at = 0, duration = 0;
        if (!parse_double(f[0], at) || at < 0)
          return fmt::format("{}: time_s is '{}', not seconds from the start", where(name, line_no),
                             f[0]);
        if (f[1].empty())
          return fmt::format("{}: the service is empty", where(name, line_no));
        if (!parse_double(f[2], duration) || duration < 0)
          return fmt::format("{}: duration_s is '{}', not seconds", where(name, line_no), f[2]);
        if (t.invocations.size() >= options.max_invocations)
          return too_many(name, line_no, options);
        t.invocations.push_back(
            {at, names.id(std::string(f[1]), t.services), static_cast<float>(duration)});
        t.length_s = std::max(t.length_s, at + duration);
        return std::nullopt;
      });
  return finished(std::move(t), std::move(err), header, name, options, false);
}

}  // namespace sluice::sim
