#include "queue/queue_proxy.h"

#include <fmt/format.h>
#include <malloc.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <thread>

#include "config/duration.h"
#include "core/random.h"
#include "http/client.h"
#include "http/connection.h"
#include "http/h2_client.h"
#include "http/h2_server.h"
#include "queue/probe_classifier.h"
#include "queue/replica_guard.h"
#include "stats/stat.pb.h"

namespace sluice::queue {

using namespace std::chrono_literals;
using http::Exchange;
using http::asio::use_awaitable;

class QueueProxyImpl {
 public:
  QueueProxyImpl(config::QueueProxyConfig cfg, core::TimeSource* time);
  int run();

 private:
  Task<void> handle_main(Exchange& ex);
  Task<void> handle_admin(Exchange& ex);
  Task<void> handle_stats(Exchange& ex);
  Task<void> handle_metrics(Exchange& ex);

  Task<void> report_stats_loop();
  // Sluice extension: tell the activators this pod's state at once (fire-and-forget).
  void push_state(std::string_view state);
  Task<void> send_push(std::string activator, std::string state);
  Task<void> drain_and_stop(bool wait_quiet_period);
  Task<void> wait_quiet_period();
  // With --app-protocol auto, once the app is first ready: ask it whether it speaks h2c
  // (readiness is withheld until then).
  Task<void> detect_app_protocol();

  config::QueueProxyConfig cfg_;
  core::SteadyTimeSource steady_;
  core::TimeSource& time_;
  const core::TimePoint started_ = time_.now();
  std::unique_ptr<http::Worker> control_worker_;
  asio::io_context& control_io_;
  std::vector<std::unique_ptr<http::Worker>> workers_;
  // The replica's breaker, stats, prober, metrics and request path; home is worker 0.
  std::unique_ptr<ReplicaGuard> guard_;
  std::atomic<bool> sigterm_{false};
  std::atomic<std::shared_ptr<const std::string>> stat_wire_;

