#include "runtime/local_runtime.h"

#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "config/endpoints_file.h"
#include "config/queue_proxy_config.h"
#include "core/assert.h"
#include "http/client.h"

namespace sluice::runtime {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using activator::PodState;

namespace {

// A free loopback port (the kernel's pick; released at once, so the child can bind it).
uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

std::string seconds_text(core::Duration d) {
  return fmt::format("{:.1f}s", core::to_seconds(d));
}

// A container on a fixed port can run once per machine: caps `want` at one and says
// whether it did.
bool cap_for_fixed_port(const service::ServiceSpec& s, int32_t& want) {
  if (!s.container.port || want <= 1)
    return false;
  want = 1;
  return true;
}

// The environment Knative's reconciler gives a queue-proxy container, for one replica
// (SLUICE_ACTIVATORS aside): a `sluice queue-proxy` process gets it as its environment,
// an in-process guard loads its configuration from it.
std::vector<std::pair<std::string, std::string>> queue_proxy_env(const service::ServiceSpec& s,
                                                                 const std::string& pod,
                                                                 uint16_t serving_port,
                                                                 uint16_t app_port) {
  std::string probe = s.container.readiness_probe_json;
  if (probe.empty()) {
    probe = nlohmann::json{
        {"tcpSocket", {{"host", "127.0.0.1"}, {"port", app_port}}},
        {"successThreshold",
         1}}.dump();
  }
  return {
      {"SERVING_NAMESPACE", s.namespace_name},
      {"SERVING_SERVICE", s.name},
      {"SERVING_CONFIGURATION", s.name},
      {"SERVING_REVISION", s.revision},
      {"SERVING_POD", pod},
      {"SERVING_POD_IP", "127.0.0.1"},
      {"QUEUE_SERVING_PORT", std::to_string(serving_port)},
      {"QUEUE_SERVING_TLS_PORT", "8112"},  // not served: Sluice terminates no TLS
      {"USER_PORT", std::to_string(app_port)},
      {"CONTAINER_CONCURRENCY", std::to_string(s.container_concurrency)},
      {"REVISION_TIMEOUT_SECONDS", std::to_string(s.timeout_seconds)},
      {"REVISION_RESPONSE_START_TIMEOUT_SECONDS", std::to_string(s.response_start_timeout_seconds)},
      {"REVISION_IDLE_TIMEOUT_SECONDS", std::to_string(s.idle_timeout_seconds)},
      {"SERVING_READINESS_PROBE", probe},
      {"SERVING_LOGGING_CONFIG", "{}"},
      {"SERVING_LOGGING_LEVEL", "warn"},
      {"SLUICE_APP_PROTOCOL", s.container.h2c ? "h2c" : "http1"}};
}

}  // namespace

struct LocalRuntime::Replica {
  Replica(const LifecyclePolicy& policy, core::TimePoint now) : life(policy, now) {}
  std::string name;  // <revision>-<n>
  uint16_t qp_port = 0, app_port = 0, admin_port = 0, stats_port = 0, metrics_port = 0;
  std::unique_ptr<Process> app, qp;
  // In-process: the queue-proxy's work for this replica (no qp process).
  std::shared_ptr<queue::ReplicaGuard> guard;
  bool in_process = false;
  bool guard_drained = false;  // stopping: no request left in the guard
  ReplicaLifecycle life;
  core::TimePoint since;
  core::TimePoint term_at, kill_at;
  bool qp_termed = false, app_termed = false;
  std::string last_line;
  // What the activator sends to: the queue-proxy, or the app itself in one hop.
  std::string address() const {
    return "127.0.0.1:" + std::to_string(in_process ? app_port : qp_port);
  }
  bool counts() const { return life.counts(); }
  bool routable() const { return life.routable(); }
  bool is(ReplicaState s) const { return life.state() == s; }
};

struct LocalRuntime::Revision {
  explicit Revision(service::ServiceSpec s)
      : spec(std::move(s)), key(spec.namespace_name + "/" + spec.revision) {}
  service::ServiceSpec spec;
  std::string key;
  std::vector<std::unique_ptr<Replica>> replicas;
  int next_index = 1;
  int32_t want = 0;
  std::optional<std::string> failure;
};

LocalRuntime::LocalRuntime(asio::io_context& io,
                           std::vector<service::ServiceSpec> services,
                           LocalOptions options)
    : io_(io),
      opts_(std::move(options)),
      time_(opts_.time != nullptr ? *opts_.time : steady_),
      policy_{opts_.crash_loop_after, opts_.stable_run, std::chrono::milliseconds(500),
              opts_.max_backoff},
      timer_(time_, io.get_executor()),
      random_(core::os_seed()),
      scraper_(io.get_executor()),
      loop_(time_,
            io.get_executor(),
            *this,
            opts_.in_process ? static_cast<autoscaler::StatScraper&>(guard_scraper_) : scraper_,
            random_) {
  for (auto& s : services) {
    if (!s.max_scale_declared && opts_.default_max_scale > 0) {
      auto& sc = s.scaling;
      sc.max_scale = std::max(
          {opts_.default_max_scale, sc.min_scale, sc.initial_scale, sc.decider.activation_scale});
    }
    auto r = std::make_unique<Revision>(std::move(s));
    loop_.add(r->key, r->spec.name, r->spec.scaling);
    revisions_.push_back(std::move(r));
  }
}

LocalRuntime::~LocalRuntime() = default;

LocalRuntime::Revision* LocalRuntime::find(const std::string& key) {
  for (auto& r : revisions_)
    if (r->key == key)
      return r.get();
  return nullptr;
}

void LocalRuntime::start(uint16_t activator_port) {
  SLUICE_CHECK(!opts_.in_process || (sink_.home != nullptr && sink_.local_pod),
               "in-process replicas need the activator's home worker and local_pod in the Sink");
  opts_.activator_port = activator_port;
  for (auto& r : revisions_) {
    const auto& s = r->spec;
    const bool capped = !s.max_scale_declared && opts_.default_max_scale > 0;
    spdlog::info(
        "{}: http://{}.{}.localhost:{} (revision {}, containerConcurrency {}, "
        "target {:.3g}/replica, scale {}..{}{})",
        s.name, s.name, s.namespace_name, opts_.activator_port, s.revision, s.container_concurrency,
        s.scaling.decider.target, s.scaling.min_scale,
        s.scaling.max_scale > 0 ? std::to_string(s.scaling.max_scale) : "∞",
        capped ? ": no max-scale given, this machine's default" : "");
    r->want = loop_.last_want(r->key);
    cap_for_fixed_port(s, r->want);
  }
  publish_endpoints();
  for (auto& r : revisions_) reconcile(*r);
  loop_.start();
  tick();
}

// ---------------------------------------------------------------------------------------
// Activator → runtime (posted from the activator's home worker)

void LocalRuntime::on_report(const std::vector<activator::RevisionConcurrency>& batch) {
  asio::post(io_, [this, batch] {
    if (stopping_)
      return;
    for (const auto& c : batch)
      loop_.stat(c.revision, c.report.average_concurrency, c.report.request_count);
  });
}

void LocalRuntime::on_pods(const std::vector<activator::RevisionPods>& pods) {
  asio::post(io_, [this, pods] {
    for (const auto& p : pods) loop_.set_healthy(p.revision, "activator", p.healthy_pods);
  });
}

void LocalRuntime::on_pod_event(const std::string& revision,
                                const std::string& pod,
                                const activator::Transition& t) {
  asio::post(io_, [this, revision, pod, t] {
    Revision* r = find(revision);
    if (r == nullptr)
      return;
    auto it = std::find_if(r->replicas.begin(), r->replicas.end(),
                           [&](const auto& rep) { return rep->address() == pod; });
    if (it == r->replicas.end())
      return;
    Replica& rep = **it;
    const auto started = rep.life.since();
    if (t.to == PodState::Healthy && rep.life.healthy(time_.now())) {
      spdlog::info("{}: replica {} ready in {} (:{})", r->spec.name, rep.name,
                   seconds_text(time_.now() - started),
                   rep.in_process ? rep.app_port : rep.qp_port);
      if (r->failure)
        set_failure(*r, std::nullopt);
    }
    if (t.evicted && rep.counts()) {
      spdlog::warn(
          "{}: replica {} evicted by the activator (quarantined again and again); "
          "replacing it",
          r->spec.name, rep.name);
      stop_replica(*r, rep, true);
      reconcile(*r);  // may add replicas: `rep` is not used after this
    }
  });
}

// ---------------------------------------------------------------------------------------
// Control loop (100 ms): processes, restarts, scrapes (1 s), decisions (2 s)

void LocalRuntime::tick() {
  const auto now = time_.now();
  for (auto& r : revisions_) {
    for (auto& rep : r->replicas) check_processes(*r, *rep);
    const auto gone = std::remove_if(r->replicas.begin(), r->replicas.end(), [&](const auto& rep) {
      const bool done = rep->is(ReplicaState::Stopping) && !rep->app && !rep->qp && !rep->guard;
      if (done)
        spdlog::info("{}: replica {} stopped", r->spec.name, rep->name);
      return done;
    });
    if (gone != r->replicas.end()) {
      r->replicas.erase(gone, r->replicas.end());
      // The failure was about a replica that is gone: the next request tries afresh.
      const bool any_failed =
          std::any_of(r->replicas.begin(), r->replicas.end(),
                      [](const auto& rep) { return rep->is(ReplicaState::Failed); });
      if (r->failure && !any_failed && !stopping_)
        set_failure(*r, std::nullopt);
    }
    report_ready(*r);
  }
  if (stopping_) {
    const bool all_gone = std::all_of(revisions_.begin(), revisions_.end(),
                                      [](const auto& r) { return r->replicas.empty(); });
    if (all_gone) {
      if (on_stopped_)
        std::exchange(on_stopped_, nullptr)();
      return;
    }
  }
  // A retired guard is freed once its prober is done and no request or check holds it
  // (then nothing can post to it either); the release is posted so that whatever the
  // prober already queued on this thread runs first.
  std::erase_if(retired_guards_, [this](std::shared_ptr<queue::ReplicaGuard>& g) {
    if (!g->idle() || g.use_count() > 1)
      return false;
    asio::post(io_, [last = std::move(g)] {});
    return true;
  });
  if (now >= next_metrics_) {
    next_metrics_ = now + 1s;
    update_metrics();
  }
  timer_.expires_after(100ms);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec)
      tick();
  });
}

