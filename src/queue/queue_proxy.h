// queue/queue_proxy.h
//
// `sluice queue-proxy`: the sidecar in front of one replica. Owns the threads:
//   - N workers (--threads, default 1) serve the main port; each connection stays on
//     one worker. Worker 0 is "home": it owns the breaker and the request stats, and the
//     other workers hop there to enter and leave (with one worker there is no hop).
//   - the control thread (the caller of run()) serves the admin, stats and metrics
//     ports, runs the readiness prober, cuts the autoscaler stats every second and
//     drives drain on SIGTERM.
// run() returns the process exit code once drained (0) or on a start-up failure (1).
#pragma once

#include <memory>

#include "config/queue_proxy_config.h"
#include "core/time_source.h"

namespace sluice::queue {

class QueueProxyImpl;

class QueueProxy {
 public:
  // `time`: the clock and timers of every loop; null: the steady clock.
  explicit QueueProxy(config::QueueProxyConfig config, core::TimeSource* time = nullptr);
  ~QueueProxy();
  int run();

 private:
  std::unique_ptr<QueueProxyImpl> impl_;
};

}  // namespace sluice::queue