  http::MemberHandler<QueueProxyImpl, &QueueProxyImpl::handle_main> main_handler_{*this};
  http::MemberHandler<QueueProxyImpl, &QueueProxyImpl::handle_admin> admin_handler_{*this};
  http::MemberHandler<QueueProxyImpl, &QueueProxyImpl::handle_stats> stats_handler_{*this};
  http::MemberHandler<QueueProxyImpl, &QueueProxyImpl::handle_metrics> metrics_handler_{*this};
  std::unique_ptr<http::Server> main_server_, admin_server_, stats_server_, metrics_server_;
  bool drain_started_ = false;  // control thread
  // A SIGINT during a SIGTERM drain ends the quiet period (control thread).
  bool skip_quiet_ = false;
};

QueueProxyImpl::QueueProxyImpl(config::QueueProxyConfig cfg, core::TimeSource* time)
    : cfg_(std::move(cfg)),
      time_(time != nullptr ? *time : steady_),
      control_worker_(std::make_unique<http::Worker>(1000, time_, core::os_seed(), 0)),
      control_io_(control_worker_->io()) {
  const uint64_t seed = core::os_seed();
  const size_t max_idle = cfg_.container_concurrency > 0 ? cfg_.container_concurrency : 1000;
  for (int i = 0; i < cfg_.threads; ++i) {
    workers_.push_back(std::make_unique<http::Worker>(i, time_, seed, max_idle));
  }
  ReplicaGuard::Options g;
  g.config = cfg_;
  g.time = &time_;
  g.home = &workers_.front()->io();
  g.control = &control_io_;
  g.shards = static_cast<size_t>(cfg_.threads);
  g.instance_id = core::random_hex_id(control_worker_->random());
  if (cfg_.request_log) {
    g.request_log = spdlog::stdout_logger_mt("request");
    g.request_log->set_pattern("%v");
  }
  guard_ = std::make_unique<ReplicaGuard>(std::move(g));
  stats::wire::Stat empty;
  empty.set_pod_name(cfg_.pod_name);
  stat_wire_.store(std::make_shared<const std::string>(empty.SerializeAsString()));
}

// ---------------------------------------------------------------------------------------
// Main port

Task<void> QueueProxyImpl::handle_main(Exchange& ex) {
  const ProbeClass probe = classify_probe(ex.request());
  if (probe.kind != ProbeKind::None) {
    co_await guard_->answer_probe(ex, probe);
    co_return;
  }
  ReplicaGuard::Hop hop;
  hop.proxied = ex.request().get("K-Proxy-Request") == std::optional<std::string_view>("activator");
  co_await guard_->serve(ex, hop);
}

// ---------------------------------------------------------------------------------------
// Control-thread endpoints

Task<void> QueueProxyImpl::handle_admin(Exchange& ex) {
  if (ex.request().target != "/wait-for-drain") {
    co_await ex.respond(404, "not found: the admin port serves /wait-for-drain");
    co_return;
  }
  // The user container's preStop hook: start draining and answer once drained. If the
  // queue-proxy itself gets no SIGTERM within a second (the app alone is restarting),
  // stop draining and answer at once so serving goes on (Knative's behaviour).
  guard_->set_draining(true);
  core::Timer t(time_, control_io_.get_executor());
  t.expires_after(1s);
  co_await t.async_wait(http::kUseTuple);
  if (!sigterm_.load()) {
    guard_->set_draining(false);
    co_await ex.respond(200, "");
    co_return;
  }
  co_await wait_quiet_period();
  co_await ex.respond(200, "");
}

Task<void> QueueProxyImpl::handle_stats(Exchange& ex) {
  auto wire = stat_wire_.load();
  // (headers built outside co_await: GCC 12 rejects string-literal braced lists there)
  const http::ExtraHeaders extra{{"Content-Type", "application/protobuf"}};
  co_await ex.respond(200, *wire, extra);
}

Task<void> QueueProxyImpl::handle_metrics(Exchange& ex) {
  if (ex.request().target.substr(0, 8) != "/metrics") {
    co_await ex.respond(404, "not found: metrics are at /metrics");
    co_return;
  }
  std::string text = guard_->metrics().registry().serialize();
  const http::ExtraHeaders extra{{"Content-Type", "text/plain; version=0.0.4; charset=utf-8"}};
  co_await ex.respond(200, text, extra);
}

Task<void> QueueProxyImpl::report_stats_loop() {
  core::Timer tick(time_, control_io_.get_executor());
  auto next = time_.now();
  int quiet_seconds = 0;
  for (;;) {
    next += 1s;
    tick.expires_at(next);
    auto [ec] = co_await tick.async_wait(http::kUseTuple);
    if (ec)
      co_return;
    auto cut = [this]() -> Task<stats::Report> { co_return guard_->cut_stats(time_.now()); };
    stats::Report r = co_await asio::co_spawn(workers_.front()->executor(), cut(), use_awaitable);
    stats::wire::Stat stat;
    stat.set_pod_name(cfg_.pod_name);
    stat.set_average_concurrent_requests(r.average_concurrency);
    stat.set_average_proxied_concurrent_requests(r.average_proxied_concurrency);
    // Knative divides the window's count by its 1 s reporting period: requests per second.
    stat.set_request_count(r.request_count);
    stat.set_proxied_request_count(r.proxied_request_count);
    stat.set_process_uptime(core::to_seconds(time_.now() - started_));
    stat_wire_.store(std::make_shared<const std::string>(stat.SerializeAsString()));
    // A sidecar's memory is paid once per replica: after 5 quiet seconds hand the
    // buffers a burst left behind back to the kernel (once per quiet spell).
    if (r.request_count == 0 && r.average_concurrency == 0) {
      if (++quiet_seconds == 5)
        malloc_trim(0);
    } else {
      quiet_seconds = 0;
    }
  }
}

Task<void> QueueProxyImpl::detect_app_protocol() {
  // The prober found the app ready: ask it once whether it speaks h2c. A failed connect
  // (the app just went away) is asked again while the app stays ready.
  core::Timer pause(time_, control_io_.get_executor());
  const auto& app = guard_->http1_target();
  while (guard_->prober().ready() && !guard_->protocol_known()) {
    const auto h2c = co_await http::speaks_h2c(control_io_.get_executor(), time_, app.endpoint,
                                               std::chrono::seconds(2));
    if (h2c) {
      guard_->set_app_protocol(*h2c);
      spdlog::info("app at {} speaks {} (detected: --app-protocol auto)", app.authority,
                   *h2c ? "h2c" : "HTTP/1.1");
      push_state("ready");
      co_return;
    }
    pause.expires_after(std::chrono::milliseconds(100));
    co_await pause.async_wait(http::kUseTuple);
  }
}

void QueueProxyImpl::push_state(std::string_view state) {
  for (const auto& a : cfg_.activators) {
    asio::co_spawn(control_io_, send_push(a, std::string(state)), asio::detached);
  }
}

Task<void> QueueProxyImpl::send_push(std::string activator, std::string state) {
  const auto colon = activator.rfind(':');
  std::string host = activator.substr(0, colon);
  if (host.size() > 2 && host.front() == '[')
    host = host.substr(1, host.size() - 2);
  http::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) {
    spdlog::warn("push to activator {}: {} is not an IP address", activator, host);
    co_return;
  }
  tcp::endpoint ep(address, static_cast<uint16_t>(std::stoi(activator.substr(colon + 1))));
  const std::string request = fmt::format(
      "POST /.sluice/pod-state HTTP/1.1\r\nHost: {}\r\nSluice-Namespace: {}\r\n"
      "Sluice-Revision: {}\r\nSluice-Pod: {}:{}\r\nSluice-Pod-State: {}\r\n{}: {}\r\n"
      "Content-Length: 0\r\nConnection: close\r\n\r\n",
      activator, cfg_.namespace_name, cfg_.revision_name, cfg_.pod_ip, main_server_->port(), state,
      kInstanceHeader, guard_->instance_id());
  co_await http::fetch(control_io_.get_executor(), ep, request, 1s, 1024);
}