void LocalRuntime::report_ready(const Revision& r) {
  std::vector<std::string> targets;
  for (const auto& rep : r.replicas)
    if (rep->is(ReplicaState::Ready))
      targets.push_back(rep->in_process ? rep->address()
                                        : config::join_host_port("127.0.0.1", rep->stats_port));
  loop_.set_pods(r.key, std::move(targets));
}

int32_t LocalRuntime::scale(const std::string& revision,
                            const autoscaler::ScaleDecision& decision,
                            bool poke) {
  Revision* r = find(revision);
  if (r == nullptr || stopping_)
    return 0;
  autoscaler::ScaleDecision d = decision;
  if (cap_for_fixed_port(r->spec, d.want))
    d.reason.note = ", capped at 1: the container listens on a fixed port";
  if (d.want != r->want) {
    spdlog::info("{}: {} → {} ({}{})", r->spec.name, r->want, d.want, poke ? "first request; " : "",
                 d.reason.str());
    r->want = d.want;
  }
  reconcile(*r);
  // The loop records this decision when scale() returns: render its metrics after.
  asio::post(io_, [this] { update_metrics(); });
  return r->want;
}

void LocalRuntime::reconcile(Revision& r) {
  if (stopping_)
    return;
  std::vector<Replica*> live;
  for (auto& rep : r.replicas)
    if (rep->counts())
      live.push_back(rep.get());
  const auto count = static_cast<int32_t>(live.size());
  if (count < r.want) {
    // While a replica keeps failing, do not start more copies of a broken command.
    const bool failing = std::any_of(
        live.begin(), live.end(), [](const Replica* rep) { return rep->is(ReplicaState::Failed); });
    for (int32_t i = count; i < r.want && !failing; ++i) {
      auto rep = std::make_unique<Replica>(policy_, time_.now());
      rep->name = fmt::format("{}-{}", r.spec.revision, r.next_index++);
      rep->in_process = opts_.in_process;
      pick_ports(r, *rep);
      Replica& ref = *rep;
      r.replicas.push_back(std::move(rep));
      start_replica(r, ref);
    }
    publish_endpoints();
  } else if (count > r.want) {
    // Stop the least useful first: failed, backing off, starting, then the newest ready.
    auto rank = [](const Replica* rep) {
      switch (rep->life.state()) {
        case ReplicaState::Failed:
          return 0;
        case ReplicaState::Backoff:
          return 1;
        case ReplicaState::Starting:
          return 2;
        default:
          return 3;
      }
    };
    std::stable_sort(live.begin(), live.end(), [&](const Replica* a, const Replica* b) {
      if (rank(a) != rank(b))
        return rank(a) < rank(b);
      return a->name > b->name;
    });
    for (int32_t i = 0; i < count - r.want; ++i)
      stop_replica(r, *live[static_cast<size_t>(i)], false);
    publish_endpoints();
  }
}

