#include "autoscaler/scaling_loop.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <set>

#include "config/endpoints_file.h"
#include "http/client.h"
#include "metrics/registry.h"
#include "stats/stat.pb.h"

namespace sluice::autoscaler {

namespace asio = boost::asio;

struct ScalingLoop::Revision : std::enable_shared_from_this<Revision> {
  Revision(std::string k, std::string config, ScalingSpec s, core::TimePoint now)
      : key(std::move(k)),
        config_name(std::move(config)),
        scaler(s, now),
        want(scaler.last_want()) {}
  std::string key;
  std::string config_name;
  RevisionAutoscaler scaler;
  int32_t want;  // what the Scaler runs
  int32_t ready = 0;
  std::vector<std::string> targets;
  struct Healthy {
    std::vector<std::string> pods, quarantined;
    core::TimePoint at;
  };
  std::map<std::string, Healthy> healthy;  // by activator
  ScaleDecision last;
  bool scraping = false;
};

ScalingLoop::ScalingLoop(core::TimeSource& time,
                         asio::any_io_executor executor,
                         Scaler& scaler,
                         StatScraper& scraper,
                         core::Random& random,
                         LoopOptions options)
    : time_(time),
      executor_(executor),
      scaler_(scaler),
      scraper_(scraper),
      random_(random),
      opts_(options),
      timer_(time, executor) {}

ScalingLoop::~ScalingLoop() = default;

void ScalingLoop::add(const std::string& revision,
                      const std::string& configuration,
                      ScalingSpec spec) {
  auto r = std::make_shared<Revision>(revision, configuration, spec, time_.now());
  auto at = std::lower_bound(ordered_.begin(), ordered_.end(), revision,
                             [](const Revision* a, const std::string& k) { return a->key < k; });
  if (auto it = revisions_.find(revision); it != revisions_.end()) {
    // A new spec restarts the windows; what runs and what the activators see stays.
    r->want = it->second->want;
    r->targets = std::move(it->second->targets);
    r->healthy = std::move(it->second->healthy);
    *at = r.get();
  } else {
    ordered_.insert(at, r.get());
  }
  revisions_[revision] = std::move(r);
}

void ScalingLoop::remove(const std::string& revision) {
  auto it = revisions_.find(revision);
  if (it == revisions_.end())
    return;
  ordered_.erase(std::find(ordered_.begin(), ordered_.end(), it->second.get()));
  revisions_.erase(it);
}

void ScalingLoop::set_pods(const std::string& revision, std::vector<std::string> ready_targets) {
  if (auto it = revisions_.find(revision); it != revisions_.end())
    it->second->targets = std::move(ready_targets);
}

void ScalingLoop::set_healthy(const std::string& revision,
                              const std::string& source,
                              std::vector<std::string> healthy_pods,
                              std::vector<std::string> quarantined_pods) {
  if (auto it = revisions_.find(revision); it != revisions_.end())
    it->second->healthy[source] = {std::move(healthy_pods), std::move(quarantined_pods),
                                   time_.now()};
}

int32_t ScalingLoop::quarantined(const std::string& revision) const {
  auto it = revisions_.find(revision);
  if (it == revisions_.end())
    return 0;
  const auto now = time_.now();
  std::set<std::string> pods, healthy;
  for (const auto& [source, h] : it->second->healthy) {
    if (now - h.at > opts_.healthy_ttl)
      continue;
    pods.insert(h.quarantined.begin(), h.quarantined.end());
    healthy.insert(h.pods.begin(), h.pods.end());
  }
  // A pod one activator quarantined and another holds healthy still serves.
  int32_t n = 0;
  for (const auto& p : pods) n += healthy.count(p) == 0;
  return n;
}

void ScalingLoop::stat(const std::string& revision, double concurrency, double rps) {
  auto it = revisions_.find(revision);
  if (it == revisions_.end())
    return;
  Revision& r = *it->second;
  const bool poke = r.scaler.wants_poke(concurrency);
  r.scaler.record(time_.now(), concurrency, rps);
  if (poke && running_)
    decide(r, true);  // scale from zero now, not at the next tick
  else
    scale_up_early(r, concurrency, rps);
}

void ScalingLoop::scale_up_early(Revision& r, double concurrency, double rps) {
  if (!running_ || r.want <= 0)
    return;  // at zero the poke decides
  const double load = r.scaler.spec().metric == Metric::Rps ? rps : concurrency;
  // Cheap test first: one source's share already exceeds what `want` pods carry.
  if (load <= r.want * r.scaler.target_per_pod())
    return;
  const auto now = time_.now();
  RevisionAutoscaler probe = r.scaler;  // decide() moves the windows' state: try on a copy
  // Not more than what runs, nor than what was last asked for (a runtime may cap it).
  if (probe.decide(now, effective_ready(r)).want <= std::max(r.want, r.last.want))
    return;
  ++early_decisions_;
  decide(r, false);
}

void ScalingLoop::set_proxied(const std::string& revision, bool proxied) {
  if (auto it = revisions_.find(revision); it != revisions_.end())
    it->second->scaler.set_proxied(proxied, time_.now());
}

void ScalingLoop::start() {
  running_ = true;
  next_scrape_ = next_decide_ = time_.now();
  tick();
}

void ScalingLoop::stop() {
  running_ = false;
  timer_.cancel();
}

void ScalingLoop::tick() {
  if (!running_)
    return;
  const auto now = time_.now();
  if (now >= next_scrape_) {
    next_scrape_ = now + opts_.scrape_interval;
    // By index: a Scaler may add a revision while it is called.
    for (size_t i = 0; i < ordered_.size(); ++i) scrape(*ordered_[i]);
  }
  if (now >= next_decide_) {
    next_decide_ = now + opts_.tick_interval;
    for (size_t i = 0; i < ordered_.size(); ++i) decide(*ordered_[i], false);
  }
  timer_.expires_at(std::min(next_scrape_, next_decide_));
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec)
      tick();
  });
}

