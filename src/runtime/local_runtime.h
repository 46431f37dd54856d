// runtime/local_runtime.h
//
// `sluice run`'s replicas on one machine: for every Service it runs replicas as local
// processes on free loopback ports, feeds the embedded activator their addresses, and
// runs as many as the scaling loop (autoscaler::ScalingLoop, which it is the Scaler of)
// asks for. Two layouts (LocalOptions::in_process):
//   - in-process (the default): a replica is one process, the user's command. Its
//     queue-proxy work (queue::ReplicaGuard: breaker, stats, readiness probing, drain,
//     metrics) runs inside sluice: the activator serves through the guard straight to
//     the app, readiness changes reach the activator as direct calls, and the autoscaler
//     reads the guards' stats without HTTP.
//   - process (`--queue-proxy=process`): the user's command + a `sluice queue-proxy`
//     process in front of it, two hops over loopback, as in a cluster.
//
//   activator ──reports, pods──▶ ScalingLoop ──scale(want)──▶ LocalRuntime
//       ▲                            ▲ ready replicas' stat ports   │ start / restart /
//       └──── endpoints, failures ◀──┴──────────────────────────────┘ stop processes
//
// Replica life (runtime::ReplicaLifecycle, a pure state machine): Starting ──activator
// says healthy──▶ Ready. A process that exits unexpectedly sends the replica to Backoff:
// restart on fresh ports (the old ones may have been lost to a race) after 0.5 s, 1 s,
// 2 s … 30 s; 10 s of staying ready clears the count. After 5 crashes in a row it is
// Failed: its cause is handed to the activator, whose waiting requests get 503 naming
// it; a failed replica retries every 30 s. Scale-down
// takes the replica out of the activator first, then drains its queue-proxy work (the
// guard's requests finish, or the queue-proxy process gets SIGTERM and finishes what it
// holds), then SIGTERMs the app; SIGKILL after the revision timeout.
//
// Threading: everything runs on one io_context (the thread that calls run(); it forks,
// so it must live as long as sluice: PR_SET_PDEATHSIG follows the forking thread).
// ActivatorListener calls arrive on the activator's home worker and are posted here. The
// guards' probers run on this io_context too; their breakers and stats on Sink::home.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "activator/listener.h"
#include "activator/revision_throttler.h"
#include "autoscaler/revision_autoscaler.h"
#include "autoscaler/scaling_loop.h"
#include "config/endpoints_file.h"
#include "core/random.h"
#include "core/timer.h"
#include "http/io.h"
#include "queue/replica_guard.h"
#include "runtime/process.h"
#include "runtime/replica_lifecycle.h"
#include "service/service_file.h"