void LocalRuntime::publish_endpoints() {
  config::EndpointsFile file;
  for (const auto& r : revisions_) {
    config::RevisionEndpoints e;
    e.namespace_name = r->spec.namespace_name;
    e.service = r->spec.name;
    e.name = r->spec.revision;
    e.container_concurrency = r->spec.container_concurrency;
    e.timeout = std::chrono::seconds(r->spec.timeout_seconds);
    e.h2c = r->spec.container.h2c;
    for (const auto& rep : r->replicas)
      if (rep->routable())
        e.endpoints.push_back(rep->address());
    file.revisions.push_back(std::move(e));
  }
  sink_.endpoints(std::move(file));
}

// ---------------------------------------------------------------------------------------
// Processes

void LocalRuntime::pick_ports(const Revision& r, Replica& rep) {
  rep.app_port = r.spec.container.port.value_or(free_port());
  if (rep.in_process)
    return;  // the guard has no ports
  rep.qp_port = free_port();
  rep.admin_port = free_port();
  rep.stats_port = free_port();
  rep.metrics_port = free_port();
}

void LocalRuntime::start_replica(Revision& r, Replica& rep) {
  const auto& s = r.spec;
  rep.life.restarted(time_.now());
  rep.qp_termed = rep.app_termed = false;
  spdlog::info("{}: replica {} starting{}", s.name, rep.name,
               rep.life.crashes() > 0 ? fmt::format(" (restart {})", rep.life.crashes()) : "");
  SpawnSpec app;
  app.argv = s.container.command;
  app.working_dir = s.container.working_dir;
  app.env = s.container.env;
  app.env.emplace_back("PORT", std::to_string(rep.app_port));
  app.env.emplace_back("K_SERVICE", s.name);
  app.env.emplace_back("K_CONFIGURATION", s.name);
  app.env.emplace_back("K_REVISION", s.revision);
  Replica* self = &rep;
  auto started = Process::spawn(io_, app, [this, self, prefix = rep.name](std::string_view line) {
    self->last_line = std::string(line.substr(0, 300));
    spdlog::info("{} | {}", prefix, line);
  });
  if (auto* why = std::get_if<std::string>(&started)) {
    // The command itself cannot run: no point retrying quickly.
    crashed(r, rep, *why, /*cannot_run=*/true);
    return;
  }
  rep.app = std::move(std::get<std::unique_ptr<Process>>(started));
  if (rep.in_process) {
    start_guard(r, rep);
    return;
  }

  SpawnSpec qp;
  qp.argv = {opts_.sluice_binary,
             "queue-proxy",
             "--address",
             "127.0.0.1",  // a replica is reached through the activator, not the network
             "--admin-port",
             std::to_string(rep.admin_port),
             "--stats-port",
             std::to_string(rep.stats_port),
             "--metrics-port",
             std::to_string(rep.metrics_port),
             "--drain-quiet-period",
             "0s",
             "--startup-probe-interval",
             std::to_string(opts_.startup_probe_interval.count()) + "ms"};
  qp.env = queue_proxy_env(s, rep.name, rep.qp_port, rep.app_port);
  qp.env.emplace_back("SLUICE_ACTIVATORS",
                      opts_.activator_host + ":" + std::to_string(opts_.activator_port));
  auto qp_started = Process::spawn(io_, qp, [self, prefix = rep.name](std::string_view line) {
    self->last_line = std::string(line.substr(0, 300));
    spdlog::info("{} queue-proxy | {}", prefix, line);
  });
  if (auto* why = std::get_if<std::string>(&qp_started)) {
    crashed(r, rep, "queue-proxy: " + *why);
    return;
  }
  rep.qp = std::move(std::get<std::unique_ptr<Process>>(qp_started));
}

