// activator/activator.h
//
// `sluice activator`: the shared front door. Threads:
//   - N workers (--threads, default: cores) serve the main port; connections stay on
//     their worker. Worker 0 is "home": it owns every revision's RevisionThrottler
//     (queue, trackers, LB cursor), runs the active prober and the health ticks; other
//     workers hop there to wait for capacity and to report outcomes.
//   - the control thread (the caller of run()) watches the endpoints file, serves
//     metrics and drives drain.
// run() returns the exit code once drained (0) or on a start-up failure (1).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace sluice::activator {

class ConcurrencySink;

struct ActivatorOptions {
  uint16_t port = 8012;
  uint16_t metrics_port = 9090;
  int threads = 1;
  std::string endpoints_file;
  std::string id;  // this activator's address in the file's `activators` list
  uint32_t queue_depth = 10'000;
  std::chrono::milliseconds probe_interval{50};
  std::chrono::milliseconds drain_timeout{45'000};
  std::chrono::milliseconds header_timeout{60'000};
  // Receives per-revision concurrency every second and the scale-from-zero poke
  // (`sluice run` wires its autoscaler here); may be null.
  ConcurrencySink* concurrency_sink = nullptr;
};

class ActivatorImpl;

class Activator {
 public:
  explicit Activator(ActivatorOptions options);
  ~Activator();
  int run();

 private:
  std::unique_ptr<ActivatorImpl> impl_;
};

}  // namespace sluice::activator