Task<void> QueueProxyImpl::wait_quiet_period() {
  core::Timer t(time_, control_io_.get_executor());
  const auto drain_started = time_.now();
  while (!skip_quiet_) {
    core::TimePoint quiet_until =
        std::max(drain_started, guard_->last_request()) + cfg_.drain_quiet_period;
    if (time_.now() >= quiet_until)
      co_return;
    // Wakes at least every 100 ms to see a SIGINT that ends the quiet period early.
    t.expires_at(std::min(quiet_until, time_.now() + 100ms));
    co_await t.async_wait(http::kUseTuple);
  }
}

Task<void> QueueProxyImpl::drain_and_stop(bool wait_quiet) {
  if (drain_started_)
    co_return;
  drain_started_ = true;
  guard_->set_draining(true);
  push_state("draining");
  if (wait_quiet) {
    spdlog::info("draining: probes now fail; waiting for {} without new requests",
                 config::format_duration(cfg_.drain_quiet_period));
    co_await wait_quiet_period();
  }
  spdlog::info("draining: no longer accepting; {} request(s) and tunnel(s) in flight",
               main_server_->load().active_requests.load());
  main_server_->stop_accepting();
  main_server_->close_idle_connections();
  core::Timer t(time_, control_io_.get_executor());
  const auto deadline = time_.now() + cfg_.revision_timeout;
  while (main_server_->load().active_requests.load() > 0 && time_.now() < deadline) {
    t.expires_after(25ms);
    co_await t.async_wait(http::kUseTuple);
    main_server_->close_idle_connections();
  }
  if (auto left = main_server_->load().active_requests.load(); left > 0) {
    spdlog::warn("drain: {} request(s) still running after the revision timeout; exiting", left);
  }
  guard_->stop();
  for (auto& w : workers_) w->stop();
  control_worker_->stop();
}

