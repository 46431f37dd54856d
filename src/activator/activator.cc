#include "activator/activator.h"

#include <fmt/format.h>
#include <malloc.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/beast/core/string.hpp>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "activator/activator_metrics.h"
#include "activator/concurrency_reporter.h"
#include "activator/listener.h"
#include "activator/revision_throttler.h"
#include "activator/routing.h"
#include "admission/timer_waiter.h"
#include "config/endpoints_file.h"
#include "http/client.h"
#include "http/connection.h"
#include "http/forward.h"
#include "http/grpc.h"
#include "http/h2_server.h"
#include "queue/replica_guard.h"

namespace sluice::activator {

using namespace std::chrono_literals;
namespace asio = http::asio;
using http::Exchange;
using http::Task;
using http::tcp;

namespace {

// A pod's push must come from the pod. On one machine (sluice run) pods are loopback
// addresses, and a push to an activator on ::1 arrives from ::1 whatever the pod's
// loopback address: every loopback address is the same machine.
bool same_machine(std::string_view pod_host, std::string_view client_ip) {
  if (pod_host == client_ip)
    return true;
  boost::system::error_code e1, e2;
  const auto a = asio::ip::make_address(pod_host, e1);
  const auto b = asio::ip::make_address(client_ip, e2);
  return !e1 && !e2 && a.is_loopback() && b.is_loopback();
}

// Request bodies up to this size are read before forwarding, so they can be sent again.
constexpr uint64_t kReplayableBodyBytes = 64 * 1024;

bool idempotent(http::bhttp::verb m) {
  using V = http::bhttp::verb;
  return m == V::get || m == V::head || m == V::options || m == V::trace || m == V::put ||
         m == V::delete_;
}

}  // namespace

// What workers read on every request: routes and each revision's metric cells.
struct Routing {
  RouteTable table;
  std::unordered_map<std::string, RevisionMetrics*> metrics;  // "ns/name"
};

class ActivatorImpl {
 public:
  explicit ActivatorImpl(ActivatorOptions options);
  int run();

 private:
  // What a request holds while it is proxied: a slot in the revision's queue and a pod.
  struct Lease {
    admission::Breaker::Admit result = admission::Breaker::Admit::Closed;
    RevisionThrottler* revision = nullptr;
    PodTracker* pod = nullptr;
    tcp::endpoint endpoint;
    std::string address;
    // The pod's queue-proxy work runs here (set_local_pod): serve through it, one hop.
    std::shared_ptr<queue::ReplicaGuard> local;
    // With Closed: why the revision cannot serve (embedder's word); with Expired: what
    // its pods were doing (describe_pods).
    std::string refused;
  };

  Task<void> handle(Exchange& ex);
  Task<void> handle_push(Exchange& ex);
  Task<void> handle_metrics(Exchange& ex);
  // Both run on home; a request's concurrency report rides on them (arrival with the first
  // acquire, departure with the last release) so a request costs two cross-thread hops,
  // not four.
  // `token` ends a queued wait early when the client hangs up (result Cancelled).
  Task<Lease> acquire_on_home(std::string key,
                              core::TimePoint deadline,
                              std::optional<core::TimePoint> arrived,
                              std::shared_ptr<admission::WaitToken> token,
                              http::Exchange* client);
  void release_on_home(RevisionThrottler* revision,
                       PodTracker* pod,
                       RequestOutcome outcome,
                       bool departed,
                       core::TimePoint now);
  void log_events(const RevisionThrottler& r, const std::vector<PodEvent>& events);

  // Discovery (control thread) and its application (home).
  void publish(config::EndpointsFile file);
  void apply_on_home(std::shared_ptr<const config::EndpointsFile> file);

  // Active health checks (home).
  Task<void> probe_loop();
  Task<void> report_loop();
  void request_in_on_home(const std::string& key, core::TimePoint now);
  Task<void> probe_pod(std::string key, std::string address);
  struct CheckAnswer {
    CheckResult result = CheckResult::Failed;
    std::string instance;  // Sluice-Pod-Instance of the answering queue-proxy
  };
  Task<CheckAnswer> check(std::string address, std::string revision);

  // `grace`: how long requests in flight may take before the rest get stopped.
  Task<void> drain_and_stop(bool wait, core::Duration grace = std::chrono::minutes(10));
  // Whether the kubelet may send traffic: refreshed on the control thread every 100 ms
  // (discovery and the options' gate are read there only), read by any worker.
  bool ready(std::string& why) const;
  Task<void> readiness_loop();
  asio::any_io_executor home() { return workers_.front()->executor(); }
  bool on_home() const { return workers_.front()->io().get_executor().running_in_this_thread(); }

  ActivatorOptions opts_;
  core::SteadyTimeSource steady_;
  core::TimeSource& time_ = opts_.time != nullptr ? *opts_.time : steady_;
  std::unique_ptr<http::Worker> control_worker_;
  std::vector<std::unique_ptr<http::Worker>> workers_;
  HealthConfig health_;
  ThrottlerConfig throttler_config_;

  // Home-owned.
  std::unordered_map<std::string, std::unique_ptr<RevisionThrottler>> revisions_;
  std::vector<std::unique_ptr<RevisionThrottler>> retired_;
  std::set<std::string> probing_;
  // Why a revision cannot serve, from the embedder (e.g. its command does not start).
  std::unordered_map<std::string, std::string> failures_;
  std::unordered_map<std::string, RevisionMetrics*> revision_metrics_;
  ConcurrencyReporter reporter_;
  // Parsed pod addresses, so the request path does not parse strings (home-owned;
  // rebuilt on every endpoints-file change).
  std::unordered_map<std::string, tcp::endpoint> endpoint_cache_;
  const tcp::endpoint& endpoint_of(const std::string& address);
  // Pods served in-process, by address (home-owned; set_local_pod).
  std::unordered_map<std::string, std::shared_ptr<queue::ReplicaGuard>> local_pods_;

  // The routing snapshot, one slot per worker, each written and read only on its own
  // worker (updates are posted there): a request reads it without an atomic or a lock
  // (std::atomic<std::shared_ptr> is a spinlock every request would take).
  std::vector<std::shared_ptr<const Routing>> worker_routes_;
  ActivatorMetrics metrics_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> not_ready_{false};
  std::shared_ptr<const std::string> not_ready_why_;  // written on control, under why_mu_
  mutable std::mutex why_mu_;  // the kubelet's probe only, every few seconds: not the request path
  friend class Activator;

