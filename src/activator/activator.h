// activator/activator.h
//
// `sluice activator`: the shared front door. Threads:
//   - N workers (--threads, default: cores) serve the main port; connections stay on
//     their worker. Worker 0 is "home": it owns every revision's RevisionThrottler
//     (queue, trackers, LB cursor), runs the active prober and the health ticks; other
//     workers hop there to wait for capacity and to report outcomes.
//   - the control thread (the caller of run()) runs discovery (activator/discovery.h),
//     serves metrics and drives drain.
// run() returns the exit code once drained (0) or on a start-up failure (1).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "activator/discovery.h"
#include "config/endpoints_file.h"
#include "core/time_source.h"
#include "metrics/registry.h"

namespace boost::asio {
class io_context;
}
namespace sluice::queue {
class ReplicaGuard;
}

namespace sluice::activator {

class ActivatorListener;
enum class PushedState;

struct ActivatorOptions {
  // The clock and timers of every loop; null: the steady clock (tests: a manual one).
  core::TimeSource* time = nullptr;
  // Empty: every address of the host (IPv6 and IPv4), as Knative's activator listens.
  std::string address;
  uint16_t port = 8012;
  uint16_t metrics_port = 9090;
  // Knative's h2c port: served like the main port (HTTP/2 and HTTP/1); 0: none.
  uint16_t h2c_port = 0;
  // Gates the kubelet's readiness probe besides draining (in Kubernetes: discovery has
  // listed, and the autoscaler websocket is up); false fills `why`. Control thread.
  std::function<bool(std::string& why)> ready;
  int threads = 1;
  // Where revisions and pods come from (a file, Kubernetes); null: the embedder calls
  // update_endpoints() instead.
  std::shared_ptr<Discovery> discovery;
  std::string id;  // this activator's address in the peers (`activators`) list
  uint32_t queue_depth = 10'000;
  std::chrono::milliseconds probe_interval{50};
  std::chrono::milliseconds drain_timeout{45'000};
  std::chrono::milliseconds header_timeout{60'000};
  // Receives concurrency reports (with the scale-from-zero poke), pod counts and pod
  // events (`sluice run` wires its autoscaler and runtime here); may be null.
  ActivatorListener* listener = nullptr;
  // false: the embedder handles SIGTERM/SIGINT and calls shutdown().
  bool handle_signals = true;
  // More families for /metrics (the embedder's own metrics), merged with the
  // activator's by name; called on the control thread.
  metrics::Registry::Collector extra_metrics;
  // Called once both ports are bound (on the thread that called run()) with the serving
  // port (the one the kernel chose for port 0): an embedder that picks free ports for
  // others must not pick these.
  std::function<void(uint16_t port)> on_listening;
};

class ActivatorImpl;

class Activator {
 public:
  explicit Activator(ActivatorOptions options);
  ~Activator();
  // Serves until drained; returns the exit code (0, or 1 on a start-up failure).
  int run();

  // For embedders; safe from any thread.
  // In-process discovery: replaces every revision and its endpoints, as a file reload.
  void update_endpoints(config::EndpointsFile file);
  // While set and the revision has no pod taking traffic, its waiting and new requests
  // get 503 with this message (e.g. the command cannot start); nullopt clears it.
  void set_revision_failure(const std::string& revision_key, std::optional<std::string> why);
  // A pod whose queue-proxy work runs in this process (`sluice run`'s replicas): its
  // requests go through `guard` straight to the app at `address`, one hop, and its health
  // checks ask the guard. Register before the address is published.
  void set_local_pod(const std::string& address, std::shared_ptr<queue::ReplicaGuard> guard);
  // Forgets `guard` at `address`, unless another has been registered there since (a
  // replica on a fixed port restarted while the old one drained).
  void unset_local_pod(const std::string& address, const queue::ReplicaGuard* guard);
  // The home worker's context (its thread runs every revision's throttler): where
  // in-process guards keep their breaker and stats, so a request needs no extra hop.
  boost::asio::io_context& home_context();
  // What a queue-proxy's push says (`/.sluice/pod-state`), as a direct call: a local
  // replica's app became ready (the cold start's release), not ready, or draining.
  void push_pod_state(const std::string& revision_key,
                      const std::string& pod,
                      PushedState state,
                      const std::string& instance);
  // Stops accepting, finishes requests in flight (for at most `grace`; then as
  // stop_now()), then run() returns. Thread-safe.
  void shutdown(std::chrono::milliseconds grace = std::chrono::minutes(10));
  // Thread-safe. Stops now: buffered requests get 503 naming the shutdown, requests in
  // flight get a second to finish, then run() returns.
  void stop_now();

 private:
  std::unique_ptr<ActivatorImpl> impl_;
};

}  // namespace sluice::activator
