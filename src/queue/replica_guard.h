// queue/replica_guard.h
//
// ReplicaGuard is the queue-proxy's work for one replica without its sockets: the
// breaker (containerConcurrency slots + a bounded queue), the autoscaler's request stats,
// readiness probing of the app, the drain flag, the Knative per-revision metrics, the
// request log, and the request path that ties them together (admission, forwarding to the
// app with Knative's timeouts, the answers the queue-proxy makes itself). Two owners:
//   - `sluice queue-proxy` (queue_proxy.h): the sidecar wraps it with its ports, signals
//     and stat endpoint;
//   - `sluice run` in-process (the default): the activator calls serve() for a local
//     replica's requests and forwards straight to the app, one hop instead of two.
//
// Threading: the breaker and the stats belong to `home` (an io_context whose thread runs
//   them; callers on other threads hop there); the prober runs on `control`. serve() may
//   be called on any worker: its metrics shard is the worker's index (< `shards`).
// Time: every timer and timestamp from the injected TimeSource.
// Failure: the answers it makes itself carry Sluice-Error (a fixed reason, ProxyError)
//   and, when the app never saw the request, Sluice-Not-Forwarded: true; in one-hop mode
//   those are handed back to the caller instead (Hop::hand_back) so it can retry
//   elsewhere.
// Metrics: QueueMetrics (queue_metrics.h).
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "admission/breaker.h"
#include "admission/timer_waiter.h"
#include "config/queue_proxy_config.h"
#include "core/time_source.h"
#include "http/connection.h"
#include "http/forward.h"
#include "queue/probe_classifier.h"
#include "queue/queue_metrics.h"
#include "queue/readiness_prober.h"
#include "stats/request_stats.h"

namespace spdlog {
class logger;
}

namespace sluice::queue {

// Headers on answers the queue-proxy makes itself. Sluice-Error names the cause;
// Sluice-Not-Forwarded says the app never saw the request, so a retry elsewhere is safe.
inline constexpr std::string_view kErrorHeader = "Sluice-Error";
inline constexpr std::string_view kNotForwardedHeader = "Sluice-Not-Forwarded";
inline constexpr std::string_view kRevisionHeader = "Sluice-Revision";
// Which queue-proxy process answers: the activator treats a new one on a known address as
// a restarted replica (a new pod), not as the old one recovering.
inline constexpr std::string_view kInstanceHeader = "Sluice-Pod-Instance";

class ReplicaGuard {
 public:
  struct Options {
    config::QueueProxyConfig config;
    core::TimeSource* time = nullptr;             // required
    asio::io_context* home = nullptr;             // breaker and stats; required
    asio::io_context* control = nullptr;          // the prober; required
    size_t shards = 1;                            // metric shards: the serving workers
    std::string instance_id;                      // Sluice-Pod-Instance
    std::shared_ptr<spdlog::logger> request_log;  // null: no request log
    std::string log_prefix;  // its warnings' first words ("hello-00001-1: "), if any
  };
  explicit ReplicaGuard(Options options);
  ReplicaGuard(const ReplicaGuard&) = delete;
  ReplicaGuard& operator=(const ReplicaGuard&) = delete;

  // How a request reaches serve().
  struct Hop {
    bool proxied = false;  // sent by an activator (Knative's proxied stats)
    // The activator's hop and this one are the same (in-process): Host stays the
    // client's, K-Proxy-Request is added; otherwise Host comes back from K-Original-Host.
    bool one_hop = false;
    // The request body, already read by the caller (see ForwardOptions::buffered_body).
    std::optional<std::string_view> buffered_body;
    // Answers made before the app saw the request are handed back (Served::result is
    // Intercepted) instead of sent: the caller may retry on another replica.
    bool hand_back = false;
    // The caller's own bound on the response's start (the activator's: the revision
    // timeout from the client's arrival), besides the guard's, which start at serve().
    core::TimePoint deadline = core::TimePoint::max();
    // In one hop, when the caller handed the request over, if it just read the clock
    // (saves reading it again); unset, serve() reads it.
    core::TimePoint handed_over{};
  };
  // What the caller of serve() would have seen from a queue-proxy across a socket:
  // Completed once something was answered (by the app or by the guard), ClientGone,
  // BrokenAfterStart, or Intercepted with the status and reason it handed back.
  struct Served {
    http::ForwardResult result;
    std::string_view not_forwarded_error;  // with Intercepted: its Sluice-Error value
  };
  // The request path: admission, forward to the app, errors, metrics, request log. Must
  // not be given a probe (see answer_probe).
  Task<Served> serve(http::Exchange& ex, Hop hop);
  // Answers Knative's probes of the queue-proxy (K-Network-Probe, kube-probe).
  Task<void> answer_probe(http::Exchange& ex, const ProbeClass& probe);
  // The health check's answer: not draining, the app ready, and a fresh probe round
  // agreeing (otherwise the prober is kicked to look again now). Any thread.
  Task<bool> health_check();