  http::MemberHandler<ActivatorImpl, &ActivatorImpl::handle> main_handler_{*this};
  http::MemberHandler<ActivatorImpl, &ActivatorImpl::handle_metrics> metrics_handler_{*this};
  std::unique_ptr<http::Server> main_server_, metrics_server_;
  bool drain_started_ = false;
  std::atomic<bool> stop_now_{false};
  void fail_all_on_home(const std::string& why);
};

ActivatorImpl::ActivatorImpl(ActivatorOptions options)
    : opts_(std::move(options)),
      control_worker_(std::make_unique<http::Worker>(1000, time_, core::os_seed(), 0)),
      metrics_(std::getenv("POD_NAME") != nullptr ? std::getenv("POD_NAME") : "activator",
               static_cast<size_t>(opts_.threads)) {
  const uint64_t seed = core::os_seed();
  for (int i = 0; i < opts_.threads; ++i) {
    workers_.push_back(std::make_unique<http::Worker>(i, time_, seed, 100));
  }
  throttler_config_.queue_depth = opts_.queue_depth;
  worker_routes_.assign(workers_.size(), std::make_shared<const Routing>());
}

// ---------------------------------------------------------------------------------------
// Requests

Task<void> ActivatorImpl::handle(Exchange& ex) {
  const auto& head = ex.request();
  const std::string_view ua = head.get(http::bhttp::field::user_agent).value_or("");
  const auto probe = head.get("K-Network-Probe");
  const bool kubelet = ua.starts_with("kube-probe/") ||
                       (head.get("K-Kubelet-Probe") && !head.get("K-Kubelet-Probe")->empty());
  if (kubelet && !probe) {
    std::string why;
    if (draining_.load()) {
      co_await ex.respond(500, "received SIGTERM from kubelet");
    } else if (!ready(why)) {
      co_await ex.respond(503, why);
    } else {
      co_await ex.respond(200, "");
    }
    co_return;
  }
  if (probe) {
    if (*probe == "probe") {
      auto hash = head.get("K-Network-Hash");
      if (!hash || hash->empty()) {
        co_await ex.respond(400, "no K-Network-Hash header in request");
      } else {
        std::string h(*hash);
        const http::ExtraHeaders extra{{"K-Network-Hash", h}};
        co_await ex.respond(200, "", extra);
      }
    } else if (*probe == "activator") {
      co_await ex.respond(200, "activator");
    } else {
      co_await ex.respond(400, fmt::format("unexpected probe header value: {}", *probe));
    }
    co_return;
  }

  if (head.target == "/.sluice/pod-state" && head.get("Sluice-Pod-State")) {
    co_await handle_push(ex);
    co_return;
  }
  const size_t shard = ex.worker().index();
  // Used only before the first suspension (the route and metric cells it yields are owned
  // copies or outlive it), so a reference does: no reference count shared across workers.
  const Routing& routes = *worker_routes_[shard];
  RouteResult route = activator::route(head, routes.table);
  if (!route.revision) {
    co_await ex.respond(404, "revision not found: looked up " + route.looked_up);
    co_return;
  }
  const std::string key = std::move(*route.revision);
  const std::string revision_name = key.substr(key.find('/') + 1);
  // A gRPC call's own deadline (grpc-timeout) bounds it like the revision timeout does,
  // queueing included; the next hop is told what is left of it.
  std::optional<core::Duration> grpc_left;
  if (http::is_grpc(head))
    grpc_left = http::grpc_timeout(head);
  const core::TimePoint call_deadline =
      grpc_left ? ex.started_at() + *grpc_left : core::TimePoint::max();
  RevisionMetrics& rm = *routes.metrics.at(key);
  // Every answer, whichever way handle() ends, is counted once, and leaves the concurrency
  // report once (usually with the last release already).
  struct Count {
    ActivatorImpl& a;
    Exchange& ex;
    RevisionMetrics& rm;
    const std::string& key;
    size_t shard;
    bool departed = false;
    core::TimePoint ended{};  // when the relayed response ended; unset: at the answer
    ~Count() {
      const auto now = ended != core::TimePoint{} ? ended : a.time_.now();
      rm.requests.record(shard, ex.responded() ? ex.status() : 499,
                         core::to_millis(now - ex.started_at()));
      if (departed)
        return;
      if (a.on_home()) {
        a.reporter_.request_out(key, now);
      } else {
        asio::post(a.home(), [&a = a, key = key, now] { a.reporter_.request_out(key, now); });
      }
    }
  } count{*this, ex, rm, key, shard};

  // A small body is read first, so a queue-proxy's "the app never saw it" answer can be
  // retried on another pod for a POST too; larger and chunked bodies stream (and are
  // not retried once sent).
  std::string body;
  bool replayable = ex.request_body_done();
  if (const auto length = ex.request_content_length();
      !replayable && !ex.upgrade() && length && *length <= kReplayableBodyBytes) {
    if (auto ec = co_await ex.read_body(body)) {
      const auto answer = http::bad_request_body_answer(ec);
      const http::ExtraHeaders bad_body{{"Sluice-Error", "malformed_body"},
                                        {"Sluice-Error-Source", "activator"}};
      co_await ex.respond(answer.status, answer.body, bad_body);
      co_return;
    }
    replayable = true;
  }
  const bool may_replay_after_reset = replayable && idempotent(head.method);

  std::string queue_proxy_error;  // the queue-proxy's Sluice-Error on an intercepted answer
  http::ForwardOptions options;
  options.rewrite.host = http::UpstreamRequestOptions::Host::MoveToOriginal;
  options.rewrite.client_ip = ex.client_ip();
  options.rewrite.add_proxy_request_header = true;
  if (!body.empty())
    options.buffered_body = body;
  if (replayable || grpc_left) {
    // The queue-proxy's own "the app never saw it" answers are retried on another pod.
    // Its "the call's deadline passed" answer is taken too, sent or not: both hops hold
    // the same deadline and expire together, so which one answers is a race; the
    // client gets the activator's answer (naming the revision and pod) either way.
    options.intercept = [&queue_proxy_error, replayable,
                         call_bound = grpc_left.has_value()](const http::MessageHead& h) {
      auto why = h.get("Sluice-Error");
      if (call_bound && why && *why == "grpc_deadline") {
        queue_proxy_error = std::string(*why);
        return true;
      }
      auto nf = h.get("Sluice-Not-Forwarded");
      if (!replayable || !nf || *nf != "true")
        return false;
      queue_proxy_error = why ? std::string(*why) : "no reason given";
      return true;
    };
  }

  // Deadline from the revision's timeout (looked up on home with the lease).
  core::TimePoint deadline = std::min(ex.started_at() + 300s, call_deadline);
  std::string left;  // what is left of the call's deadline, as grpc-timeout
  // "revision hello-00001: the call's deadline (grpc-timeout 0.300 s) passed while ..."
  const auto answer_call_deadline = [&](std::string what) -> Task<void> {
    const http::ExtraHeaders why{{"Sluice-Error", "grpc_deadline"},
                                 {"Sluice-Error-Source", "activator"}};
    co_await ex.respond(504,
                        fmt::format("revision {}: the call's deadline (grpc-timeout {:.3f} s) "
                                    "passed {}",
                                    revision_name, core::to_seconds(*grpc_left), what),
                        why);
  };
  std::string last_error;
  int last_status = 502;
  static const http::ExtraHeaders error_headers{{"Sluice-Error-Source", "activator"}};
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (grpc_left && time_.now() >= call_deadline) {  // "0m": no time to give a pod
      co_await answer_call_deadline("before the request reached a replica");
      co_return;
    }
    // (if/else, not ?: — GCC 12 miscompiles co_await inside a conditional expression)
    Lease lease;
    std::optional<core::TimePoint> arrived;
    if (attempt == 0)
      arrived = ex.started_at();
    // A client that hangs up while its request waits (cold start, all busy) takes it out
    // of the queue and out of the concurrency the autoscaler sees, at once. On the home
    // worker the watch starts only if the request queues (most never do); from another
    // worker it watches the whole hop.
    if (on_home()) {
      lease = co_await acquire_on_home(key, deadline, arrived, nullptr, &ex);
    } else {
      auto token = std::make_shared<admission::WaitToken>(home());
      auto watch = ex.watch_hangup([token] { admission::WaitToken::abandon(token); });
      lease = co_await asio::co_spawn(
          home(), acquire_on_home(key, deadline, arrived, token, nullptr), asio::use_awaitable);
    }
    using Admit = admission::Breaker::Admit;
    if (lease.result == Admit::Cancelled) {
      ex.close_after();  // nobody to answer
      co_return;
    }
    if (lease.result == Admit::QueueFull) {
      const http::ExtraHeaders extra{{"Retry-After", "1"},
                                     {"Sluice-Error", "queue_full"},
                                     {"Sluice-Error-Source", "activator"}};
      co_await ex.respond(503, "revision " + revision_name + ": request queue is full", extra);
      co_return;
    }
    if (lease.result == Admit::Expired && time_.now() >= call_deadline) {
      co_await answer_call_deadline(
          fmt::format("while no replica took the request (pods: {})", lease.refused));
      co_return;
    }
    if (lease.result == Admit::Expired) {
      // Say why no replica took it: a cold start that never became ready reads very
      // differently from a revision whose replicas are all busy.
      const http::ExtraHeaders why{{"Sluice-Error", "no_replica_in_time"},
                                   {"Sluice-Error-Source", "activator"}};
      co_await ex.respond(
          504,
          fmt::format("revision {}: no replica took the request within {:.1f} s (pods: {})",
                      revision_name, core::to_seconds(time_.now() - ex.started_at()),
                      lease.refused),
          why);
      co_return;
    }
    if (lease.result != Admit::Admitted) {
      const std::string why = lease.refused.empty() ? "is going away" : lease.refused;
      co_await ex.respond(503, "revision " + revision_name + ": " + why, error_headers);
      co_return;
    }
    if (attempt == 0)
      deadline = std::min(ex.started_at() + lease.revision->spec().timeout, call_deadline);
    http::ForwardTarget target{
        lease.endpoint, lease.address,
        lease.revision->spec().h2c ? http::Protocol::Http2 : http::Protocol::Http1};
    options.rewrite.upstream_authority = target.authority;
    options.response_start_deadline = deadline;
    if (grpc_left) {
      left = http::format_grpc_timeout(call_deadline - time_.now());
      options.rewrite.grpc_timeout = left;
      options.call_deadline = call_deadline;
    }
    const auto sent_at = time_.now();
    http::ForwardResult result;
    if (lease.local) {
      // One hop: the queue-proxy's work (its breaker, stats, timeouts, answers and
      // metrics) runs here, and the request goes straight to the app.
      queue::ReplicaGuard::Hop hop;
      hop.proxied = true;
      hop.one_hop = true;
      hop.buffered_body = options.buffered_body;
      hop.hand_back = replayable;
      hop.deadline = deadline;
      hop.handed_over = sent_at;
      auto served = co_await lease.local->serve(ex, hop);
      result = served.result;
      if (result.outcome == http::ForwardResult::Outcome::Intercepted)
        queue_proxy_error = served.not_forwarded_error;
    } else {
      result = co_await http::forward(ex, target, options);
    }
    using Outcome = http::ForwardResult::Outcome;
    rm.proxy_start.observe(shard, core::to_seconds(result.connected_at - ex.started_at()));
    if (result.outcome == Outcome::ConnectFailed) {
      const auto why = result.error == asio::error::connection_refused
                           ? TransportFailure::ConnectRefused
                       : result.error == asio::error::timed_out ? TransportFailure::ConnectTimeout
                                                                : TransportFailure::Other;
      rm.transport[static_cast<size_t>(why)]->inc(shard);
    } else if (result.outcome == Outcome::UpstreamClosed) {
      const auto why = result.error == asio::error::connection_reset
                           ? TransportFailure::Reset
                           : TransportFailure::ClosedBeforeResponse;
      rm.transport[static_cast<size_t>(why)]->inc(shard);
    } else if (result.outcome == Outcome::BadResponse) {
      rm.transport[static_cast<size_t>(TransportFailure::BadResponse)]->inc(shard);
    }
    RequestOutcome outcome = RequestOutcome::Other;
    bool retry = false;
    const core::TimePoint ended =
        result.finished_at != core::TimePoint{} ? result.finished_at : time_.now();
    const double ms = core::to_millis(ended - sent_at);
    switch (result.outcome) {
      case Outcome::Completed:
      case Outcome::BrokenAfterStart:
        outcome = RequestOutcome::Success;  // the app answered; never blame the pod for it
        break;
      case Outcome::ConnectFailed:
        outcome = RequestOutcome::PodFailure;
        retry = true;
        last_error = fmt::format("{} after {:.1f} ms", http::failure_cause(result.error), ms);
        break;
      case Outcome::Intercepted:
        // The call's own deadline is the client's budget running out, not the pod failing.
        outcome = queue_proxy_error == "grpc_deadline" ? RequestOutcome::Other
                                                       : RequestOutcome::PodFailure;
        retry = true;
        last_error = fmt::format(
            "queue-proxy answered {} ({}) before the app saw the request, after {:.1f} ms",
            result.status, queue_proxy_error, ms);
        last_status = result.status;
        break;
      case Outcome::UpstreamClosed:
        outcome = RequestOutcome::PodFailure;
        retry = may_replay_after_reset && attempt == 0;
        last_error = fmt::format("{} after {:.1f} ms", http::failure_cause(result.error), ms);
        break;
      case Outcome::BadResponse:
        outcome = RequestOutcome::PodFailure;
        last_error =
            fmt::format("invalid response after {:.1f} ms: {}", ms, result.error.message());
        break;
      case Outcome::TimedOut:
      case Outcome::ClientGone:
      case Outcome::BadRequestBody:
      case Outcome::NeedsHttp2:
        outcome = RequestOutcome::Other;
        break;
    }
    retry = retry && attempt < 2 && time_.now() < deadline && queue_proxy_error != "grpc_deadline";
    // The request leaves the concurrency report with its last release (the response is
    // complete: forward() returns after the last byte).
    count.departed = !retry;
    if (on_home()) {
      // (`ended` was read on this thread with nothing run since: home's clock stays
      // monotonic.)
      release_on_home(lease.revision, lease.pod, outcome, !retry, ended);
    } else {
      asio::post(home(), [this, r = lease.revision, p = lease.pod, outcome, d = !retry] {
        release_on_home(r, p, outcome, d, time_.now());
      });
    }
    if (retry) {
      spdlog::debug("revision {}: pod {}: {}; retrying on another pod", revision_name,
                    lease.address, last_error);
      continue;
    }
    // The call's deadline, passed here or at the queue-proxy (whose clock started later).
    if ((result.outcome == Outcome::TimedOut && time_.now() >= call_deadline) ||
        (result.outcome == Outcome::Intercepted && queue_proxy_error == "grpc_deadline")) {
      co_await answer_call_deadline(fmt::format("before pod {} answered", lease.address));
      co_return;
    }
    switch (result.outcome) {
      case Outcome::Completed:
      case Outcome::BrokenAfterStart:
      case Outcome::ClientGone:
        count.ended = ended;
        co_return;
      case Outcome::TimedOut: {
        const http::ExtraHeaders why{{"Sluice-Error", "revision_timeout"},
                                     {"Sluice-Error-Source", "activator"}};
        co_await ex.respond(
            504,
            fmt::format("revision {}: pod {}: no response within the revision timeout ({:.1f} s "
                        "after the request arrived)",
                        revision_name, lease.address,
                        core::to_seconds(time_.now() - ex.started_at())),
            why);
        co_return;
      }
      case Outcome::NeedsHttp2: {
        const http::ExtraHeaders why{{"Sluice-Error", "http2_required"},
                                     {"Sluice-Error-Source", "activator"}};
        const std::string body = fmt::format("revision {}: {}", revision_name, http::kNeedsHttp2);
        co_await ex.respond(502, body, why);
        co_return;
      }
      case Outcome::BadRequestBody: {
        // (a named local: GCC 12 rejects a braced list built inside a co_await)
        const http::ExtraHeaders bad_body{{"Sluice-Error", "malformed_body"},
                                          {"Sluice-Error-Source", "activator"}};
        const auto answer = http::bad_request_body_answer(result.error);
        co_await ex.respond(answer.status, answer.body, bad_body);
        co_return;
      }
      default:
        if (last_status != 503)
          rm.bad_gateway->inc(shard);
        co_await ex.respond(
            last_status == 503 ? 503 : 502,
            fmt::format("revision {}: pod {}: {}", revision_name, lease.address, last_error),
            error_headers);
        co_return;
    }
  }
}