void LocalRuntime::start_guard(Revision& r, Replica& rep) {
  // The very configuration a `sluice queue-proxy` process would load from its
  // environment and flags: one source for both layouts.
  // (QUEUE_SERVING_PORT is the app's: a guard has no port of its own)
  const auto env = queue_proxy_env(r.spec, rep.name, rep.app_port, rep.app_port);
  config::QueueProxyFlags flags;
  flags.drain_quiet_period = "0s";
  flags.startup_probe_interval = std::to_string(opts_.startup_probe_interval.count()) + "ms";
  auto loaded = config::load_queue_proxy_config(
      [&env](std::string_view name) -> std::optional<std::string> {
        for (const auto& [k, v] : env)
          if (k == name)
            return v;
        return std::nullopt;
      },
      flags);
  if (!loaded.config) {
    std::string why = "queue-proxy configuration:";
    for (const auto& e : loaded.errors) why += " " + e;
    crashed(r, rep, why, /*cannot_run=*/true);
    return;
  }
  queue::ReplicaGuard::Options g;
  g.config = std::move(*loaded.config);
  g.time = &time_;
  g.home = sink_.home;
  g.control = &io_;
  g.shards = opts_.activator_threads;
  g.instance_id = core::random_hex_id(random_);
  g.log_prefix = rep.name + ": ";
  rep.guard = std::make_shared<queue::ReplicaGuard>(std::move(g));
  rep.guard_drained = false;
  // The cold start's release: the app's readiness reaches the activator as a direct call.
  rep.guard->prober().on_change(
      [this, key = r.key, address = rep.address(), instance = rep.guard->instance_id()](bool ok) {
        if (sink_.pod_state)
          sink_.pod_state(key, address,
                          ok ? activator::PushedState::Ready : activator::PushedState::NotReady,
                          instance);
      });
  sink_.local_pod(rep.address(), rep.guard, true);
  rep.guard->start();
  update_metrics();
}

