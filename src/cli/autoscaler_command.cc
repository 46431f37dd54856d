// `sluice autoscaler`: Knative 1.18's autoscaler Deployment, replaced (see
// runtime/kube_autoscaler.h). Started as Knative's is: env POD_NAME, POD_IP,
// SYSTEM_NAMESPACE (from the downward API), ports 8080 (stats websocket; GET answers
// the probes) and 9090 (metrics), the service account or --kubeconfig.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <memory>

#include "cli/cluster_config.h"
#include "cli/commands.h"
#include "core/logging.h"
#include "runtime/kube_autoscaler.h"

namespace sluice::cli {

Action add_autoscaler_command(CLI::App& app) {
  struct Flags {
    std::string kubeconfig;
    runtime::KubeAutoscalerOptions opts;
    std::string log_level = "info";
    bool json_logs = false;
  };
  auto f = std::make_shared<Flags>();
  app.add_option("--kubeconfig", f->kubeconfig,
                 "A kubeconfig file (out of cluster); in a pod the service account is used");
  app.add_option("--port", f->opts.port, "Stats websocket and probe port (default 8080)");
  app.add_option("--metrics-port", f->opts.metrics_port, "Prometheus metrics port (default 9090)");
  app.add_option("--lease", f->opts.lease_name,
                 "Lease (in $SYSTEM_NAMESPACE) its replicas share: only the holder scales "
                 "(default sluice-autoscaler)");
  app.add_option("--log-level", f->log_level, "trace|debug|info|warn|error (default info)");
  app.add_flag("--json-logs", f->json_logs, "Log one JSON object per line");
  return [f]() -> int {
    core::setup_logging("autoscaler", f->log_level, f->json_logs);
    auto config = load_cluster_config(f->kubeconfig);
    if (auto* e = std::get_if<std::string>(&config)) {
      std::fprintf(stderr, "sluice autoscaler: %s\n", e->c_str());
      return 1;
    }
    runtime::KubeAutoscalerOptions opts = f->opts;
    opts.system_namespace = env("SYSTEM_NAMESPACE").value_or("");
    if (opts.system_namespace.empty()) {
      std::fprintf(stderr,
                   "sluice autoscaler: SYSTEM_NAMESPACE is not set (Knative's autoscaler "
                   "Deployment sets it from the downward API)\n");
      return 1;
    }
    opts.pod_ip = env("POD_IP").value_or("");
    opts.identity = env("POD_NAME").value_or("");
    if (opts.identity.empty()) {
      char host[256] = {};
      ::gethostname(host, sizeof host - 1);
      opts.identity = host;
    }
    boost::asio::io_context io;
    core::SteadyTimeSource time;
    // SIGTERM / Ctrl-C: give the lease up (a standby takes over at once), then exit; a
    // second signal exits at once. Caught from before the ports open, so a signal sent as
    // soon as they answer is handled, not fatal.
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    runtime::KubeAutoscaler autoscaler(io, std::get<kube::ClusterConfig>(config), time, opts);
    if (auto e = autoscaler.start()) {
      std::fprintf(stderr, "sluice autoscaler: %s\n", e->c_str());
      return 1;
    }
    int received = 0;
    std::function<void(const boost::system::error_code&, int)> on_signal =
        [&](const boost::system::error_code& ec, int sig) {
          if (ec)
            return;
          if (++received > 1) {
            spdlog::warn("second signal: exiting now");
            io.stop();
            return;
          }
          spdlog::info("{}: releasing the lease and stopping",
                       sig == SIGINT ? "Ctrl-C" : "SIGTERM");
          autoscaler.stop([&] { io.stop(); });
          signals.async_wait(on_signal);
        };
    signals.async_wait(on_signal);
    io.run();
    return 0;
  };
}

}  // namespace sluice::cli
