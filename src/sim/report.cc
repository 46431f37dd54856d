#include "sim/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace sluice::sim {

namespace {

constexpr double kWidth = 760, kHeight = 340;
constexpr double kLeft = 80, kRight = 170, kTop = 30, kBottom = 50;  // room for labels
// Distinguishable on white and in grey print (Okabe-Ito).
constexpr const char* kColors[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                   "#E69F00", "#56B4E9", "#000000", "#F0E442"};

const char* color(size_t i) {
  return kColors[i % std::size(kColors)];
}

std::string escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// A round step giving about `ticks` ticks from 0 to `max` (1, 2 or 5 times a power of 10).
double nice_step(double max, int ticks) {
  if (max <= 0)
    return 1;
  const double raw = max / ticks;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= raw)
      return m * p;
  return 10 * p;
}

std::string number(double v) {
  if (v >= 1e9)
    return fmt::format("{:.3g} G", v / 1e9);
  if (v >= 1e6)
    return fmt::format("{:.3g} M", v / 1e6);
  if (v >= 1e4)
    return fmt::format("{:.3g} k", v / 1e3);
  return fmt::format("{:.4g}", v);
}

// Axes from 0 to the maxima, with ticks and titles; maps data to the plot area.
struct Frame {
  double x_max, y_max;
  double x(double v) const { return kLeft + v / x_max * (kWidth - kLeft - kRight); }
  double y(double v) const { return kHeight - kBottom - v / y_max * (kHeight - kTop - kBottom); }

  std::string axes(const std::string& x_title, const std::string& y_title) const {
    std::string s;
    s += fmt::format(
        "<line x1='{0}' y1='{1}' x2='{2}' y2='{1}' stroke='#333'/>"
        "<line x1='{0}' y1='{1}' x2='{0}' y2='{3}' stroke='#333'/>",
        kLeft, kHeight - kBottom, kWidth - kRight, kTop);
    const double xs = nice_step(x_max, 6), ys = nice_step(y_max, 5);
    for (double v = 0; v <= x_max * 1.0001; v += xs)
      s += fmt::format(
          "<line x1='{0:.1f}' y1='{1}' x2='{0:.1f}' y2='{2}' stroke='#333'/>"
          "<text x='{0:.1f}' y='{3}' text-anchor='middle'>{4}</text>",
          x(v), kHeight - kBottom, kHeight - kBottom + 4, kHeight - kBottom + 18, number(v));
    for (double v = 0; v <= y_max * 1.0001; v += ys)
      s += fmt::format(
          "<line x1='{0}' y1='{1:.1f}' x2='{2}' y2='{1:.1f}' stroke='#ddd'/>"
          "<text x='{3}' y='{4:.1f}' text-anchor='end'>{5}</text>",
          kLeft, y(v), kWidth - kRight, kLeft - 6, y(v) + 4, number(v));
    s += fmt::format("<text x='{}' y='{}' text-anchor='middle'>{}</text>",
                     (kLeft + kWidth - kRight) / 2, kHeight - 10, escape(x_title));
    s +=
        fmt::format("<text transform='translate(16 {}) rotate(-90)' text-anchor='middle'>{}</text>",
                    (kTop + kHeight - kBottom) / 2, escape(y_title));
    return s;
  }
};

std::string svg_open(const std::string& title) {
  return fmt::format(
      "<svg xmlns='http://www.w3.org/2000/svg' width='{0}' height='{1}' viewBox='0 0 {0} {1}' "
      "font-family='sans-serif' font-size='12'><rect width='100%' height='100%' fill='white'/>"
      "<text x='{2}' y='18' font-weight='bold'>{3}</text>",
      kWidth, kHeight, kLeft, escape(title));
}

std::string legend(size_t i, const std::string& label, bool line) {
  const double y = kTop + 10 + 18 * static_cast<double>(i);
  const double x = kWidth - kRight + 14;
  const char* c = label == "arrivals" ? "#bbb" : color(i);
  std::string s =
      line
          ? fmt::format("<line x1='{0}' y1='{1}' x2='{2}' y2='{1}' stroke='{3}' stroke-width='2'/>",
                        x, y, x + 16, c)
          : fmt::format("<circle cx='{}' cy='{}' r='5' fill='{}'/>", x + 8, y, c);
  return s + fmt::format("<text x='{}' y='{}'>{}</text>", x + 22, y + 4, escape(label));
}

}  // namespace