void LocalRuntime::retire_guard(Replica& rep) {
  if (!rep.guard)
    return;
  rep.guard->stop();
  rep.guard->prober().on_change(nullptr);
  sink_.local_pod(rep.address(), rep.guard, false);
  retired_guards_.push_back(std::move(rep.guard));
  update_metrics();
}

void LocalRuntime::stop_replica(Revision& r, Replica& rep, bool at_once) {
  if (rep.is(ReplicaState::Stopping))
    return;
  spdlog::info("{}: replica {} stopping", r.spec.name, rep.name);
  const auto now = time_.now();
  rep.life.stop(now);
  // Out of the activator first (done by the caller's publish); give it a moment to stop
  // sending before the queue-proxy stops accepting.
  rep.term_at = at_once ? now : now + 100ms;
  rep.kill_at = rep.term_at + std::chrono::seconds(r.spec.timeout_seconds) + 5s;
}

void LocalRuntime::check_processes(Revision& r, Replica& rep) {
  const auto now = time_.now();
  if (rep.is(ReplicaState::Stopping) && rep.in_process) {
    // The guard drains first (what it holds finishes, however long a stream or tunnel
    // lasts, up to the kill deadline); the app is stopped once nothing reaches it.
    if (rep.guard && now >= rep.term_at) {
      rep.guard->set_draining(true);
      if (rep.guard->in_flight() == 0 || now >= rep.kill_at)
        rep.guard_drained = true;
    }
    if (!rep.guard || rep.guard_drained) {
      if (rep.app && !rep.app_termed) {
        rep.app->signal(SIGTERM);
        rep.app_termed = true;
        rep.kill_at = std::min(rep.kill_at, now + 10s);
      }
      if (rep.app && rep.app->poll())
        rep.app.reset();
      if (!rep.app)
        retire_guard(rep);
    }
    if (rep.app && now >= rep.kill_at)
      rep.app->signal(SIGKILL);
    return;
  }
  if (rep.is(ReplicaState::Stopping)) {
    // The queue-proxy drains first; the app is stopped once nothing reaches it anymore.
    if (rep.qp && !rep.qp_termed && now >= rep.term_at) {
      rep.qp->signal(SIGTERM);
      rep.qp_termed = true;
    }
    if (rep.qp && rep.qp->poll())
      rep.qp.reset();
    if (!rep.qp && rep.app && !rep.app_termed) {
      rep.app->signal(SIGTERM);
      rep.app_termed = true;
      rep.kill_at = std::min(rep.kill_at, now + 10s);
    }
    if (rep.app && rep.app->poll())
      rep.app.reset();
    if (now >= rep.kill_at) {
      if (rep.qp)
        rep.qp->signal(SIGKILL);
      if (rep.app)
        rep.app->signal(SIGKILL);
    }
    return;
  }
  if (rep.is(ReplicaState::Backoff) || rep.is(ReplicaState::Failed)) {
    if (rep.life.due(now)) {
      // Fresh ports: the old ones may have been lost to a race ("address already in use"),
      // and the activator takes the new address as a new pod.
      pick_ports(r, rep);
      start_replica(r, rep);
      publish_endpoints();
    }
    return;
  }
  // A replica that stays up long enough has recovered: its crash history is forgiven
  // (ready alone is not enough: an app can die right after its port first answers).
  rep.life.tick(now);
  // Starting or Ready: any exit is a crash.
  if (rep.app && rep.app->poll()) {
    crashed(r, rep, "app " + rep.app->poll()->describe());
  } else if (rep.qp && rep.qp->poll()) {
    crashed(r, rep, "queue-proxy " + rep.qp->poll()->describe());
  }
}

