#include <spdlog/spdlog.h>

#include <memory>

#include "cli/commands.h"
#include "config/queue_proxy_config.h"
#include "core/logging.h"
#include "queue/queue_proxy.h"

namespace sluice::cli {

Action add_queue_proxy_command(CLI::App& app) {
  auto flags = std::make_shared<config::QueueProxyFlags>();
  auto json_logs = std::make_shared<bool>(false);
  // CLI11 needs plain storage; copy into the optionals after parsing.
  struct Raw {
    std::string address;
    uint16_t port = 0, user_port = 0, admin_port = 0, stats_port = 0, metrics_port = 0;
    uint32_t cc = 0;
    int threads = 0;
    std::string revision_timeout, readiness_probe, drain_quiet_period, header_timeout, activators,
        startup_probe_interval, app_protocol;
  };
  auto raw = std::make_shared<Raw>();
  auto* o_port =
      app.add_option("--port", raw->port, "Serving port (QUEUE_SERVING_PORT; default 8012)");
  auto* o_user =
      app.add_option("--user-port", raw->user_port, "The app's port on 127.0.0.1 (USER_PORT)");
  auto* o_proto =
      app.add_option("--app-protocol", raw->app_protocol,
                     "What the app speaks: http1, h2c or auto (detected once the app is ready) "
                     "(SLUICE_APP_PROTOCOL; in a pod, default h2c when QUEUE_SERVING_PORT is "
                     "8013, as Knative serves a port named h2c, and auto when "
                     "ENABLE_HTTP2_AUTO_DETECTION is true)")
          ->check(CLI::IsMember({"http1", "h2c", "auto"}));
  auto* o_admin =
      app.add_option("--admin-port", raw->admin_port, "Admin port: /wait-for-drain (default 8022)");
  auto* o_stats = app.add_option("--stats-port", raw->stats_port,
                                 "Autoscaler stats port, protobuf Stat at /metrics (default 9090)");
  auto* o_metrics =
      app.add_option("--metrics-port", raw->metrics_port, "Prometheus metrics port (default 9091)");
  auto* o_cc = app.add_option(
      "--container-concurrency", raw->cc,
      "Concurrent requests admitted to the app; 0 = unlimited (CONTAINER_CONCURRENCY)");
  auto* o_rt =
      app.add_option("--revision-timeout", raw->revision_timeout,
                     "Time until the response must start, e.g. 300s (REVISION_TIMEOUT_SECONDS)");
  auto* o_rp = app.add_option("--readiness-probe", raw->readiness_probe,
                              "Readiness probe JSON, as SERVING_READINESS_PROBE");
  auto* o_dq = app.add_option(
      "--drain-quiet-period", raw->drain_quiet_period,
      "On SIGTERM, wait this long without new requests before closing (default 30s)");
  auto* o_sp = app.add_option(
      "--startup-probe-interval", raw->startup_probe_interval,
      "Readiness polling until the app is first ready (default 50ms, Knative's aggressive mode)");
  auto* o_ht =
      app.add_option("--header-timeout", raw->header_timeout,
                     "Cut clients that take longer than this to send a request head (default 60s)");
  auto* o_th = app.add_option("--threads", raw->threads, "Worker threads (default 1)");
  auto* o_addr = app.add_option("--address", raw->address,
                                "Listen on this address only (default: every address, as Knative)");
  auto* o_act = app.add_option("--activator", raw->activators,
                               "Activators (HOST:PORT, comma-separated) to tell at once when the "
                               "app turns ready or not ready and when draining starts");
  app.add_flag("--json-logs", *json_logs, "Log one JSON object per line");
  app.footer(
      "Configuration comes from Knative's queue-proxy environment variables; flags override "
      "them. Outside Kubernetes (no SERVING_* identity variables) only --user-port is needed.");

  return [=]() -> int {
    if (o_port->count())
      flags->port = raw->port;
    if (o_user->count())
      flags->user_port = raw->user_port;
    if (o_admin->count())
      flags->admin_port = raw->admin_port;
    if (o_stats->count())
      flags->stats_port = raw->stats_port;
    if (o_metrics->count())
      flags->metrics_port = raw->metrics_port;
    if (o_cc->count())
      flags->container_concurrency = raw->cc;
    if (o_rt->count())
      flags->revision_timeout = raw->revision_timeout;
    if (o_rp->count())
      flags->readiness_probe = raw->readiness_probe;
    if (o_dq->count())
      flags->drain_quiet_period = raw->drain_quiet_period;
    if (o_ht->count())
      flags->header_timeout = raw->header_timeout;
    if (o_sp->count())
      flags->startup_probe_interval = raw->startup_probe_interval;
    if (o_th->count())
      flags->threads = raw->threads;
    if (o_act->count())
      flags->activators = raw->activators;
    if (o_addr->count())
      flags->address = raw->address;
    if (o_proto->count())
      flags->app_protocol = raw->app_protocol;

    auto loaded = config::load_queue_proxy_config(config::process_env(), *flags);
    if (!loaded.config) {
      for (const auto& e : loaded.errors)
        std::fprintf(stderr, "sluice queue-proxy: %s\n", e.c_str());
      return 1;
    }
    if (!core::setup_logging("queue-proxy", loaded.config->logging_level, *json_logs)) {
      spdlog::warn("unknown log level \"{}\", using info", loaded.config->logging_level);
    }
    queue::QueueProxy qp(std::move(*loaded.config));
    return qp.run();
  };
}

}  // namespace sluice::cli