Totals total(const std::vector<ServiceResult>& results) {
  Totals t;
  for (const auto& r : results) {
    t.requests += r.requests;
    t.cold_starts += r.cold_starts;
    t.scale_events += r.scale_events;
    t.replica_seconds += r.replica_seconds;
    t.idle_replica_seconds += r.idle_replica_seconds;
    t.worst_added_latency_s = std::max(t.worst_added_latency_s, r.added_latency.max());
  }
  return t;
}

std::vector<size_t> pick_services(const PolicyRun& first, size_t n) {
  std::vector<size_t> idx(first.results.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    return first.results[a].cold_starts > first.results[b].cold_starts;
  });
  while (!idx.empty() && idx.size() > n) idx.pop_back();
  while (!idx.empty() && first.results[idx.back()].cold_starts == 0 && idx.size() > 1)
    idx.pop_back();
  return idx;
}

std::string tradeoff_svg(const ReportInput& in) {
  std::vector<Totals> t;
  for (const auto& r : in.runs) t.push_back(total(r.results));
  double x_max = 1, y_max = 1;
  for (const auto& v : t) {
    x_max = std::max(x_max, v.idle_replica_seconds / 3600);
    y_max = std::max(y_max, static_cast<double>(v.cold_starts));
  }
  const Frame f{x_max * 1.1, y_max * 1.15};
  std::string s = svg_open("Cold starts vs idle replica-hours, per policy (lower left is better)");
  s += f.axes("idle replica-hours (ready, nothing in flight)", "cold starts");
  for (size_t i = 0; i < t.size(); ++i) {
    const double x = f.x(t[i].idle_replica_seconds / 3600);
    const double y = f.y(static_cast<double>(t[i].cold_starts));
    s += fmt::format(
        "<circle cx='{:.1f}' cy='{:.1f}' r='6' fill='{}'><title>{}: {} cold starts, "
        "{:.0f} idle replica-hours</title></circle>",
        x, y, color(i), escape(in.runs[i].name), t[i].cold_starts,
        t[i].idle_replica_seconds / 3600);
    s +=
        fmt::format("<text x='{:.1f}' y='{:.1f}'>{}</text>", x + 8, y - 8, escape(in.runs[i].name));
    s += legend(i, in.runs[i].name, false);
  }
  return s + "</svg>";
}

