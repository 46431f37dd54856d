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
#include <boost/static_string/static_string.hpp>
#include <thread>

#include "admission/breaker.h"
#include "admission/timer_waiter.h"
#include "config/duration.h"
#include "core/random.h"
#include "http/client.h"
#include "http/connection.h"
#include "http/forward.h"
#include "http/grpc.h"
#include "http/h2_client.h"
#include "http/h2_server.h"
#include "queue/probe_classifier.h"
#include "queue/queue_metrics.h"
#include "queue/readiness_prober.h"
#include "stats/request_stats.h"
#include "stats/stat.pb.h"

namespace sluice::queue {

using namespace std::chrono_literals;
using http::Exchange;
using http::asio::use_awaitable;

namespace {

// Headers on answers the queue-proxy makes itself. Sluice-Error names the cause;
// Sluice-Not-Forwarded says the app never saw the request, so a retry elsewhere is safe.
constexpr std::string_view kErrorHeader = "Sluice-Error";
constexpr std::string_view kNotForwardedHeader = "Sluice-Not-Forwarded";
constexpr std::string_view kRevisionHeader = "Sluice-Revision";
// Which queue-proxy process answers: the activator treats a new one on a known address as
// a restarted replica (a new pod), not as the old one recovering.
constexpr std::string_view kInstanceHeader = "Sluice-Pod-Instance";
// How much of a request id the queue-proxy's own warnings print.
constexpr size_t kLoggedIdLength = 128;

}  // namespace

class QueueProxyImpl {
 public:
  QueueProxyImpl(config::QueueProxyConfig cfg, core::TimeSource* time);
  int run();

 private:
  struct Admission {
    admission::Breaker::Admit result = admission::Breaker::Admit::Admitted;
    core::Duration queued{0};
  };

  Task<void> handle_main(Exchange& ex);
  Task<void> handle_probe(Exchange& ex, const ProbeClass& probe);
  Task<void> handle_admin(Exchange& ex);
  Task<void> handle_stats(Exchange& ex);
  Task<void> handle_metrics(Exchange& ex);

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
  Task<Admission> enter(bool proxied,
                        core::TimePoint now,
                        core::TimePoint deadline,
                        http::Exchange& client);
  void leave(bool proxied, bool held_slot, core::TimePoint now);

  Task<void> report_stats_loop();
  // Sluice extension: tell the activators this pod's state at once (fire-and-forget).
  void push_state(std::string_view state);
  Task<void> send_push(std::string activator, std::string state);
  Task<void> drain_and_stop(bool wait_quiet_period);
  Task<void> wait_quiet_period();
  bool on_home() const { return workers_.front()->io().get_executor().running_in_this_thread(); }

