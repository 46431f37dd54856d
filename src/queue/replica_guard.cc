#include "queue/replica_guard.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/static_string/static_string.hpp>

#include "admission/timer_waiter.h"
#include "core/random.h"
#include "http/grpc.h"

namespace sluice::queue {

using namespace std::chrono_literals;
using http::Exchange;
using http::asio::use_awaitable;

namespace {
// How much of a request id the queue-proxy's own warnings print.
constexpr size_t kLoggedIdLength = 128;
}  // namespace

ReplicaGuard::ReplicaGuard(Options o)
    : cfg_(std::move(o.config)),
      time_(*o.time),
      home_(*o.home),
      control_(*o.control),
      stats_(time_.now()),
      metrics_(cfg_, o.shards),
      prober_(control_, time_, cfg_.readiness_probes, cfg_.startup_probe_interval),
      request_log_(std::move(o.request_log)),
      instance_id_(std::move(o.instance_id)),
      log_prefix_(std::move(o.log_prefix)) {
  prober_.set_log_prefix(log_prefix_);
  prober_.set_user_port(cfg_.user_port);
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
}

// ---------------------------------------------------------------------------------------
// The request path

Task<ReplicaGuard::Served> ReplicaGuard::serve(Exchange& ex, Hop hop) {
  const auto& head = ex.request();
  http::Worker& worker = ex.worker();
  const size_t shard = worker.index();
  // When the request reached the queue-proxy's work: Knative's queue-proxy timers and
  // latencies start there, after any buffering in the activator (in one hop that is now,
  // not the client's arrival at sluice).
  const core::TimePoint arrived = !hop.one_hop                           ? ex.started_at()
                                  : hop.handed_over != core::TimePoint{} ? hop.handed_over
                                                                         : time_.now();
  last_request_ns_.store(arrived.time_since_epoch().count(), std::memory_order_relaxed);
  in_flight_.fetch_add(1, std::memory_order_acq_rel);
  struct InFlight {
    std::atomic<int64_t>& n;
    ~InFlight() { n.fetch_sub(1, std::memory_order_acq_rel); }
  } in_flight{in_flight_};
  Served served;

  const bool proxied = hop.proxied;
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
  // (grpc-timeout counts from this process's own arrival: the activator's hop rewrote it
  // to what was left; in one hop the head still holds the client's own)
  const core::TimePoint call_deadline =
      grpc_left ? ex.started_at() + *grpc_left : core::TimePoint::max();
  const bool call_bound = call_deadline <= arrived + start_limit;
  const core::TimePoint deadline = std::min({arrived + start_limit, call_deadline, hop.deadline});
  // "the call's deadline (grpc-timeout 0.300 s) passed while ..."
  const auto deadline_passed = [&](std::string_view while_what) {
    return fmt::format("the call's deadline (grpc-timeout {:.3f} s) passed {}",
                       core::to_seconds(*grpc_left), while_what);
  };
  // Most requests find a free slot on the home thread: no coroutine for them.
  Admission admission;
  if (!enter_now(proxied, arrived))
    admission = co_await enter(proxied, arrived, deadline, ex);
  using Admit = admission::Breaker::Admit;
  int status = 0;
  core::TimePoint end{};
  bool app_answered = false;
  core::TimePoint app_started{};
  const bool held_slot = admission.result == Admit::Admitted;

  auto error = [&](int code, ProxyError why, std::string body, bool not_forwarded) -> Task<void> {
    metrics_.count_error(shard, why);
    if (not_forwarded && hop.hand_back) {
      served.result.outcome = http::ForwardResult::Outcome::Intercepted;
      served.result.status = code;
      served.not_forwarded_error = to_string(why);
      co_return;
    }
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
    served.result.outcome = http::ForwardResult::Outcome::ClientGone;
  } else if (time_.now() >= call_deadline) {
    // Nothing left of the call's time (a "0m" deadline, or queueing took all of it).
    co_await error(504, ProxyError::GrpcDeadline, deadline_passed("before it reached the app"),
                   true);
  } else {
    http::ForwardOptions options;
    options.rewrite.host = hop.one_hop ? http::UpstreamRequestOptions::Host::Keep
                                       : http::UpstreamRequestOptions::Host::RestoreOriginal;
    options.rewrite.add_proxy_request_header = hop.one_hop;
    options.buffered_body = hop.buffered_body;
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
    served.result.connected_at = result.connected_at;
    if (result.outcome == Outcome::ClientGone || result.outcome == Outcome::BrokenAfterStart)
      served.result.outcome = result.outcome;
    app_started = result.connected_at;
    end = result.finished_at != core::TimePoint{} ? result.finished_at : time_.now();
    const double ms = core::to_millis(end - app_started);
    metrics_.record_proxy_start(shard, core::to_seconds(result.connected_at - arrived));
    switch (result.outcome) {
      case Outcome::Completed:
      case Outcome::ClientGone:
        app_answered = result.response_started;
        break;
      case Outcome::BrokenAfterStart:
        app_answered = true;
        metrics_.count_error(shard, ProxyError::BrokenMidResponse);
        spdlog::warn("{}request {}: app connection broke mid-response: {}", log_prefix_,
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
  if (served.result.outcome == http::ForwardResult::Outcome::Intercepted) {
    status = served.result.status;
  } else {
    status = ex.responded() ? ex.status() : 499;
    served.result.status = status;
  }
  if (served.result.connected_at == core::TimePoint{})
    served.result.connected_at = time_.now();
  // Errors answered after forward() took time to write; plain successes reuse its clock.
  if (end == core::TimePoint{} || !app_answered)
    end = time_.now();
  leave(proxied, held_slot, end);

  if (count_in_metrics) {
    const double total_ms = core::to_millis(end - arrived);
    metrics_.record_request(shard, route_tag, status, total_ms);
    if (app_answered)
      metrics_.record_app_request(shard, status, core::to_millis(end - app_started));
  }
  if (request_log_) {
    request_log_->info(
        R"({{"requestId":"{}","method":"{}","path":"{}","status":{},"latencyMs":{:.3f},"queueMs":{:.3f},"proxied":{},"client":"{}"}})",
        log_id, method, path, status, core::to_millis(end - arrived),
        core::to_millis(admission.queued), proxied, ex.client_ip());
  }
  co_return served;
}

Task<bool> ReplicaGuard::health_check() {
  if (draining() || !app_is_ready())
    co_return false;
  // (a statement of its own: GCC 12 miscompiles co_await inside a condition)
  const bool ok = co_await asio::co_spawn(control_, prober_.check(), use_awaitable);
  co_return ok;
}

Task<void> ReplicaGuard::answer_probe(Exchange& ex, const ProbeClass& probe) {
  http::ExtraHeaders extra{{kRevisionHeader, cfg_.revision_name}, {kInstanceHeader, instance_id_}};
  const bool draining = draining_.load(std::memory_order_acquire);
  bool app_ready = false;
  if (probe.kind == ProbeKind::HealthCheck && !draining) {
    app_ready = co_await health_check();
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

Task<ReplicaGuard::Admission> ReplicaGuard::enter_on_home(
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
  admission::TimerWaiter waiter(time_, home_.get_executor());
  a.result = breaker_->acquire(waiter, now, deadline);
  if (a.result == admission::Breaker::Admit::Queued) {
    // On the client's worker the hang-up watch starts only now: most requests never queue.
    std::unique_ptr<http::HangupWatch> watch;
    if (!token) {
      token = std::make_shared<admission::WaitToken>(home_.get_executor());
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

void ReplicaGuard::leave_on_home(bool proxied, bool held_slot, core::TimePoint now) {
  using Event = stats::RequestStats::Event;
  stats_.handle(proxied ? Event::ProxiedOut : Event::ReqOut, now);
  if (breaker_ && held_slot) {
    breaker_->release();
    metrics_.pending_requests.store(breaker_->waiting(), std::memory_order_relaxed);
  }
}

Task<ReplicaGuard::Admission> ReplicaGuard::enter(bool proxied,
                                                  core::TimePoint now,
                                                  core::TimePoint deadline,
                                                  http::Exchange& client) {
  if (on_home())
    co_return co_await enter_on_home(proxied, now, deadline, nullptr, &client);
  // From another worker, whichever it is, the client's hang-up reaches the queue on home
  // at once: the watch covers the whole hop.
  auto token = std::make_shared<admission::WaitToken>(home_.get_executor());
  std::unique_ptr<http::HangupWatch> watch;
  if (breaker_)
    watch = client.watch_hangup([token] { admission::WaitToken::abandon(token); });
  co_return co_await asio::co_spawn(
      home_.get_executor(), enter_on_home(proxied, now, deadline, token, nullptr), use_awaitable);
}

bool ReplicaGuard::enter_now(bool proxied, core::TimePoint now) {
  if (!on_home())
    return false;
  if (breaker_ && !breaker_->try_acquire())
    return false;  // waits (or is refused) in enter()
  using Event = stats::RequestStats::Event;
  stats_.handle(proxied ? Event::ProxiedIn : Event::ReqIn, now);
  if (breaker_)  // what was there at arrival, as enter_on_home() records it
    metrics_.queue_depth.store(breaker_->pending() - 1, std::memory_order_relaxed);
  return true;
}

void ReplicaGuard::leave(bool proxied, bool held_slot, core::TimePoint now) {
  if (on_home()) {
    leave_on_home(proxied, held_slot, now);
  } else {
    asio::post(home_, [this, proxied, held_slot, now] { leave_on_home(proxied, held_slot, now); });
  }
}

}  // namespace sluice::queue