void LocalRuntime::crashed(Revision& r, Replica& rep, const std::string& what, bool cannot_run) {
  // Both processes go: the replica restarts as a whole on the same ports.
  rep.app.reset();
  rep.qp.reset();
  const auto now = time_.now();
  bool failed = true;
  if (cannot_run)
    rep.life.failed(now);
  else
    failed = rep.life.crashed(now);
  if (failed) {
    std::string why = fmt::format("replica {} failed: {}", rep.name, what);
    if (!rep.last_line.empty())
      why += fmt::format(" (last output: {})", rep.last_line);
    spdlog::error("{}: {}; retrying in {}", r.spec.name, why, seconds_text(opts_.max_backoff));
    set_failure(r, why);
  } else {
    const auto backoff = rep.life.restart_at() - now;
    spdlog::warn("{}: replica {} {}; restarting in {}", r.spec.name, rep.name, what,
                 seconds_text(backoff));
  }
  publish_endpoints();
  // After the endpoints: the activator never holds the address without its guard.
  retire_guard(rep);
}

void LocalRuntime::set_failure(Revision& r, std::optional<std::string> why) {
  r.failure = why;
  sink_.failure(r.key, std::move(why));
}

void LocalRuntime::stop_all(std::function<void()> done) {
  stopping_ = true;
  loop_.stop();
  on_stopped_ = std::move(done);
  const auto now = time_.now();
  for (auto& r : revisions_)
    for (auto& rep : r->replicas) {
      stop_replica(*r, *rep, /*at_once=*/true);
      rep->term_at = std::min(rep->term_at, now);  // one already stopping: no more delay
    }
  tick();  // notices when the last process is gone (and runs even if start() never did)
}