void ScalingLoop::scrape(Revision& r) {
  // Knative's scraper: a sample of the ready pods, scaled to the population.
  if (r.targets.empty() || r.scraping)
    return;
  std::vector<std::string> sample = r.targets;
  const auto n = std::min(sample.size(),
                          static_cast<size_t>(sample_size(static_cast<int32_t>(sample.size()))));
  // n of them uniformly (the first n steps of a Fisher-Yates shuffle); all of them when
  // the sample is the population (most revisions: fewer than 4 pods).
  if (n < sample.size()) {
    for (size_t i = 0; i < n; ++i)
      std::swap(sample[i], sample[i + random_.uniform(sample.size() - i)]);
    sample.resize(n);
  }
  r.scraping = true;
  const double population = static_cast<double>(r.targets.size());
  const size_t asked = sample.size();
  // The revision, not the loop, is what the answer needs: it goes with remove(), a new
  // spec and the loop's end alike (an answer for it then is dropped).
  scraper_.scrape(std::move(sample), [this, weak = std::weak_ptr<Revision>(r.shared_from_this()),
                                      population, asked](std::optional<ScrapeSample> got) {
    const auto held = weak.lock();
    if (!held)
      return;
    Revision& rev = *held;
    rev.scraping = false;
    // Knative records nothing when the sample is incomplete.
    if (!got || got->pods != static_cast<int>(asked) || got->pods == 0 || !running_)
      return;
    const double scale = population / got->pods;
    // (the difference of two averages can come out a hair below zero)
    const double concurrency = std::max(0.0, got->concurrency * scale);
    const double rps = std::max(0.0, got->rps * scale);
    rev.scaler.record(time_.now(), concurrency, rps);
    scale_up_early(rev, concurrency, rps);
  });
}

int32_t ScalingLoop::effective_ready(const Revision& r) const {
  const auto now = time_.now();
  const Revision::Healthy* only = nullptr;  // the one fresh source (the common case)
  size_t fresh = 0;
  for (const auto& [source, h] : r.healthy) {
    if (now - h.at <= opts_.healthy_ttl) {
      only = &h;
      ++fresh;
    }
  }
  // Activators that say nothing of their pods (Knative's): the runtime's readiness.
  if (fresh == 0)
    return static_cast<int32_t>(r.targets.size());
  // One activator's list has each pod once; several may share pods: their union.
  if (fresh == 1)
    return static_cast<int32_t>(only->pods.size());
  std::set<std::string> pods;
  for (const auto& [source, h] : r.healthy)
    if (now - h.at <= opts_.healthy_ttl)
      pods.insert(h.pods.begin(), h.pods.end());
  return static_cast<int32_t>(pods.size());
}

void ScalingLoop::decide(Revision& r, bool poke) {
  r.ready = effective_ready(r);
  r.last = r.scaler.decide(time_.now(), r.ready);
  r.want = scaler_.scale(r.key, r.last, poke);
}

const ScaleDecision* ScalingLoop::last(const std::string& revision) const {
  auto it = revisions_.find(revision);
  return it == revisions_.end() ? nullptr : &it->second->last;
}

int32_t ScalingLoop::last_want(const std::string& revision) const {
  auto it = revisions_.find(revision);
  return it == revisions_.end() ? 0 : it->second->want;
}

int32_t ScalingLoop::ready(const std::string& revision) const {
  auto it = revisions_.find(revision);
  return it == revisions_.end() ? 0 : it->second->ready;
}