// A queue-proxy's push about its own state. Only the pod itself may speak for it: the
// sender's address must be the pod's host, so a client cannot drain someone else's pod.
Task<void> ActivatorImpl::handle_push(Exchange& ex) {
  const auto& head = ex.request();
  const std::string ns(head.get("Sluice-Namespace").value_or(""));
  const std::string revision(head.get("Sluice-Revision").value_or(""));
  const std::string pod(head.get("Sluice-Pod").value_or(""));
  const std::string instance(head.get("Sluice-Pod-Instance").value_or(""));
  const std::string_view state_text = head.get("Sluice-Pod-State").value_or("");
  std::optional<PushedState> state;
  if (state_text == "ready")
    state = PushedState::Ready;
  if (state_text == "not-ready")
    state = PushedState::NotReady;
  if (state_text == "draining")
    state = PushedState::Draining;
  std::string host;
  uint16_t port = 0;
  if (!state || ns.empty() || revision.empty() || !config::split_host_port(pod, host, port)) {
    co_await ex.respond(400,
                        "pod-state push needs Sluice-Namespace, Sluice-Revision, "
                        "Sluice-Pod (HOST:PORT) and Sluice-Pod-State (ready|not-ready|draining)");
    co_return;
  }
  if (!same_machine(host, ex.client_ip())) {
    co_await ex.respond(403, "pod-state push for " + pod + " must come from " + host);
    co_return;
  }
  auto apply = [this, key = ns + "/" + revision, pod, instance, s = *state]() -> Task<bool> {
    auto it = revisions_.find(key);
    if (it == revisions_.end())
      co_return false;
    log_events(*it->second, it->second->on_push(pod, s, time_.now(), instance));
    co_return true;
  };
  bool known = false;
  if (on_home()) {
    known = co_await apply();
  } else {
    known = co_await asio::co_spawn(home(), apply(), asio::use_awaitable);
  }
  // (body built first: GCC 12 mishandles a temporary from ?: inside co_await)
  const std::string body = known ? std::string() : "unknown revision " + ns + "/" + revision;
  co_await ex.respond(known ? 202 : 404, body);
}

