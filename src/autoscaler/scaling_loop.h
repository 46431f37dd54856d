// autoscaler/scaling_loop.h
//
// The autoscaler's whole loop, for every runtime (`sluice run`'s local processes and a
// Kubernetes Deployment alike):
//
//   activators ──stat(), healthy()──▶ ┐
//   StatScraper (sample of ready pods, 1 s) ──▶ RevisionAutoscaler per revision
//        ──2 s tick, or at once on a first request (poke)──▶ Scaler::scale(want)
//        (or at once when a sample between ticks means more pods: see below)
//   runtime ──set_pods(ready targets, starting)──▶ (what to scrape, how many are starting)
//
// Stats: queue-proxy scrapes use Knative's sample size and are scaled to the ready
// population; a sample that is incomplete records nothing (as Knative). Requests the
// activator proxied are subtracted from the scrape, because the activator's own reports
// count them. Effective capacity: `ready` for a decision is what the activators hold
// healthy when they say so (Sluice's activators carry it), else the runtime's ready pods.
//
// Early scale-up: Knative decides only at its 2 s tick, so a step in load waits up to
// 2 s before anything is asked for. Here a sample that exceeds what the current want
// carries at target is tried on a copy of the revision's autoscaler; if that decision
// scales up, it is made now (the tick would have made the same one, later). Scale-down
// only ever happens at a tick.
//
// Ports: Scaler (own replicas: set desired replicas) and StatScraper (fetch queue-proxy
// stats) are interfaces because the local runtime, the Kubernetes scaler and the unit
// tests' fakes each implement them.
//
// Threading: single owner: every call on the executor given at construction. Time comes
// from the injected TimeSource (a ManualTimeSource in tests runs the ticks); randomness
// (which pods to sample) from the injected Random.
#pragma once

#include <prometheus/metric_family.h>

#include <boost/asio/any_io_executor.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "autoscaler/revision_autoscaler.h"
#include "core/random.h"
#include "core/timer.h"

namespace sluice::autoscaler {

// What owns a revision's replicas.
class Scaler {
 public:
  // `d.want` replicas should run (ready + starting). `poke`: decided at once on a
  // revision's first request, not at a tick. Returns the replicas it will run (a runtime
  // may cap `want`, e.g. one process per fixed port).
  virtual int32_t scale(const std::string& revision, const ScaleDecision& d, bool poke) = 0;

 protected:
  ~Scaler() = default;
};

// One scrape of a sample of pods, already summed: revision-wide would be this times
// population / pods.
struct ScrapeSample {
  double concurrency = 0;  // not counting requests the activator proxied
  double rps = 0;
  int pods = 0;  // how many answered
};

class StatScraper {
 public:
  using Done = std::function<void(std::optional<ScrapeSample>)>;  // nullopt: a pod failed
  virtual void scrape(std::vector<std::string> targets, Done done) = 0;

 protected:
  ~StatScraper() = default;
};

struct LoopOptions {
  core::Duration scrape_interval = std::chrono::seconds(1);
  core::Duration tick_interval = std::chrono::seconds(2);
  // An activator's healthy count older than this no longer says anything.
  core::Duration healthy_ttl = std::chrono::seconds(5);
};

class ScalingLoop {
 public:
  ScalingLoop(core::TimeSource& time,
              boost::asio::any_io_executor executor,
              Scaler& scaler,
              StatScraper& scraper,
              core::Random& random,
              LoopOptions options = {});
  ~ScalingLoop();
  ScalingLoop(const ScalingLoop&) = delete;
  ScalingLoop& operator=(const ScalingLoop&) = delete;

  // Registers (or re-specs: windows restart) a revision "ns/name". Its first want is the
  // bounded initial scale (last_want()). `configuration` labels its metrics.
  void add(const std::string& revision, const std::string& configuration, ScalingSpec spec);
  void remove(const std::string& revision);
  bool has(const std::string& revision) const { return revisions_.count(revision) != 0; }

  // The runtime's view: the ready pods' stat targets ("host:port").
  void set_pods(const std::string& revision, std::vector<std::string> ready_targets);
  // The pods one activator (`source`) holds healthy (effective capacity) and those it
  // holds quarantined. Several activators may hold the same pod: the revision's ready
  // count is the union.
  void set_healthy(const std::string& revision,
                   const std::string& source,
                   std::vector<std::string> healthy_pods,
                   std::vector<std::string> quarantined_pods = {});
  // An activator's concurrency and requests for the last second. A revision at zero
  // with load is decided at once (Knative's poke).
  void stat(const std::string& revision, double concurrency, double rps);
  // The SKS mode (Kubernetes): scale to zero waits out the grace period in Proxy mode.
  void set_proxied(const std::string& revision, bool proxied);

  // Starts the scrape and decide ticks; stop() ends them (no more Scaler calls).
  void start();
  void stop();

  // What the last decision was, per revision (metrics, status); null: unknown revision.
  const ScaleDecision* last(const std::string& revision) const;
  // The replicas the Scaler last said it runs (before any decision: the initial scale).
  int32_t last_want(const std::string& revision) const;
  // The `ready` the last decision used.
  int32_t ready(const std::string& revision) const;
  // Pods some activator holds quarantined now: running, but no capacity (a runtime
  // starts that many more).
  int32_t quarantined(const std::string& revision) const;
  const ScalingSpec* spec(const std::string& revision) const;
  std::vector<std::string> revisions() const;

  // Autoscaler metrics in Prometheus text (Knative's autoscaler_* gauges).
  std::string metrics_text() const;
  std::vector<prometheus::MetricFamily> metric_families() const;

 private:
  struct Revision;
  void tick();
  void scrape(Revision& r);
  void decide(Revision& r, bool poke);
  // A sample between ticks that means more pods now decides at once (scale-up only).
  void scale_up_early(Revision& r, double concurrency, double rps);
  int32_t effective_ready(const Revision& r) const;

  core::TimeSource& time_;
  boost::asio::any_io_executor executor_;
  Scaler& scaler_;
  StatScraper& scraper_;
  core::Random& random_;
  LoopOptions opts_;
  core::Timer timer_;
  // Found by key on every stat and scrape; decided in key order (deterministic, as the
  // metrics list them): a hash map owns them, a sorted vector orders them.
  std::unordered_map<std::string, std::shared_ptr<Revision>> revisions_;
  std::vector<Revision*> ordered_;
  core::TimePoint next_scrape_, next_decide_;
  bool running_ = false;
  uint64_t early_decisions_ = 0;  // scale-ups decided between ticks
};

// Knative's scrape client: GET /metrics asking for protobuf from each target in turn.
class HttpStatScraper final : public StatScraper {
 public:
  explicit HttpStatScraper(boost::asio::any_io_executor executor,
                           core::Duration timeout = std::chrono::seconds(1))
      : executor_(std::move(executor)), timeout_(timeout) {}
  void scrape(std::vector<std::string> targets, Done done) override;

 private:
  boost::asio::any_io_executor executor_;
  core::Duration timeout_;
};

}  // namespace sluice::autoscaler
