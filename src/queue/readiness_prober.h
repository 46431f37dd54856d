// queue/readiness_prober.h
//
// Keeps the app's readiness current in the background, so health checks answer from a
// cached state instead of probing the app each time (Knative 1.18 probes per check).
// Every configured probe runs each round; all must pass. Until the app is first ready
// rounds run every startup interval (50 ms: Knative's aggressive mode, periodSeconds 0) or every
// periodSeconds; once ready, every periodSeconds (1 s in aggressive mode). In aggressive
// mode the startup interval is reached by a ramp (startup_probe_period): a tenth of the
// time polled so far, at least 1 ms, so an app that starts in 2 ms is seen ready within
// about a millisecond, and one that takes a minute costs no more probes than before. Ready after
// successThreshold consecutive passing rounds; not ready after failureThreshold
// consecutive failing rounds, or at once when the proxy itself could not reach the app
// (report_unreachable) or a health check's fresh probe failed (check), which also drop
// back to fast polling so recovery is seen within one polling interval.
//
// Threading: runs on one io_context (the control thread). ready() may be read anywhere.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "config/readiness_probe.h"
#include "core/time_source.h"
#include "core/timer.h"
#include "http/io.h"

namespace sluice::queue {

namespace asio = http::asio;
using http::error_code;
using http::kUseTuple;
using http::Task;
using http::tcp;

// How long to wait for the next round while an app starts (aggressive mode), after
// polling it for `polling_for`: polling_for / 10, within [1 ms, cap].
core::Duration startup_probe_period(core::Duration polling_for, std::chrono::milliseconds cap);

class ReadinessProber {
 public:
  ReadinessProber(asio::io_context& io,
                  core::TimeSource& time,
                  std::vector<config::ProbeSpec> probes,
                  std::chrono::milliseconds startup_interval = std::chrono::milliseconds(50));

  void start();
  void stop();
  // No coroutine of its own is running (none started, or all ended after stop()): the
  // prober may be destroyed. On the prober's io_context.
  bool idle() const { return running_ == 0; }
  bool ready() const { return ready_.load(std::memory_order_acquire); }
  // Thread-safe: the app refused a connection; stop trusting it and re-probe now.
  void report_unreachable();
  // Thread-safe: probe now instead of at the next tick.
  void kick();
  // On the prober's io_context: one fresh probe round when the cached state is ready, so
  // a health check sees an app that died since the last tick (false at once) instead of
  // a cached 200. A failed round flips to not ready and back to fast polling.
  Task<bool> check();
  // Called on the control thread whenever ready() flips (e.g. to push to an activator).
  void on_change(std::function<void(bool)> fn) { on_change_ = std::move(fn); }
  const std::string& last_error() const { return last_error_; }
  // Before start(): what its log lines begin with ("hello-00001-1: " when several apps'
  // probers share one log; a sidecar's has one app and no prefix).
  void set_log_prefix(std::string prefix) { log_prefix_ = std::move(prefix); }
  // Before start(): the app's serving port ($PORT), for the hint when a probe is refused.
  void set_user_port(uint16_t port) { user_port_ = port; }

 private:
  Task<void> run();
  // Warns while the app has not become ready: after 10 s, then every 30 s, with the last
  // probe error, so a replica stuck at start-up says why instead of staying silent.
  Task<void> warn_while_not_ready();
  Task<bool> probe_once(const config::ProbeSpec& spec, std::chrono::milliseconds timeout);
  Task<bool> probe_round();
  std::chrono::milliseconds round_timeout(const config::ProbeSpec& spec) const;
  // The app stopped answering: not ready now, and poll fast until it is back.
  void lost_app();
  void set_ready(bool r);

  asio::io_context& io_;
  std::vector<config::ProbeSpec> probes_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> stopped_{false};
  std::chrono::milliseconds startup_interval_;
  core::TimeSource& time_;
  core::TimePoint polling_since_;  // when fast polling (re)started: the ramp's origin
  core::Timer tick_;
  core::Timer not_ready_warning_;
  int running_ = 0;  // run() and warn_while_not_ready() not yet returned
  int successes_ = 0;
  int failures_ = 0;
  bool ever_ready_ = false;
  std::string last_error_;
  std::string log_prefix_;
  uint16_t user_port_ = 0;
  std::function<void(bool)> on_change_;
};

}  // namespace sluice::queue