std::string service_svg(const ReportInput& in, size_t service) {
  const std::string name = service < in.services.size() ? in.services[service] : "?";
  double y_max = 1, arrivals_max = 1;
  size_t points = 0;
  for (const auto& run : in.runs) {
    if (service >= run.results.size())
      continue;
    const auto& series = run.results[service].series;
    points = std::max(points, series.size());
    for (const auto& p : series) {
      y_max = std::max(y_max, static_cast<double>(p.replicas));
      arrivals_max = std::max(arrivals_max, static_cast<double>(p.arrivals));
    }
  }
  const double hours = static_cast<double>(points) * in.series_step_s / 3600.0;
  const Frame f{std::max(hours, 1e-3), y_max * 1.2};
  std::string s =
      svg_open(fmt::format("{}: replicas per policy, and arrivals (grey, peak {} per "
                           "{} s)",
                           name, number(arrivals_max), in.series_step_s));
  s += f.axes("hours", "replicas");
  // Arrivals as grey bars scaled to the plot's height.
  if (!in.runs.empty() && service < in.runs[0].results.size()) {
    const auto& series = in.runs[0].results[service].series;
    const double w = std::max(0.5, f.x(in.series_step_s / 3600.0) - f.x(0));
    for (size_t i = 0; i < series.size(); ++i) {
      if (series[i].arrivals == 0)
        continue;
      const double h = static_cast<double>(series[i].arrivals) / arrivals_max * f.y_max;
      const double x = f.x(static_cast<double>(i) * in.series_step_s / 3600.0);
      s += fmt::format("<rect x='{:.1f}' y='{:.1f}' width='{:.1f}' height='{:.1f}' fill='#ccc'/>",
                       x, f.y(h), w, f.y(0) - f.y(h));
    }
  }
  for (size_t r = 0; r < in.runs.size(); ++r) {
    if (service >= in.runs[r].results.size())
      continue;
    const auto& series = in.runs[r].results[service].series;
    // A step line: a point only where the count changes.
    std::string path;
    uint32_t last = 0;
    const double offset = 1.5 * static_cast<double>(r);  // equal lines stay visible
    for (size_t i = 0; i < series.size(); ++i) {
      const double x = f.x(static_cast<double>(i) * in.series_step_s / 3600.0);
      const uint32_t v = series[i].replicas;
      if (i == 0)
        path += fmt::format("M{:.1f},{:.1f}", x, f.y(v) - offset);
      else if (v != last)
        path += fmt::format(" H{:.1f} V{:.1f}", x, f.y(v) - offset);
      last = v;
    }
    if (!series.empty())
      path += fmt::format(" H{:.1f}",
                          f.x(static_cast<double>(series.size()) * in.series_step_s / 3600.0));
    s += fmt::format("<path d='{}' fill='none' stroke='{}' stroke-width='1.5'/>", path, color(r));
    s += legend(r, in.runs[r].name, true);
  }
  s += legend(in.runs.size(), "arrivals", true);
  return s + "</svg>";
}

std::string html_report(const ReportInput& in) {
  std::string h =
      "<!doctype html><html><head><meta charset='utf-8'><title>sluice simulate: " +
      escape(in.title) +
      "</title><style>body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
      "text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}"
      "svg{display:block;margin:1em 0}</style></head><body>";
  h += fmt::format(
      "<h1>sluice simulate</h1><p>Trace <code>{}</code>: {} service(s). Each "
      "policy ran the real autoscaler over the whole trace.</p>",
      escape(in.title), in.services.size());
  h += "<table><tr><th>policy</th><th>requests</th><th>cold starts</th><th>cold-start rate</th>"
       "<th>replica-hours</th><th>idle replica-hours</th><th>scale events</th><th>worst added "
       "latency s</th></tr>";
  for (const auto& run : in.runs) {
    const Totals t = total(run.results);
    h += fmt::format(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3f}%</td><td>{:.0f}</td><td>{:.0f}</td>"
        "<td>{}</td><td>{:.2f}</td></tr>",
        escape(run.name), t.requests, t.cold_starts,
        t.requests ? 100.0 * static_cast<double>(t.cold_starts) / static_cast<double>(t.requests)
                   : 0.0,
        t.replica_seconds / 3600, t.idle_replica_seconds / 3600, t.scale_events,
        t.worst_added_latency_s);
  }
  h += "</table>";
  h += tradeoff_svg(in);
  if (!in.plotted.empty()) {
    h += "<h2>Services over time</h2><p>Replicas asked for or running (starting, ready or "
         "draining), the most in each step; grey: arrivals per step.</p>";
    for (size_t s : in.plotted) h += service_svg(in, s);
  }
  // Per service: the plotted ones' numbers under each policy.
  if (!in.plotted.empty()) {
    h += "<table><tr><th>service</th><th>policy</th><th>requests</th><th>cold starts</th>"
         "<th>added latency p99 s</th><th>replica-hours</th><th>idle replica-hours</th></tr>";
    for (size_t s : in.plotted) {
      for (const auto& run : in.runs) {
        if (s >= run.results.size())
          continue;
        const auto& r = run.results[s];
        h += fmt::format(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3f}</td><td>{:.2f}</td>"
            "<td>{:.2f}</td></tr>",
            escape(in.services[s]), escape(run.name), r.requests, r.cold_starts,
            r.added_latency.quantile(0.99), r.replica_seconds / 3600,
            r.idle_replica_seconds / 3600);
      }
    }
    h += "</table>";
  }
  return h + "</body></html>\n";
}

}  // namespace sluice::sim