Task<ActivatorImpl::Lease> ActivatorImpl::acquire_on_home(
    std::string key,
    core::TimePoint deadline,
    std::optional<core::TimePoint> arrived,
    std::shared_ptr<admission::WaitToken> token,
    http::Exchange* client) {
  if (arrived)
    request_in_on_home(key, *arrived);
  Lease lease;
  std::unique_ptr<http::HangupWatch> watch;  // armed here when `client` is on this worker
  for (;;) {
    auto it = revisions_.find(key);
    if (it == revisions_.end())
      co_return lease;  // Closed: gone since routing
    RevisionThrottler& r = *it->second;
    lease.revision = &r;
    const auto now = time_.now();
    if (auto f = failures_.find(key); f != failures_.end() && r.capacity() == 0) {
      lease.refused = f->second;
      co_return lease;  // Closed
    }
    // The revision's own timeout may be shorter than the provisional deadline.
    deadline = std::min(deadline, now + r.spec().timeout);
    if (token && token->abandoned) {
      lease.result = admission::Breaker::Admit::Cancelled;
      co_return lease;
    }
    admission::TimerWaiter waiter(time_, home());
    lease.result = r.breaker().acquire(waiter, now, deadline);
    if (lease.result == admission::Breaker::Admit::Queued) {
      if (!token) {
        token = std::make_shared<admission::WaitToken>(home());
        watch = client->watch_hangup([token] { admission::WaitToken::abandon(token); });
      }
      waiter.timer.expires_at(deadline);
      token->waiter = &waiter;
      co_await waiter.timer.async_wait(http::kUseTuple);
      token->waiter = nullptr;
      using State = admission::Waiter::State;
      if (token->abandoned && waiter.state() != State::Admitted) {
        // The client hung up while queued: leave the queue now, never forwarded.
        r.breaker().cancel(waiter);
        lease.result = admission::Breaker::Admit::Cancelled;
      } else if (waiter.state() == State::Admitted) {
        lease.result = admission::Breaker::Admit::Admitted;
      } else if (waiter.state() == State::Closed) {
        lease.result = admission::Breaker::Admit::Closed;
        if (auto f = failures_.find(key); f != failures_.end())
          lease.refused = f->second;
      } else {
        r.breaker().cancel(waiter);
        lease.result = admission::Breaker::Admit::Expired;
        lease.refused = r.describe_pods();
      }
    }
    if (lease.result != admission::Breaker::Admit::Admitted)
      co_return lease;
    if (token && token->abandoned) {  // hung up just as a slot came free
      r.breaker().release();
      lease.result = admission::Breaker::Admit::Cancelled;
      co_return lease;
    }
    PodTracker* pod = r.pick(workers_.front()->random());
    if (pod != nullptr) {
      lease.pod = pod;
      lease.address = pod->address();
      lease.endpoint = endpoint_of(lease.address);
      if (!local_pods_.empty()) {
        if (auto local = local_pods_.find(lease.address); local != local_pods_.end())
          lease.local = local->second;
      }
      co_return lease;
    }
    // Capacity said yes but no pod has room (it changed meanwhile): give the slot back
    // and wait a moment instead of spinning (the fork's known issue).
    r.breaker().release();
    core::Timer pause(time_, home());
    pause.expires_after(5ms);
    co_await pause.async_wait(http::kUseTuple);
    if (time_.now() >= deadline) {
      lease.result = admission::Breaker::Admit::Expired;
      lease.refused = r.describe_pods();
      co_return lease;
    }
  }
}