const ScalingSpec* ScalingLoop::spec(const std::string& revision) const {
  auto it = revisions_.find(revision);
  return it == revisions_.end() ? nullptr : &it->second->scaler.spec();
}

std::vector<std::string> ScalingLoop::revisions() const {
  std::vector<std::string> out;
  for (const Revision* r : ordered_) out.push_back(r->key);
  return out;
}

std::vector<prometheus::MetricFamily> ScalingLoop::metric_families() const {
  metrics::Registry registry;
  registry.add([this](std::vector<prometheus::MetricFamily>& out) {
    struct Def {
      const char* name;
      const char* help;
      std::function<double(const Revision&)> value;
    };
    const Def defs[] = {
        {"autoscaler_desired_pods", "Number of pods autoscaler wants to allocate",
         [](const Revision& r) { return r.want; }},
        {"autoscaler_actual_pods", "Number of pods that are allocated currently (ready)",
         [](const Revision& r) { return r.ready; }},
        {"autoscaler_excess_burst_capacity", "Excess burst capacity observed over the panic window",
         [](const Revision& r) { return r.last.kpa.excess_burst_capacity; }},
        {"autoscaler_stable_request_concurrency",
         "Average of requests count per observed pod over the stable window",
         [](const Revision& r) { return r.last.stable; }},
        {"autoscaler_panic_request_concurrency",
         "Average of requests count per observed pod over the panic window",
         [](const Revision& r) { return r.last.panic; }},
        {"autoscaler_target_concurrency_per_pod",
         "The desired number of concurrent requests for each pod",
         [](const Revision& r) { return r.scaler.spec().decider.target; }},
        {"autoscaler_panic_mode", "1 if autoscaler is in panic mode, 0 otherwise",
         [](const Revision& r) { return r.last.kpa.panicking ? 1 : 0; }},
        {"autoscaler_scale_buffer", "Extra replicas kept while there is traffic (fork)",
         [](const Revision& r) { return r.scaler.spec().scale_buffer; }},
    };
    for (const auto& d : defs) {
      auto f = metrics::family(d.name, d.help, prometheus::MetricType::Gauge);
      for (const Revision* r : ordered_) {
        const std::string& key = r->key;
        const auto slash = key.find('/');
        const std::string ns = key.substr(0, slash);
        const std::string name = slash == std::string::npos ? key : key.substr(slash + 1);
        const metrics::Labels labels{{"namespace_name", ns},
                                     {"configuration_name", r->config_name},
                                     {"revision_name", name}};
        f.metric.push_back(metrics::gauge_metric(labels, d.value(*r)));
      }
      out.push_back(std::move(f));
    }
    auto early = metrics::family("sluice_autoscaler_early_scale_ups_total",
                                 "Scale-ups decided between two ticks, on a sample that needed "
                                 "more pods",
                                 prometheus::MetricType::Counter);
    early.metric.push_back(metrics::counter_metric({}, static_cast<double>(early_decisions_)));
    out.push_back(std::move(early));
  });
  return registry.collect();
}

std::string ScalingLoop::metrics_text() const {
  return metrics::serialize(metric_families());
}

// ---------------------------------------------------------------------------------------
// HttpStatScraper

namespace {

http::Task<void> scrape_all(asio::any_io_executor ex,
                            std::vector<std::string> targets,
                            core::Duration timeout,
                            StatScraper::Done done) {
  ScrapeSample sample;
  bool failed = false;
  for (const auto& target : targets) {
    std::string host;
    uint16_t port = 0;
    std::optional<http::tcp::endpoint> ep;
    if (config::split_host_port(target, host, port)) {
      boost::system::error_code ec;
      const auto address = asio::ip::make_address(host, ec);
      if (!ec)
        ep = http::tcp::endpoint(address, port);
    }
    if (!ep) {
      failed = true;
      break;
    }
    const std::string request = fmt::format(
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nAccept: application/protobuf\r\n"
        "Connection: close\r\n\r\n",
        target);
    auto got = co_await http::fetch(ex, *ep, request, timeout, 4096);
    stats::wire::Stat stat;
    if (got.status != 200 || !stat.ParseFromString(got.body)) {
      failed = true;
      break;  // Knative: one failed pod spoils the sample
    }
    ++sample.pods;
    // Requests that came through the activator are counted by its own reports.
    sample.concurrency +=
        stat.average_concurrent_requests() - stat.average_proxied_concurrent_requests();
    sample.rps += stat.request_count() - stat.proxied_request_count();
  }
  done(failed ? std::nullopt : std::optional<ScrapeSample>(sample));
}

}  // namespace

void HttpStatScraper::scrape(std::vector<std::string> targets, Done done) {
  asio::co_spawn(executor_, scrape_all(executor_, std::move(targets), timeout_, std::move(done)),
                 asio::detached);
}

}  // namespace sluice::autoscaler