  void start() { prober_.start(); }
  // Stops the prober; the guard may be destroyed once idle() (its coroutines are done).
  void stop() { prober_.stop(); }
  bool idle() const { return prober_.idle(); }

  // On home: cuts the stats window (stats::RequestStats::report).
  stats::Report cut_stats(core::TimePoint now) { return stats_.report(now); }

  bool draining() const { return draining_.load(std::memory_order_acquire); }
  void set_draining(bool d) { draining_.store(d, std::memory_order_release); }
  bool app_is_ready() const {
    return prober_.ready() && protocol_known_.load(std::memory_order_acquire);
  }
  // Requests (and tunnels) inside serve() now; any thread.
  int64_t in_flight() const { return in_flight_.load(std::memory_order_acquire); }
  // When the last request arrived (for the drain's quiet period).
  core::TimePoint last_request() const {
    return core::TimePoint{core::Duration(last_request_ns_.load(std::memory_order_relaxed))};
  }

  // The app's protocol: known at start unless --app-protocol auto; the owner detects it
  // and says so here (readiness waits for it).
  bool protocol_known() const { return protocol_known_.load(std::memory_order_acquire); }
  void set_app_protocol(bool h2c) {
    app_h2c_.store(h2c, std::memory_order_release);
    protocol_known_.store(true, std::memory_order_release);
  }

  const config::QueueProxyConfig& config() const { return cfg_; }
  const http::ForwardTarget& http1_target() const { return target_; }
  const std::string& instance_id() const { return instance_id_; }
  ReadinessProber& prober() { return prober_; }
  QueueMetrics& metrics() { return metrics_; }
  const QueueMetrics& metrics() const { return metrics_; }

 private:
  struct Admission {
    admission::Breaker::Admit result = admission::Breaker::Admit::Admitted;
    core::Duration queued{0};
  };
  // Home-worker side of admission: stats in, breaker acquire (waiting if needed).
  // `now` is the event's own time (arrival, completion), so stats integrate exactly
  // even when the hop to the home worker takes a moment.
  // `token` lets a queued request whose client hung up leave the queue at once instead
  // of reaching the app for nobody (from any worker: enter() watches the client).
  Task<Admission> enter_on_home(bool proxied,
                                core::TimePoint now,
                                core::TimePoint deadline,
                                std::shared_ptr<admission::WaitToken> token,
                                http::Exchange* client);
  void leave_on_home(bool proxied, bool held_slot, core::TimePoint now);
  // On home with a slot free now (or no breaker): stats in and the slot taken, true;
  // otherwise nothing done, false (enter() then admits or queues it).
  bool enter_now(bool proxied, core::TimePoint now);
  Task<Admission> enter(bool proxied,
                        core::TimePoint now,
                        core::TimePoint deadline,
                        http::Exchange& client);
  void leave(bool proxied, bool held_slot, core::TimePoint now);
  bool on_home() const { return home_.get_executor().running_in_this_thread(); }
  const http::ForwardTarget& app_target() const {
    return app_h2c_.load(std::memory_order_acquire) ? h2c_target_ : target_;
  }

  config::QueueProxyConfig cfg_;
  core::TimeSource& time_;
  asio::io_context& home_;
  asio::io_context& control_;
  std::unique_ptr<admission::Breaker> breaker_;  // home only; null when CC = 0
  stats::RequestStats stats_;                    // home only
  QueueMetrics metrics_;
  ReadinessProber prober_;
  http::ForwardTarget target_;      // the app over HTTP/1.1
  http::ForwardTarget h2c_target_;  // the same app over h2c
  std::atomic<bool> app_h2c_{false};
  std::atomic<bool> protocol_known_{true};
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> last_request_ns_{0};
  std::shared_ptr<spdlog::logger> request_log_;
  std::string instance_id_;
  std::string log_prefix_;
};

}  // namespace sluice::queue