int QueueProxyImpl::run() {
  std::vector<http::Worker*> worker_ptrs;
  for (auto& w : workers_) worker_ptrs.push_back(w.get());
  http::ServerOptions main_opts;
  main_opts.name = "queue-proxy";
  main_opts.header_timeout = cfg_.header_timeout;
  main_opts.on_reject = [this](http::Worker& w, http::Rejection r) {
    guard_->metrics().count_rejection(w.index(), r);
  };
  main_opts.h2 = http::h2_options_like(main_opts);
  main_server_ = std::make_unique<http::Server>(worker_ptrs, main_handler_, main_opts);
  http::ServerOptions side_opts;
  side_opts.name = "queue-proxy-admin";
  std::vector<http::Worker*> control{control_worker_.get()};
  admin_server_ = std::make_unique<http::Server>(control, admin_handler_, side_opts);
  stats_server_ = std::make_unique<http::Server>(control, stats_handler_, side_opts);
  metrics_server_ = std::make_unique<http::Server>(control, metrics_handler_, side_opts);

  // Caught from before the ports open: a SIGTERM sent as soon as the port answers must
  // start the drain, not kill the process with the default action.
  asio::signal_set signals(control_io_, SIGTERM, SIGINT);
  struct Bind {
    http::Server* server;
    uint16_t port;
    const char* what;
  };
  const Bind binds[] = {
      {main_server_.get(), cfg_.port, "serving port (--port/QUEUE_SERVING_PORT)"},
      {admin_server_.get(), cfg_.admin_port, "admin port (--admin-port)"},
      {stats_server_.get(), cfg_.stats_port, "stats port (--stats-port)"},
      {metrics_server_.get(), cfg_.metrics_port, "metrics port (--metrics-port)"}};
  for (const auto& b : binds) {
    if (b.server == metrics_server_.get() && cfg_.metrics_backend == "none")
      continue;
    const auto ec =
        cfg_.address.empty()
            ? b.server->listen_on_all(b.port)
            : b.server->listen(tcp::endpoint(asio::ip::make_address(cfg_.address), b.port));
    if (ec) {
      spdlog::error("cannot listen on {} {}: {}", b.what, b.port, ec.message());
      return 1;
    }
  }
  spdlog::info(
      "queue-proxy for revision {}/{} listening on {}:{} (admin :{}, stats :{}, metrics :{}), "
      "app at {}, containerConcurrency {}, revision timeout {}, {} worker(s)",
      cfg_.namespace_name, cfg_.revision_name, cfg_.address, main_server_->port(),
      admin_server_->port(), stats_server_->port(), metrics_server_->port(),
      guard_->http1_target().authority, cfg_.container_concurrency,
      config::format_duration(cfg_.revision_timeout), cfg_.threads);
  for (const auto& n : cfg_.notices) spdlog::warn("{}", n);

  guard_->prober().on_change([this](bool ready) {
    if (ready && !guard_->protocol_known()) {
      asio::co_spawn(control_io_, detect_app_protocol(), asio::detached);  // pushes "ready"
      return;
    }
    push_state(ready ? "ready" : "not-ready");
  });
  guard_->start();
  asio::co_spawn(control_io_, report_stats_loop(), asio::detached);
  std::function<void(const http::error_code&, int)> on_signal;
  on_signal = [&](const http::error_code& ec, int sig) {
    if (ec)
      return;
    if (sig == SIGTERM) {
      sigterm_ = true;
      spdlog::info("SIGTERM: draining");
      asio::co_spawn(control_io_, drain_and_stop(true), asio::detached);
    } else {
      // Ctrl-C in a terminal: no endpoints to propagate, skip the quiet period (also
      // when a SIGTERM drain is already waiting in it).
      spdlog::info("SIGINT: finishing in-flight requests and exiting");
      skip_quiet_ = true;
      asio::co_spawn(control_io_, drain_and_stop(false), asio::detached);
    }
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);

  std::vector<std::thread> threads;
  for (auto& w : workers_) threads.emplace_back([&w] { w->run(); });
  control_worker_->run();
  for (auto& t : threads) t.join();
  spdlog::info("queue-proxy stopped");
  return 0;
}

QueueProxy::QueueProxy(config::QueueProxyConfig config, core::TimeSource* time)
    : impl_(std::make_unique<QueueProxyImpl>(std::move(config), time)) {}
QueueProxy::~QueueProxy() = default;
int QueueProxy::run() {
  return impl_->run();
}

}  // namespace sluice::queue