  config::QueueProxyConfig cfg_;
  core::SteadyTimeSource steady_;
  core::TimeSource& time_;
  const core::TimePoint started_ = time_.now();
  std::unique_ptr<http::Worker> control_worker_;
  asio::io_context& control_io_;
  std::vector<std::unique_ptr<http::Worker>> workers_;
  std::unique_ptr<admission::Breaker> breaker_;  // home only; null when CC = 0
  stats::RequestStats stats_{started_};          // home only
  QueueMetrics metrics_;
  ReadinessProber prober_;
  http::ForwardTarget target_;      // the app over HTTP/1.1
  http::ForwardTarget h2c_target_;  // the same app over h2c
  // Which of the two requests take; with --app-protocol auto, decided once the app is
  // first ready (detect_app_protocol), and readiness is withheld until then.
  std::atomic<bool> app_h2c_{false};
  std::atomic<bool> protocol_known_{true};
  const http::ForwardTarget& app_target() const {
    return app_h2c_.load(std::memory_order_acquire) ? h2c_target_ : target_;
  }
  bool app_is_ready() const {
    return prober_.ready() && protocol_known_.load(std::memory_order_acquire);
  }
  Task<void> detect_app_protocol();
  std::atomic<bool> draining_{false};
  std::atomic<bool> sigterm_{false};
  std::atomic<int64_t> last_request_ns_{0};
  std::atomic<std::shared_ptr<const std::string>> stat_wire_;
  std::shared_ptr<spdlog::logger> request_log_;
  std::string instance_id_;  // random per process (Sluice-Pod-Instance)

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
      control_io_(control_worker_->io()),
      metrics_(cfg_, static_cast<size_t>(cfg_.threads)),
      prober_(control_io_, time_, cfg_.readiness_probes, cfg_.startup_probe_interval) {
  const uint64_t seed = core::os_seed();
  instance_id_ = core::random_hex_id(control_worker_->random());
  const size_t max_idle = cfg_.container_concurrency > 0 ? cfg_.container_concurrency : 1000;
  for (int i = 0; i < cfg_.threads; ++i) {
    workers_.push_back(std::make_unique<http::Worker>(i, time_, seed, max_idle));
  }
  if (cfg_.container_concurrency > 0) {
    breaker_ = std::make_unique<admission::Breaker>(cfg_.container_concurrency,
                                                    10 * cfg_.container_concurrency);
  }
  target_.endpoint = tcp::endpoint(asio::ip::address_v4::loopback(), cfg_.user_port);
  target_.authority = "127.0.0.1:" + std::to_string(cfg_.user_port);
  target_.protocol = http::Protocol::Http1;
  h2c_target_ = target_;
  h2c_target_.protocol = http::Protocol::Http2;
  app_h2c_.store(cfg_.app_h2c);
  protocol_known_.store(!cfg_.app_protocol_auto);
  stats::wire::Stat empty;
  empty.set_pod_name(cfg_.pod_name);
  stat_wire_.store(std::make_shared<const std::string>(empty.SerializeAsString()));
  if (cfg_.request_log) {
    request_log_ = spdlog::stdout_logger_mt("request");
    request_log_->set_pattern("%v");
  }
}

// ---------------------------------------------------------------------------------------
// Main port

Task<void> QueueProxyImpl::handle_main(Exchange& ex) {
  const auto& head = ex.request();
  const ProbeClass probe = classify_probe(head);
  if (probe.kind != ProbeKind::None) {
    co_await handle_probe(ex, probe);
    co_return;
  }
  http::Worker& worker = ex.worker();
  const size_t shard = worker.index();
  last_request_ns_.store(ex.started_at().time_since_epoch().count(), std::memory_order_relaxed);

  const bool proxied = head.get("K-Proxy-Request") == std::optional<std::string_view>("activator");
  const bool count_in_metrics = !is_probe_for_metrics(head);
  const RouteTag route_tag = route_tag_of(head);
  // Request id: the fork's run-id first, then X-Request-Id, else a fresh one. The view
  // is good until forward() starts reading; the request log keeps its own copy.
  char generated_id[core::kHexIdLength];
  std::string_view request_id;
  if (auto v = head.get("run-id"); v && !v->empty()) {
    request_id = *v;
  } else if (auto x = head.get("X-Request-Id"); x && !x->empty()) {
    request_id = *x;
  } else {
    core::random_hex_id(worker.random(), generated_id);
    request_id = std::string_view(generated_id, sizeof(generated_id));
  }
  // Views into the client's read buffer dangle once forward() reads the body (it may
  // reallocate): what is logged after forwarding is an owned copy, truncated to a
  // bounded size so a hostile id cannot make the copy large.
  const auto kept = request_id.substr(0, kLoggedIdLength);
  const boost::static_strings::static_string<kLoggedIdLength> logged_id(kept.data(), kept.size());
  std::string log_id, method, path;
  if (request_log_) {
    log_id = request_id;
    method = head.method_text;
    path = head.target;
  }

  // Knative's timers all start at arrival; queueing counts against them.
  core::Duration start_limit = cfg_.revision_timeout;
  if (cfg_.response_start_timeout.count() > 0) {
    start_limit = std::min<core::Duration>(start_limit, cfg_.response_start_timeout);
  }
  if (cfg_.idle_timeout.count() > 0) {
    start_limit = std::min<core::Duration>(start_limit, cfg_.idle_timeout);
  }
  // A gRPC call's own deadline (grpc-timeout) bounds it too, queueing included; the app
  // is told what is left of it when the request leaves the queue.
  std::optional<core::Duration> grpc_left;
  if (http::is_grpc(head))
    grpc_left = http::grpc_timeout(head);
  const core::TimePoint call_deadline =
      grpc_left ? ex.started_at() + *grpc_left : core::TimePoint::max();
  const bool call_bound = call_deadline <= ex.started_at() + start_limit;
  const core::TimePoint deadline = std::min(ex.started_at() + start_limit, call_deadline);
  // "the call's deadline (grpc-timeout 0.300 s) passed while ..."
  const auto deadline_passed = [&](std::string_view while_what) {
    return fmt::format("the call's deadline (grpc-timeout {:.3f} s) passed {}",
                       core::to_seconds(*grpc_left), while_what);
  };
  const Admission admission = co_await enter(proxied, ex.started_at(), deadline, ex);
  using Admit = admission::Breaker::Admit;
  int status = 0;
  core::TimePoint end{};
  bool app_answered = false;
  core::TimePoint app_started{};
  const bool held_slot = admission.result == Admit::Admitted;

  auto error = [&](int code, ProxyError why, std::string body, bool not_forwarded) -> Task<void> {
    metrics_.count_error(shard, why);
    http::ExtraHeaders extra{{kErrorHeader, to_string(why)}};
    if (not_forwarded)
      extra.emplace_back(kNotForwardedHeader, "true");
    co_await ex.respond(code, body, extra);
  };

  if (breaker_)
    metrics_.record_queue_time(shard, core::to_seconds(admission.queued));
  if (admission.result == Admit::QueueFull) {
    co_await error(503, ProxyError::QueueFull, "pending request queue full", true);
  } else if (admission.result == Admit::Expired && call_bound) {
    co_await error(504, ProxyError::GrpcDeadline,
                   deadline_passed(fmt::format("while it waited for one of the {} slot(s)",
                                               cfg_.container_concurrency)),
                   true);
  } else if (admission.result == Admit::Expired) {
    co_await error(504, ProxyError::QueueTimeout, "request timeout", true);
  } else if (admission.result == Admit::Closed) {
    co_await error(503, ProxyError::Draining, "shutting down", true);
  } else if (admission.result == Admit::Cancelled) {
    // The client hung up while queued: nobody to answer; the connection is closed.
    metrics_.count_error(shard, ProxyError::ClientGoneWhileQueued);
    ex.close_after();
  } else if (time_.now() >= call_deadline) {
    // Nothing left of the call's time (a "0m" deadline, or queueing took all of it).
    co_await error(504, ProxyError::GrpcDeadline, deadline_passed("before it reached the app"),
                   true);
  } else {
    http::ForwardOptions options;
    options.rewrite.host = http::UpstreamRequestOptions::Host::RestoreOriginal;
    options.rewrite.upstream_authority = target_.authority;
    options.rewrite.client_ip = ex.client_ip();
    options.rewrite.request_id = request_id;
    options.response_start_deadline = deadline;
    options.idle_timeout = cfg_.idle_timeout;
    std::string left;
    if (grpc_left) {
      left = http::format_grpc_timeout(call_deadline - time_.now());
      options.rewrite.grpc_timeout = left;
      options.call_deadline = call_deadline;
    }
    auto result = co_await http::forward(ex, app_target(), options);
    using Outcome = http::ForwardResult::Outcome;
    app_started = result.connected_at;
    end = result.finished_at != core::TimePoint{} ? result.finished_at : time_.now();
    const double ms = core::to_millis(end - app_started);
    metrics_.record_proxy_start(shard, core::to_seconds(result.connected_at - ex.started_at()));
    switch (result.outcome) {
      case Outcome::Completed:
      case Outcome::ClientGone:
        app_answered = result.response_started;
        break;
      case Outcome::BrokenAfterStart:
        app_answered = true;
        metrics_.count_error(shard, ProxyError::BrokenMidResponse);
        spdlog::warn("request {}: app connection broke mid-response: {}",
                     std::string_view(logged_id.data(), logged_id.size()), result.error.message());
        break;
      case Outcome::ConnectFailed:
        prober_.report_unreachable();
        co_await error(502, ProxyError::ConnectFailed,
                       fmt::format("{} by {} after {:.1f} ms", http::failure_cause(result.error),
                                   target_.authority, ms),
                       true);
        break;
      case Outcome::UpstreamClosed:
        co_await error(502, ProxyError::UpstreamClosed,
                       fmt::format("{} by {} before it answered, after {:.1f} ms",
                                   http::failure_cause(result.error), target_.authority, ms),
                       false);
        break;
      case Outcome::BadResponse:
        co_await error(502, ProxyError::BadResponse,
                       fmt::format("invalid response from {} after {:.1f} ms: {}",
                                   target_.authority, ms, result.error.message()),
                       false);
        break;
      case Outcome::TimedOut:
        if (call_bound) {
          co_await error(504, ProxyError::GrpcDeadline,
                         deadline_passed(fmt::format("before {} answered", target_.authority)),
                         !result.request_sent);
        } else {
          co_await error(504, ProxyError::Timeout, "request timeout", !result.request_sent);
        }
        break;
      case Outcome::NeedsHttp2: {
        const http::ExtraHeaders extra{{kErrorHeader, std::string_view("http2_required")},
                                       {kNotForwardedHeader, std::string_view("true")}};
        co_await ex.respond(502, http::kNeedsHttp2, extra);
      } break;
      case Outcome::Intercepted:  // the queue-proxy sets no intercept
      case Outcome::BadRequestBody: {
        const http::ExtraHeaders extra{{kErrorHeader, std::string_view("malformed_body")}};
        const auto answer = http::bad_request_body_answer(result.error);
        co_await ex.respond(answer.status, answer.body, extra);
      } break;
    }
  }
  status = ex.responded() ? ex.status() : 499;
  // Errors answered after forward() took time to write; plain successes reuse its clock.
  if (end == core::TimePoint{} || !app_answered)
    end = time_.now();
  leave(proxied, held_slot, end);

  if (count_in_metrics) {
    const double total_ms = core::to_millis(end - ex.started_at());
    metrics_.record_request(shard, route_tag, status, total_ms);
    if (app_answered)
      metrics_.record_app_request(shard, status, core::to_millis(end - app_started));
  }
  if (request_log_) {
    request_log_->info(
        R"({{"requestId":"{}","method":"{}","path":"{}","status":{},"latencyMs":{:.3f},"queueMs":{:.3f},"proxied":{},"client":"{}"}})",
        log_id, method, path, status, core::to_millis(end - ex.started_at()),
        core::to_millis(admission.queued), proxied, ex.client_ip());
  }
}

Task<void> QueueProxyImpl::handle_probe(Exchange& ex, const ProbeClass& probe) {
  http::ExtraHeaders extra{{kRevisionHeader, cfg_.revision_name}, {kInstanceHeader, instance_id_}};
  const bool draining = draining_.load(std::memory_order_acquire);
  bool app_ready = false;
  if (probe.kind == ProbeKind::HealthCheck && !draining && app_is_ready()) {
    // (a statement of its own: GCC 12 miscompiles co_await inside a condition)
    app_ready = co_await asio::co_spawn(control_io_, prober_.check(), use_awaitable);
  }
  switch (probe.kind) {
    case ProbeKind::HealthCheck:
      if (draining) {
        co_await ex.respond(503, "shutting down", extra);
      } else if (probe.probe_value != "queue") {
        co_await ex.respond(
            400, fmt::format("unexpected probe header value: {}", probe.probe_value), extra);
      } else if (app_ready) {
        co_await ex.respond(200, "queue", extra);
      } else {
        prober_.kick();
        co_await ex.respond(503, "", extra);
      }
      break;
    case ProbeKind::NetworkProbe:
      if (draining) {
        co_await ex.respond(503, "shutting down", extra);
      } else if (probe.hash.empty()) {
        co_await ex.respond(400, "no K-Network-Hash header in request", extra);
      } else {
        std::string hash(probe.hash);
        extra.emplace_back("K-Network-Hash", hash);
        co_await ex.respond(200, "", extra);
      }
      break;
    case ProbeKind::BadValue:
      co_await ex.respond(400, fmt::format("unexpected probe header value: {}", probe.probe_value),
                          extra);
      break;
    case ProbeKind::None:
      break;
  }
}

// ---------------------------------------------------------------------------------------
// Admission: breaker and stats live on the home worker.

Task<QueueProxyImpl::Admission> QueueProxyImpl::enter_on_home(
    bool proxied,
    core::TimePoint now,
    core::TimePoint deadline,
    std::shared_ptr<admission::WaitToken> token,
    http::Exchange* client) {
  using Event = stats::RequestStats::Event;
  // Recorded before the breaker: queued requests count as concurrency (Knative).
  stats_.handle(proxied ? Event::ProxiedIn : Event::ReqIn, now);
  Admission a;
  if (!breaker_)
    co_return a;
  metrics_.queue_depth.store(breaker_->pending(), std::memory_order_relaxed);
  admission::TimerWaiter waiter(time_, workers_.front()->executor());
  a.result = breaker_->acquire(waiter, now, deadline);
  if (a.result == admission::Breaker::Admit::Queued) {
    // On the client's worker the hang-up watch starts only now: most requests never queue.
    std::unique_ptr<http::HangupWatch> watch;
    if (!token) {
      token = std::make_shared<admission::WaitToken>(workers_.front()->executor());
      watch = client->watch_hangup([token] { admission::WaitToken::abandon(token); });
    }
    metrics_.pending_requests.store(breaker_->waiting(), std::memory_order_relaxed);
    waiter.timer.expires_at(deadline);
    token->waiter = &waiter;
    if (!token->abandoned)
      co_await waiter.timer.async_wait(http::kUseTuple);
    token->waiter = nullptr;
    using State = admission::Waiter::State;
    if (waiter.state() == State::Admitted) {
      a.result = admission::Breaker::Admit::Admitted;
    } else if (waiter.state() == State::Closed) {
      a.result = admission::Breaker::Admit::Closed;
    } else if (token->abandoned) {
      breaker_->cancel(waiter);
      a.result = admission::Breaker::Admit::Cancelled;
    } else {
      breaker_->expire(waiter, time_.now());
      breaker_->cancel(waiter);  // covers a spurious wake before the deadline
      a.result = admission::Breaker::Admit::Expired;
    }
    a.queued = time_.now() - now;
    metrics_.pending_requests.store(breaker_->waiting(), std::memory_order_relaxed);
  }
  co_return a;
}

void QueueProxyImpl::leave_on_home(bool proxied, bool held_slot, core::TimePoint now) {
  using Event = stats::RequestStats::Event;
  stats_.handle(proxied ? Event::ProxiedOut : Event::ReqOut, now);
  if (breaker_ && held_slot) {
    breaker_->release();
    metrics_.pending_requests.store(breaker_->waiting(), std::memory_order_relaxed);
  }
}

Task<QueueProxyImpl::Admission> QueueProxyImpl::enter(bool proxied,
                                                      core::TimePoint now,
                                                      core::TimePoint deadline,
                                                      http::Exchange& client) {
  if (on_home())
    co_return co_await enter_on_home(proxied, now, deadline, nullptr, &client);
  // From another worker, whichever it is, the client's hang-up reaches the queue on home
  // at once: the watch covers the whole hop.
  auto token = std::make_shared<admission::WaitToken>(workers_.front()->executor());
  std::unique_ptr<http::HangupWatch> watch;
  if (breaker_)
    watch = client.watch_hangup([token] { admission::WaitToken::abandon(token); });
  co_return co_await asio::co_spawn(workers_.front()->executor(),
                                    enter_on_home(proxied, now, deadline, token, nullptr),
                                    use_awaitable);
}

void QueueProxyImpl::leave(bool proxied, bool held_slot, core::TimePoint now) {
  if (on_home()) {
    leave_on_home(proxied, held_slot, now);
  } else {
    asio::post(workers_.front()->io(),
               [this, proxied, held_slot, now] { leave_on_home(proxied, held_slot, now); });
  }
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
  draining_.store(true, std::memory_order_release);
  core::Timer t(time_, control_io_.get_executor());
  t.expires_after(1s);
  co_await t.async_wait(http::kUseTuple);
  if (!sigterm_.load()) {
    draining_.store(false, std::memory_order_release);
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
  std::string text = metrics_.registry().serialize();
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
    auto cut = [this]() -> Task<stats::Report> { co_return stats_.report(time_.now()); };
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
  while (prober_.ready() && !protocol_known_.load()) {
    const auto h2c = co_await http::speaks_h2c(control_io_.get_executor(), time_, target_.endpoint,
                                               std::chrono::seconds(2));
    if (h2c) {
      app_h2c_.store(*h2c, std::memory_order_release);
      protocol_known_.store(true, std::memory_order_release);
      spdlog::info("app at {} speaks {} (detected: --app-protocol auto)", target_.authority,
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
      kInstanceHeader, instance_id_);
  co_await http::fetch(control_io_.get_executor(), ep, request, 1s, 1024);
}

Task<void> QueueProxyImpl::wait_quiet_period() {
  core::Timer t(time_, control_io_.get_executor());
  const auto drain_started = time_.now();
  while (!skip_quiet_) {
    core::TimePoint last{core::Duration(last_request_ns_.load(std::memory_order_relaxed))};
    core::TimePoint quiet_until = std::max(drain_started, last) + cfg_.drain_quiet_period;
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
  draining_.store(true, std::memory_order_release);
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
  prober_.stop();
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
    metrics_.count_rejection(w.index(), r);
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
      admin_server_->port(), stats_server_->port(), metrics_server_->port(), target_.authority,
      cfg_.container_concurrency, config::format_duration(cfg_.revision_timeout), cfg_.threads);
  for (const auto& n : cfg_.notices) spdlog::warn("{}", n);

  prober_.on_change([this](bool ready) {
    if (ready && !protocol_known_.load()) {
      asio::co_spawn(control_io_, detect_app_protocol(), asio::detached);  // pushes "ready"
      return;
    }
    push_state(ready ? "ready" : "not-ready");
  });
  prober_.start();
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
