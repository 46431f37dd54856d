// `sluice run FILE...`: the whole data plane on one machine (activator + autoscaler +
// local runtime), the embedded default.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <filesystem>
#include <memory>
#include <thread>

#include "activator/activator.h"
#include "cli/commands.h"
#include "core/logging.h"
#include "runtime/local_runtime.h"
#include "service/service_file.h"

namespace sluice::cli {

Action add_run_command(CLI::App& app) {
  struct Raw {
    std::vector<std::string> files;
    uint16_t port = 8080;
    uint16_t metrics_port = 9090;
    int threads = 1;
    std::string log_level = "info";
    std::string address = "127.0.0.1";
    std::string queue_proxy = "in-process";
  };
  auto raw = std::make_shared<Raw>();
  app.add_option("FILE", raw->files, "Knative Service YAML file(s), with optional ConfigMaps")
      ->required();
  app.add_option("--port", raw->port,
                 "Port for every service, routed by Host <service>.<namespace>.localhost "
                 "(default 8080)");
  app.add_option("--address", raw->address,
                 "Address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 or :: "
                 "for every interface)");
  app.add_option("--metrics-port", raw->metrics_port,
                 "Prometheus metrics (activator and autoscaler; default 9090)");
  app.add_option("--threads", raw->threads, "Activator worker threads (default 1)")
      ->check(CLI::Range(1, 256));
  app.add_option("--log-level", raw->log_level, "trace|debug|info|warn|error (default info)");
  app.add_option("--queue-proxy", raw->queue_proxy,
                 "in-process: the queue-proxy's work for each replica runs inside sluice, one "
                 "hop to the app (default); process: a `sluice queue-proxy` process per "
                 "replica, two hops, the layout of a cluster")
      ->check(CLI::IsMember({"in-process", "process"}));
  return [raw]() -> int {
    core::setup_logging("run", raw->log_level, false);
    spdlog::set_pattern("%H:%M:%S.%e %^%v%$");
    auto loaded = service::load_service_files(raw->files);
    for (const auto& w : loaded.warnings) spdlog::warn("{}", w);
    // A replica on sluice's own port would be probed through sluice's listener (ready at
    // once, every request 400) while the app crash-loops on "Address already in use".
    for (const auto& svc : loaded.services) {
      const auto& fixed = svc.container.port;
      if (fixed && (*fixed == raw->port || *fixed == raw->metrics_port)) {
        loaded.errors.push_back(fmt::format(
            "{}:{}: spec.template.spec.containers[0].ports[0].containerPort: {} is also sluice "
            "run's {} {}: choose another containerPort, or another {}",
            svc.file, svc.line, *fixed, *fixed == raw->port ? "--port" : "--metrics-port", *fixed,
            *fixed == raw->port ? "--port" : "--metrics-port"));
      }
    }
    if (!loaded.errors.empty()) {
      for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.c_str());
      std::fprintf(stderr, "sluice run: %zu error(s); nothing started\n", loaded.errors.size());
      return 2;
    }

    boost::asio::io_context io;
    std::error_code ec;
    const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
    runtime::LocalOptions ropts;
    ropts.activator_port = raw->port;
    {
      boost::system::error_code bad;
      const auto a = boost::asio::ip::make_address(raw->address, bad);
      if (bad) {
        std::fprintf(stderr, "sluice run: --address %s: not an IP address\n", raw->address.c_str());
        return 2;
      }
      // Pods push to the activator; an unspecified address is reachable on loopback.
      if (!a.is_unspecified())
        ropts.activator_host = a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
    }
    ropts.sluice_binary = ec ? "sluice" : self;
    ropts.in_process = raw->queue_proxy == "in-process";
    ropts.activator_threads = static_cast<size_t>(raw->threads);
    // 4 replicas per CPU: room for I/O-bound apps at containerConcurrency 1, a bound on
    // how many copies of the app a burst of clients can start.
    ropts.default_max_scale =
        4 * static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
    runtime::LocalRuntime runtime(io, std::move(loaded.services), ropts);

    activator::ActivatorOptions aopts;
    aopts.address = raw->address;
    aopts.port = raw->port;
    aopts.metrics_port = raw->metrics_port;
    aopts.threads = raw->threads;
    aopts.id = ropts.activator_host + ":" + std::to_string(raw->port);
    aopts.handle_signals = false;
    aopts.drain_timeout = std::chrono::milliseconds(0);
    aopts.listener = &runtime;
    aopts.extra_metrics = [&runtime](std::vector<prometheus::MetricFamily>& out) {
      runtime.collect_metrics(out);
    };
    // Replicas get free ports only once the activator holds its own.
    aopts.on_listening = [&](uint16_t port) {
      boost::asio::post(io, [&, port] { runtime.start(port); });
    };
    activator::Activator act(aopts);
    runtime::LocalRuntime::Sink sink;
    sink.endpoints = [&act](config::EndpointsFile f) { act.update_endpoints(std::move(f)); };
    sink.failure = [&act](const std::string& revision, std::optional<std::string> why) {
      act.set_revision_failure(revision, std::move(why));
    };
    sink.local_pod = [&act](const std::string& address, std::shared_ptr<queue::ReplicaGuard> guard,
                            bool serving) {
      if (serving) {
        act.set_local_pod(address, std::move(guard));
      } else {
        act.unset_local_pod(address, guard.get());
      }
    };
    sink.pod_state = [&act](const std::string& revision, const std::string& address,
                            activator::PushedState state, const std::string& instance) {
      act.push_pod_state(revision, address, state, instance);
    };
    sink.home = &act.home_context();
    runtime.connect(std::move(sink));

    // Ctrl-C / SIGTERM: the activator finishes what it holds (for at most kGrace), then
    // every replica drains. A second one stops now: buffered requests get 503 naming the
    // shutdown, replicas get SIGTERM and, 2 s later, SIGKILL.
    constexpr auto kGrace = std::chrono::seconds(30);
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    auto guard = boost::asio::make_work_guard(io);
    int activator_rc = 0;
    std::thread activator_thread;
    bool shutting_down = false;
    bool stopping_now = false;
    std::function<void(const boost::system::error_code&, int)> on_signal =
        [&](const boost::system::error_code& e, int sig) {
          if (e)
            return;
          const char* what = sig == SIGINT ? "Ctrl-C" : "SIGTERM";
          if (!shutting_down) {
            spdlog::info(
                "{}: draining for up to {} s (requests in flight finish, then replicas "
                "stop); {} again stops now",
                what, kGrace.count(), what);
            shutting_down = true;
            act.shutdown(kGrace);
          } else if (!stopping_now) {
            spdlog::warn("second {}: stopping now", what);
            stopping_now = true;
            act.stop_now();
            runtime.stop_now();
          }
          signals.async_wait(on_signal);
        };
    signals.async_wait(on_signal);
    activator_thread = std::thread([&] {
      activator_rc = act.run();
      boost::asio::post(io, [&] {
        runtime.stop_all([&] {
          guard.reset();
          io.stop();
        });
      });
    });
    io.run();
    activator_thread.join();
    spdlog::info("stopped");
    return activator_rc;
  };
}

}  // namespace sluice::cli