namespace sluice::runtime {

struct LocalOptions {
  // The clock and timers of the runtime's loop; null: the steady clock.
  core::TimeSource* time = nullptr;
  uint16_t activator_port = 8080;
  // Where queue-proxies push their state: the activator's address ("[::1]" for IPv6).
  std::string activator_host = "127.0.0.1";
  std::string sluice_binary;  // for `sluice queue-proxy`
  // The queue-proxy's work in sluice itself (one hop), or a process per replica.
  bool in_process = true;
  // The activator's worker threads: the guards' metric shards.
  size_t activator_threads = 1;
  // Readiness polling of a starting app (cold start waits on it).
  std::chrono::milliseconds startup_probe_interval{5};
  // Crash handling.
  int crash_loop_after = 5;
  // Ready for this long clears a replica's crash count.
  std::chrono::milliseconds stable_run{10'000};
  std::chrono::milliseconds max_backoff{30'000};
  // The max-scale of a revision that declares none (0: none, Knative's unbounded). On one
  // machine an unbounded revision lets a burst of clients start hundreds of copies of
  // the app; min-, initial- and activation-scale above it raise it.
  int32_t default_max_scale = 0;
};

class LocalRuntime final : public activator::ActivatorListener, public autoscaler::Scaler {
 public:
  LocalRuntime(boost::asio::io_context& io,
               std::vector<service::ServiceSpec> services,
               LocalOptions options);
  // Where the replicas go (`sluice run` wires the embedded activator); before start().
  // Called on the io thread.
  struct Sink {
    std::function<void(config::EndpointsFile)> endpoints;
    // A revision's replicas keep failing (the cause), or recovered (nullopt).
    std::function<void(const std::string& revision, std::optional<std::string>)> failure;
    // In-process replicas: a guard serves the replica at `address` (`serving`), or no
    // longer (then only if it is still the one there), and what its readiness says, as a
    // queue-proxy's push would (called on the io thread).
    std::function<void(
        const std::string& address, std::shared_ptr<queue::ReplicaGuard>, bool serving)>
        local_pod;
    std::function<void(const std::string& revision,
                       const std::string& address,
                       activator::PushedState,
                       const std::string& instance)>
        pod_state;
    // Where the guards keep their breaker and stats: the thread requests reach them on
    // (the activator's home worker).
    boost::asio::io_context* home = nullptr;
  };
  void connect(Sink sink) { sink_ = std::move(sink); }
  ~LocalRuntime() override;

  // On the io thread: registers the revisions with the activator, starts min/initial
  // scale replicas and the control loops.
  // `activator_port`: the port the activator really listens on (chosen by the kernel
  // for --port 0), for the URLs printed and the queue-proxies' pushes.
  void start(uint16_t activator_port);
  // On the io thread: stops scaling and every replica (draining them); calls `done` when
  // every process has exited.
  void stop_all(std::function<void()> done);
  // On the io thread, after stop_all: no more waiting for drains. Every process gets
  // SIGTERM now and SIGKILL 2 s later.
  void stop_now();
  // The autoscaler's metrics and the in-process guards' (Knative's queue-proxy names, a
  // pod_name each), appended to `out`; any thread.
  void collect_metrics(std::vector<prometheus::MetricFamily>& out) const;

  // Scaler (io thread).
  int32_t scale(const std::string& revision,
                const autoscaler::ScaleDecision& d,
                bool poke) override;

  // ActivatorListener (activator home worker).
  void on_report(const std::vector<activator::RevisionConcurrency>& batch) override;
  void on_pods(const std::vector<activator::RevisionPods>& pods) override;
  void on_pod_event(const std::string& revision,
                    const std::string& pod,
                    const activator::Transition& transition) override;

 private:
  struct Replica;
  struct Revision;
  // Reads the in-process guards' stats (on Sink::home) for the scaling loop.
  class GuardScraper final : public autoscaler::StatScraper {
   public:
    explicit GuardScraper(LocalRuntime& runtime) : runtime_(runtime) {}
    void scrape(std::vector<std::string> targets, Done done) override;

   private:
    LocalRuntime& runtime_;
  };

  void tick();
  void reconcile(Revision& r);
  void report_ready(const Revision& r);
  void publish_endpoints();
  void pick_ports(const Revision& r, Replica& rep);
  void start_replica(Revision& r, Replica& rep);
  void stop_replica(Revision& r, Replica& rep, bool at_once);
  void check_processes(Revision& r, Replica& rep);
  void crashed(Revision& r, Replica& rep, const std::string& what, bool cannot_run = false);
  void start_guard(Revision& r, Replica& rep);
  // The replica's guard leaves the activator and stops; it is freed once nothing holds it.
  void retire_guard(Replica& rep);
  void set_failure(Revision& r, std::optional<std::string> why);
  void update_metrics();
  Revision* find(const std::string& key);

  boost::asio::io_context& io_;
  Sink sink_;
  LocalOptions opts_;
  std::vector<std::unique_ptr<Revision>> revisions_;
  core::SteadyTimeSource steady_;
  core::TimeSource& time_;
  LifecyclePolicy policy_;
  core::Timer timer_;
  core::FastRandom random_;
  autoscaler::HttpStatScraper scraper_;
  GuardScraper guard_scraper_{*this};
  autoscaler::ScalingLoop loop_;
  // Guards of replicas that are gone, until their prober is idle and no request holds
  // them (io thread).
  std::vector<std::shared_ptr<queue::ReplicaGuard>> retired_guards_;
  core::TimePoint next_metrics_{};
  bool stopping_ = false;
  std::function<void()> on_stopped_;

  // The loop's metrics, collected on the io thread for the activator's metrics port, and
  // the guards whose metrics a scrape reads.
  mutable std::mutex metrics_mu_;
  std::vector<prometheus::MetricFamily> loop_families_;
  std::vector<std::shared_ptr<const queue::ReplicaGuard>> metric_guards_;
};

}  // namespace sluice::runtime