void ActivatorImpl::release_on_home(RevisionThrottler* revision,
                                    PodTracker* pod,
                                    RequestOutcome outcome,
                                    bool departed,
                                    core::TimePoint now) {
  if (departed)
    reporter_.request_out(revision->key(), now);
  auto events = revision->finish(pod, outcome, now);
  revision->breaker().release();
  log_events(*revision, events);
  // A retired revision is freed once its last request is done.
  std::erase_if(retired_, [](const auto& r) { return r->breaker().in_flight() == 0; });
}

void ActivatorImpl::log_events(const RevisionThrottler& r, const std::vector<PodEvent>& events) {
  RevisionMetrics* m = nullptr;
  if (!events.empty()) {
    auto it = revision_metrics_.find(r.key());
    if (it != revision_metrics_.end())
      m = it->second;
  }
  for (const auto& e : events) {
    if (m != nullptr) {
      // Home is the only writer of these.
      if (e.transition.entered_quarantine())
        m->quarantine_entries.fetch_add(1, std::memory_order_relaxed);
      if (e.transition.left_quarantine())
        m->quarantine_exits.fetch_add(1, std::memory_order_relaxed);
      if (e.transition.evicted)
        m->evictions.fetch_add(1, std::memory_order_relaxed);
    }
    if (e.transition.changed()) {
      spdlog::info("revision {}: pod {}: {} -> {}{}", r.spec().name, e.pod,
                   to_string(e.transition.from), to_string(e.transition.to),
                   e.new_instance ? " (a new queue-proxy process answers on this address)" : "");
    }
    if (opts_.listener != nullptr && (e.transition.changed() || e.transition.evicted))
      opts_.listener->on_pod_event(r.key(), e.pod, e.transition);
    if (e.transition.evicted) {
      spdlog::warn("revision {}: pod {} evicted after {} consecutive quarantines", r.spec().name,
                   e.pod, health_.evict_after);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Discovery

void ActivatorImpl::publish(config::EndpointsFile endpoints) {
  auto file = std::make_shared<const config::EndpointsFile>(std::move(endpoints));
  auto table = std::make_shared<Routing>();
  for (const auto& r : file->revisions) {
    table->table.add(r.namespace_name, r.name, r.service);
    table->metrics[r.namespace_name + "/" + r.name] =
        metrics_.revision(r.namespace_name, r.name, r.service);
  }
  // Routes first: a request routed to a revision home does not know yet waits for it
  // (acquire_on_home treats an unknown key as gone, so order matters the other way).
  asio::post(home(), [this, file, table = std::shared_ptr<const Routing>(std::move(table))] {
    apply_on_home(file);
    for (size_t i = 0; i < workers_.size(); ++i)
      asio::post(workers_[i]->executor(), [this, i, table] { worker_routes_[i] = table; });
  });
}

const tcp::endpoint& ActivatorImpl::endpoint_of(const std::string& address) {
  auto it = endpoint_cache_.find(address);
  if (it == endpoint_cache_.end()) {
    std::string host;
    uint16_t port = 0;
    config::split_host_port(address, host, port);  // validated when the file was parsed
    http::error_code ec;
    it = endpoint_cache_.emplace(address, tcp::endpoint(asio::ip::make_address(host, ec), port))
             .first;
  }
  return it->second;
}

void ActivatorImpl::apply_on_home(std::shared_ptr<const config::EndpointsFile> file) {
  const auto now = time_.now();
  endpoint_cache_.clear();
  std::set<std::string> seen;
  for (const auto& r : file->revisions) {
    const std::string key = r.namespace_name + "/" + r.name;
    seen.insert(key);
    RevisionSpec spec;
    spec.namespace_name = r.namespace_name;
    spec.name = r.name;
    spec.service = r.service;
    spec.container_concurrency = r.container_concurrency;
    spec.timeout = r.timeout;
    spec.h2c = r.h2c;
    if (!r.load_balancing_policy.empty())
      spec.lb = parse_lb(r.load_balancing_policy);
    revision_metrics_[key] = metrics_.revision(r.namespace_name, r.name, r.service);
    auto it = revisions_.find(key);
    if (it == revisions_.end()) {
      it = revisions_
               .emplace(key, std::make_unique<RevisionThrottler>(spec, health_, throttler_config_))
               .first;
    } else {
      it->second->update_spec(spec);
    }
    log_events(*it->second,
               it->second->set_endpoints(
                   r.endpoints, r.activators ? *r.activators : file->activators, opts_.id, now));
  }
  for (auto it = revisions_.begin(); it != revisions_.end();) {
    if (seen.count(it->first)) {
      ++it;
      continue;
    }
    spdlog::info("revision {} removed from the endpoints file", it->first);
    it->second->breaker().close();  // queued requests get 503
    if (it->second->breaker().in_flight() > 0)
      retired_.push_back(std::move(it->second));
    it = revisions_.erase(it);
  }
}

// ---------------------------------------------------------------------------------------
// Concurrency reports for the autoscaler (home)

void ActivatorImpl::request_in_on_home(const std::string& key, core::TimePoint now) {
  if (auto poke = reporter_.request_in(key, now); poke && opts_.listener != nullptr) {
    opts_.listener->on_report({*poke});
  }
}

Task<void> ActivatorImpl::report_loop() {
  core::Timer t(time_, home());
  auto next = time_.now();
  int64_t connections_peak = 0;
  int fewer_for = 0;
  for (;;) {
    next += 1s;
    t.expires_at(next);
    auto [ec] = co_await t.async_wait(http::kUseTuple);
    if (ec)
      co_return;
    // Thousands of connections that came and went leave their buffers with malloc, not
    // the kernel (2,000 idle connections: RSS stayed 24 MB after they closed). Once at
    // least half of a peak of 100+ has been gone for 3 s, hand the memory back.
    const int64_t open = main_server_->load().open_connections.load(std::memory_order_relaxed);
    connections_peak = std::max(connections_peak, open);
    if (connections_peak - open >= 100 && open <= connections_peak / 2) {
      if (++fewer_for == 3) {
        malloc_trim(0);
        connections_peak = open;
        fewer_for = 0;
      }
    } else {
      fewer_for = 0;
    }
    auto batch = reporter_.cut(time_.now());
    for (const auto& [key, m] : revision_metrics_) {
      auto it = std::find_if(batch.begin(), batch.end(),
                             [&](const auto& r) { return r.revision == key; });
      m->reported_concurrency.store(it == batch.end() ? 0.0 : it->report.average_concurrency,
                                    std::memory_order_relaxed);
    }
    if (opts_.listener == nullptr)
      continue;
    if (!batch.empty())
      opts_.listener->on_report(batch);
    std::vector<RevisionPods> pods;
    for (const auto& [key, r] : revisions_) {
      auto healthy = r->pods_in({PodState::Healthy, PodState::Recovering});
      pods.push_back({key, static_cast<uint32_t>(healthy.size()),
                      static_cast<uint32_t>(r->pod_count()), std::move(healthy),
                      r->pods_in({PodState::Quarantined})});
    }
    opts_.listener->on_pods(pods);
  }
}

// ---------------------------------------------------------------------------------------
// Active health checks

Task<void> ActivatorImpl::probe_loop() {
  core::Timer t(time_, home());
  for (;;) {
    t.expires_after(opts_.probe_interval);
    auto [ec] = co_await t.async_wait(http::kUseTuple);
    if (ec)
      co_return;
    const auto now = time_.now();
    for (auto& [key, r] : revisions_) {
      log_events(*r, r->tick(now));
      for (const auto& pod : r->pods_to_check(now)) {
        if (probing_.insert(key + "|" + pod).second) {
          asio::co_spawn(home(), probe_pod(key, pod), asio::detached);
        }
      }
    }
  }
}

Task<void> ActivatorImpl::probe_pod(std::string key, std::string address) {
  std::string revision_name = key.substr(key.find('/') + 1);
  const auto sent_at = time_.now();
  CheckAnswer answer = co_await check(address, revision_name);
  probing_.erase(key + "|" + address);
  auto it = revisions_.find(key);
  if (it == revisions_.end())
    co_return;
  log_events(*it->second,
             it->second->on_check(address, answer.result, time_.now(), answer.instance, sent_at));
}

Task<ActivatorImpl::CheckAnswer> ActivatorImpl::check(std::string address, std::string revision) {
  CheckAnswer result;
  if (auto local = local_pods_.find(address); local != local_pods_.end()) {
    // In-process: the guard answers as its queue-proxy would (200 queue / 503).
    const std::shared_ptr<queue::ReplicaGuard> guard = local->second;
    result.instance = guard->instance_id();
    const bool ok = co_await guard->health_check();
    result.result = ok ? CheckResult::Passed : CheckResult::NotReady;
    co_return result;
  }
  std::string host;
  uint16_t port = 0;
  if (!config::split_host_port(address, host, port))
    co_return result;
  http::error_code ec;
  tcp::endpoint ep(asio::ip::make_address(host, ec), port);
  if (ec)
    co_return result;
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: " + address +
                              "\r\nUser-Agent: Knative-Activator-Probe\r\n"
                              "K-Network-Probe: queue\r\nConnection: close\r\n\r\n";
  const http::FetchResult answer = co_await http::fetch(home(), ep, request, 300ms, 8192);
  if (answer.status == 0) {
    // Nothing listening yet is a pod still starting, not a failing one: a pending pod
    // stays pending (and is probed again next interval) instead of sitting out a backoff.
    if (answer.refused())
      result.result = CheckResult::NotReady;
    co_return result;
  }
  // A queue-proxy that names its revision must name ours (pod IPs get reused).
  if (const std::string named = answer.header("Sluice-Revision");
      !named.empty() && named != revision) {
    result.result = CheckResult::WrongRevision;
    co_return result;
  }
  result.instance = answer.header("Sluice-Pod-Instance");
  if (answer.status == 200 && answer.body == "queue") {
    result.result = CheckResult::Passed;
  } else if (answer.status == 503) {
    result.result = CheckResult::NotReady;
  }
  co_return result;
}

// ---------------------------------------------------------------------------------------
// Metrics and lifecycle

Task<void> ActivatorImpl::handle_metrics(Exchange& ex) {
  if (ex.request().target.substr(0, 8) != "/metrics") {  // as the queue-proxy's
    co_await ex.respond(404, "not found: metrics are at /metrics");
    co_return;
  }
  // Gauges mirror home-owned state: read them there, serialise here.
  auto gauges = std::make_shared<std::vector<ActivatorMetrics::RevisionGauges>>();
  auto collect = [this, gauges]() -> Task<void> {
    for (const auto& [key, r] : revisions_) {
      auto m = revision_metrics_.find(key);
      if (m == revision_metrics_.end())
        continue;
      gauges->push_back({m->second, static_cast<double>(r->breaker().waiting()),
                         static_cast<double>(r->count(PodState::Healthy)),
                         static_cast<double>(r->count(PodState::Quarantined)),
                         static_cast<double>(r->capacity())});
    }
    co_return;
  };
  co_await asio::co_spawn(home(), collect(), asio::use_awaitable);
  auto families = metrics_.collect(*gauges, opts_.discovery ? opts_.discovery->failures() : 0);
  if (opts_.extra_metrics) {
    std::vector<prometheus::MetricFamily> more;
    opts_.extra_metrics(more);
    metrics::merge_families(families, std::move(more));
  }
  const std::string text = metrics::serialize(families);
  const http::ExtraHeaders extra{{"Content-Type", "text/plain; version=0.0.4; charset=utf-8"}};
  co_await ex.respond(200, text, extra);
}

void ActivatorImpl::fail_all_on_home(const std::string& why) {
  for (auto& [key, r] : revisions_) {
    failures_[key] = why;
    r->breaker().close();
  }
}

bool ActivatorImpl::ready(std::string& why) const {
  if (!not_ready_.load(std::memory_order_acquire))
    return true;
  std::lock_guard l(why_mu_);
  why = not_ready_why_ ? *not_ready_why_ : "not ready";
  return false;
}

Task<void> ActivatorImpl::readiness_loop() {
  core::Timer t(time_, control_worker_->executor());
  for (;;) {
    std::string why;
    bool ok = !opts_.discovery || opts_.discovery->ready(why);
    if (ok && opts_.ready)
      ok = opts_.ready(why);
    {
      std::lock_guard l(why_mu_);
      not_ready_why_ = std::make_shared<const std::string>(why);
    }
    not_ready_.store(!ok, std::memory_order_release);
    t.expires_after(100ms);
    auto [ec] = co_await t.async_wait(http::kUseTuple);
    if (ec)
      co_return;
  }
}

Task<void> ActivatorImpl::drain_and_stop(bool wait, core::Duration grace) {
  if (drain_started_)
    co_return;
  drain_started_ = true;
  draining_.store(true);
  core::Timer t(time_, control_worker_->executor());
  if (wait) {
    spdlog::info("draining: readiness fails; waiting {} ms for endpoints to forget us",
                 opts_.drain_timeout.count());
    // In steps, so a second SIGTERM (stop_now) ends the wait at once.
    const auto until = time_.now() + opts_.drain_timeout;
    while (!stop_now_.load() && time_.now() < until) {
      t.expires_at(std::min(until, time_.now() + 25ms));
      co_await t.async_wait(http::kUseTuple);
    }
  }
  main_server_->stop_accepting();
  main_server_->close_idle_connections();
  auto deadline = time_.now() + grace;
  bool forced = false;
  while (main_server_->load().active_requests.load() > 0) {
    if (!forced && (stop_now_.load() || time_.now() >= deadline)) {
      // Buffered requests learn why at once; requests in flight get a second more.
      forced = true;
      spdlog::warn("stopping now: {} request(s) still in flight or buffered",
                   main_server_->load().active_requests.load());
      asio::post(home(), [this] { fail_all_on_home("sluice is shutting down"); });
      deadline = time_.now() + 1s;
    } else if (forced && time_.now() >= deadline) {
      break;
    }
    t.expires_after(25ms);
    co_await t.async_wait(http::kUseTuple);
    main_server_->close_idle_connections();
  }
  for (auto& w : workers_) w->stop();
  control_worker_->stop();
}

int ActivatorImpl::run() {
  if (opts_.discovery &&
      !opts_.discovery->start(control_worker_->executor(), time_,
                              [this](config::EndpointsFile f) { publish(std::move(f)); }))
    return 1;
  std::vector<http::Worker*> worker_ptrs;
  for (auto& w : workers_) worker_ptrs.push_back(w.get());
  http::ServerOptions main_opts;
  main_opts.name = "activator";
  main_opts.header_timeout = opts_.header_timeout;
  main_opts.on_reject = [this](http::Worker& w, http::Rejection r) {
    metrics_.count_rejection(w.index(), r);
  };
  main_opts.h2 = http::h2_options_like(main_opts);
  main_server_ = std::make_unique<http::Server>(worker_ptrs, main_handler_, main_opts);
  http::ServerOptions side_opts;
  side_opts.name = "activator-metrics";
  metrics_server_ = std::make_unique<http::Server>(
      std::vector<http::Worker*>{control_worker_.get()}, metrics_handler_, side_opts);
  std::optional<asio::ip::address> address;
  if (!opts_.address.empty()) {
    http::error_code ec;
    address = asio::ip::make_address(opts_.address, ec);
    if (ec) {
      spdlog::error("--address {}: not an IP address", opts_.address);
      return 1;
    }
  }
  // Signals are caught from before the ports open: a SIGTERM sent as soon as the port
  // answers must start the drain, not kill the process with the default action.
  std::optional<asio::signal_set> caught;
  if (opts_.handle_signals)
    caught.emplace(control_worker_->io(), SIGTERM, SIGINT);
  auto listen = [&](http::Server& server, uint16_t port) {
    return address ? server.listen(tcp::endpoint(*address, port)) : server.listen_on_all(port);
  };
  const std::string where = opts_.address.empty() ? "" : " on " + opts_.address;
  if (auto ec = listen(*main_server_, opts_.port)) {
    spdlog::error("cannot listen on --port {}{}: {}", opts_.port, where, ec.message());
    return 1;
  }
  if (auto ec = listen(*metrics_server_, opts_.metrics_port)) {
    spdlog::error("cannot listen on --metrics-port {}{}: {}", opts_.metrics_port, where,
                  ec.message());
    return 1;
  }
  // Knative's h2c port: the same server (HTTP/2 by preface or upgrade, HTTP/1 too).
  if (opts_.h2c_port != 0) {
    if (auto ec = listen(*main_server_, opts_.h2c_port)) {
      spdlog::error("cannot listen on --h2c-port {}: {}", opts_.h2c_port, ec.message());
      return 1;
    }
  }
  spdlog::info("activator {} listening on {}:{} (metrics :{}), {} worker(s), queue depth {}",
               opts_.id.empty() ? "(no --id)" : opts_.id, opts_.address, main_server_->port(),
               metrics_server_->port(), opts_.threads, opts_.queue_depth);
  if (opts_.on_listening)
    opts_.on_listening(main_server_->port());
  asio::co_spawn(control_worker_->io(), readiness_loop(), asio::detached);
  asio::co_spawn(workers_.front()->io(), probe_loop(), asio::detached);
  asio::co_spawn(workers_.front()->io(), report_loop(), asio::detached);
  std::function<void(const http::error_code&, int)> on_signal;
  on_signal = [&](const http::error_code& ec, int sig) {
    if (ec)
      return;
    if (drain_started_) {
      spdlog::warn("second {}: stopping now", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      stop_now_.store(true);
    } else {
      spdlog::info("{}: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      asio::co_spawn(control_worker_->io(), drain_and_stop(sig == SIGTERM), asio::detached);
    }
    caught->async_wait(on_signal);
  };
  if (caught)
    caught->async_wait(on_signal);
  std::vector<std::thread> threads;
  for (auto& w : workers_) threads.emplace_back([&w] { w->run(); });
  control_worker_->run();
  for (auto& t : threads) t.join();
  spdlog::info("activator stopped");
  return 0;
}

Activator::Activator(ActivatorOptions options)
    : impl_(std::make_unique<ActivatorImpl>(std::move(options))) {}
Activator::~Activator() = default;
int Activator::run() {
  return impl_->run();
}

void Activator::update_endpoints(config::EndpointsFile file) {
  impl_->publish(std::move(file));
}

void Activator::set_revision_failure(const std::string& revision_key,
                                     std::optional<std::string> why) {
  asio::post(impl_->home(), [impl = impl_.get(), key = revision_key, why = std::move(why)] {
    if (!why) {
      impl->failures_.erase(key);
      return;
    }
    impl->failures_[key] = *why;
    auto it = impl->revisions_.find(key);
    if (it != impl->revisions_.end() && it->second->capacity() == 0)
      it->second->breaker().fail_waiters();
  });
}

boost::asio::io_context& Activator::home_context() {
  return impl_->workers_.front()->io();
}

void Activator::set_local_pod(const std::string& address,
                              std::shared_ptr<queue::ReplicaGuard> guard) {
  asio::post(impl_->home(), [impl = impl_.get(), address, guard = std::move(guard)]() mutable {
    impl->local_pods_[address] = std::move(guard);
  });
}

void Activator::unset_local_pod(const std::string& address, const queue::ReplicaGuard* guard) {
  asio::post(impl_->home(), [impl = impl_.get(), address, guard] {
    auto it = impl->local_pods_.find(address);
    if (it != impl->local_pods_.end() && it->second.get() == guard)
      impl->local_pods_.erase(it);
  });
}

void Activator::push_pod_state(const std::string& revision_key,
                               const std::string& pod,
                               PushedState state,
                               const std::string& instance) {
  asio::post(impl_->home(), [impl = impl_.get(), key = revision_key, pod, state, instance] {
    auto it = impl->revisions_.find(key);
    if (it != impl->revisions_.end())
      impl->log_events(*it->second, it->second->on_push(pod, state, impl->time_.now(), instance));
  });
}

void Activator::shutdown(std::chrono::milliseconds grace) {
  asio::co_spawn(impl_->control_worker_->io(), impl_->drain_and_stop(false, grace), asio::detached);
}

void Activator::stop_now() {
  impl_->stop_now_.store(true);
  asio::co_spawn(impl_->control_worker_->io(), impl_->drain_and_stop(false, 0s), asio::detached);
}

}  // namespace sluice::activator