void LocalRuntime::stop_now() {
  stopping_ = true;  // no replacements while the activator winds down
  loop_.stop();
  const auto now = time_.now();
  for (auto& r : revisions_)
    for (auto& rep : r->replicas) {
      stop_replica(*r, *rep, /*at_once=*/true);
      rep->term_at = std::min(rep->term_at, now);
      rep->kill_at = std::min(rep->kill_at, now + 2s);
      if (rep->app && !rep->app_termed) {
        rep->app->signal(SIGTERM);
        rep->app_termed = true;
      }
    }
  tick();
}

// ---------------------------------------------------------------------------------------
// In-process stats: what the HTTP scrape of a queue-proxy's stat port would return, read
// from the guards on their home thread.

void LocalRuntime::GuardScraper::scrape(std::vector<std::string> targets, Done done) {
  std::vector<std::shared_ptr<queue::ReplicaGuard>> guards;
  for (const auto& target : targets) {
    std::shared_ptr<queue::ReplicaGuard> found;
    for (const auto& r : runtime_.revisions_)
      for (const auto& rep : r->replicas)
        if (rep->guard && rep->address() == target)
          found = rep->guard;
    if (!found) {
      done(std::nullopt);  // a replica that went away spoils the sample (as a failed scrape)
      return;
    }
    guards.push_back(std::move(found));
  }
  asio::post(*runtime_.sink_.home, [this, guards = std::move(guards), done = std::move(done)] {
    autoscaler::ScrapeSample sample;
    const auto now = runtime_.time_.now();
    for (const auto& g : guards) {
      const stats::Report r = g->cut_stats(now);
      ++sample.pods;
      // Requests that came through the activator are counted by its own reports.
      sample.concurrency += r.average_concurrency - r.average_proxied_concurrency;
      sample.rps += r.request_count - r.proxied_request_count;
    }
    asio::post(runtime_.io_, [done, sample] { done(sample); });
  });
}

// ---------------------------------------------------------------------------------------
// Metrics

void LocalRuntime::update_metrics() {
  auto families = loop_.metric_families();
  std::vector<std::shared_ptr<const queue::ReplicaGuard>> guards;
  for (const auto& r : revisions_)
    for (const auto& rep : r->replicas)
      if (rep->guard)
        guards.push_back(rep->guard);
  std::lock_guard lock(metrics_mu_);
  loop_families_ = std::move(families);
  metric_guards_ = std::move(guards);
}

void LocalRuntime::collect_metrics(std::vector<prometheus::MetricFamily>& out) const {
  std::vector<std::shared_ptr<const queue::ReplicaGuard>> guards;
  {
    std::lock_guard lock(metrics_mu_);
    metrics::merge_families(out, loop_families_);
    guards = metric_guards_;
  }
  // Read now: the guards' cells may be read from any thread while requests record.
  for (const auto& g : guards) metrics::merge_families(out, g->metrics().registry().collect());
}

}  // namespace sluice::runtime
