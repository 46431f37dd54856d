#include <spdlog/spdlog.h>

#include <memory>
#include <thread>

#include "activator/activator.h"
#include "activator/file_discovery.h"
#include "cli/commands.h"
#include "config/duration.h"
#include "core/logging.h"

namespace sluice::cli {

Action add_activator_command(CLI::App& app) {
  auto opts = std::make_shared<activator::ActivatorOptions>();
  opts->threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  struct Raw {
    std::string probe_interval = "50ms";
    std::string drain_timeout = "45s";
    std::string header_timeout = "60s";
    std::string log_level = "info";
    bool json_logs = false;
  };
  auto raw = std::make_shared<Raw>();
  app.add_option("--port", opts->port, "Serving port (default 8012)");
  app.add_option("--metrics-port", opts->metrics_port, "Prometheus metrics port (default 9090)");
  app.add_option("--threads", opts->threads, "Worker threads (default: cores)")
      ->check(CLI::Range(1, 256));
  auto endpoints_file = std::make_shared<std::string>();
  app.add_option("--endpoints-file", *endpoints_file,
                 "JSON file with revisions and their queue-proxy endpoints; re-read on change")
      ->required();
  app.add_option("--id", opts->id,
                 "This activator's HOST:PORT in the file's \"activators\" list (subsetting)");
  app.add_option("--queue-depth", opts->queue_depth,
                 "Requests that may wait per revision (default 10000); beyond: 503")
      ->check(CLI::Range(1u, 10'000'000u));
  app.add_option("--probe-interval", raw->probe_interval,
                 "Health-check cadence for pending pods (default 50ms)");
  app.add_option("--drain-timeout", raw->drain_timeout,
                 "On SIGTERM, fail readiness this long before closing (default 45s)");
  app.add_option("--header-timeout", raw->header_timeout,
                 "Cut clients that take longer than this to send a request head (default 60s)");
  app.add_option("--log-level", raw->log_level, "trace|debug|info|warn|error (default info)");
  app.add_flag("--json-logs", raw->json_logs, "Log one JSON object per line");
  return [=]() -> int {
    core::setup_logging("activator", raw->log_level, raw->json_logs);
    struct {
      const std::string& text;
      const char* flag;
      std::chrono::milliseconds& out;
    } durations[] = {{raw->probe_interval, "--probe-interval", opts->probe_interval},
                     {raw->drain_timeout, "--drain-timeout", opts->drain_timeout},
                     {raw->header_timeout, "--header-timeout", opts->header_timeout}};
    for (auto& d : durations) {
      std::string why;
      auto parsed = config::parse_duration(d.text, &why);
      if (!parsed) {
        std::fprintf(stderr, "sluice activator: %s: %s\n", d.flag, why.c_str());
        return 1;
      }
      d.out = *parsed;
    }
    if (opts->probe_interval.count() < 1) {
      std::fprintf(stderr, "sluice activator: --probe-interval must be at least 1ms\n");
      return 1;
    }
    opts->discovery = std::make_shared<activator::FileDiscovery>(*endpoints_file, opts->id);
    activator::Activator a(*opts);
    return a.run();
  };
}

}  // namespace sluice::cli
