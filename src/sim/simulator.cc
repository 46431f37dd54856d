#include "sim/simulator.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <charconv>
#include <cmath>
#include <deque>
#include <optional>
#include <queue>

#include "activator/concurrency_reporter.h"
#include "autoscaler/scaling_loop.h"
#include "core/random.h"

namespace sluice::sim {

namespace {

using core::Duration;
using core::TimePoint;
using namespace std::chrono_literals;

constexpr double kBucketGrowth = 1.01;
constexpr double kFirstBucket = 1e-6;

Duration seconds(double s) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s));
}

struct Replica {
  enum class State { Starting, Ready, Draining };
  uint32_t id = 0;  // "r<id>" in the loop's pod lists
  State state = State::Starting;
  TimePoint ready_at;
  uint32_t in_flight = 0;
};

struct Pending {
  TimePoint arrival;
  float duration_s = 0;
};

struct Service {
  std::string key;  // "sim/<index>", as the loop knows it
  ServiceSetup setup;
  std::vector<Replica> replicas;
  std::deque<Pending> queue;
  int32_t asked = 0;  // the replicas the loop last asked for
  uint32_t in_flight = 0;
  uint32_t idle = 0;     // replicas ready with nothing in flight
  TimePoint accounted;   // replica-seconds are summed up to here
  bool publish = false;  // readiness changed: on the dirty list for the loop
  SeriesPoint step;      // the series step being filled
  ServiceResult result;
  bool included = true;   // simulated by this run (SimOptions::services)
  bool finished = false;  // back at its floor after the trace: `final` holds its results
  ServiceResult final;
};

// 24 bytes (the queue holds every request in flight: thousands at once).
struct Event {
  enum class Kind : uint8_t { Ready, Done };
  TimePoint at;
  uint64_t seq = 0;  // ties: first scheduled, first handled
  uint32_t service = 0;
  uint32_t replica : 31 = 0;  // ids from 1: a year of scale-ups is well under 2^31
  uint32_t done : 1 = 0;      // Kind::Done
  Kind kind() const { return done ? Kind::Done : Kind::Ready; }
  bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
};
static_assert(sizeof(Event) == 24);

// Events in time order (ties: first pushed, first out), by the slot (1/16 s) they fall
// in: the current slot's in a heap (a few events, not every request in flight), the
// next kHorizon slots' in unsorted buckets, later ones in a heap of their own.
class EventQueue {
 public:
  explicit EventQueue(TimePoint start) : start_(start), buckets_(kHorizon) {}

  void push(const Event& e) {
    const int64_t slot = slot_of(e.at);
    if (slot <= current_) {
      now_.push_back(e);
      std::push_heap(now_.begin(), now_.end(), std::greater<>());
    } else if (slot < current_ + kHorizon) {
      buckets_[static_cast<size_t>(slot % kHorizon)].push_back(e);
    } else {
      far_.push(e);
    }
  }
  // The first event before `before`, if any (moving on to its slot).
  const Event* first_before(TimePoint before) {
    const int64_t last = slot_of(before - Duration(1));
    while (now_.empty() && current_ < last) step();
    return !now_.empty() && now_.front().at < before ? &now_.front() : nullptr;
  }
  void pop() {
    std::pop_heap(now_.begin(), now_.end(), std::greater<>());
    now_.pop_back();
  }

 private:
  static constexpr int64_t kPerSecond = 16;
  static constexpr int64_t kHorizon = 64 * kPerSecond;  // a minute of slots
  int64_t slot_of(TimePoint t) const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t - start_).count() /
           (1'000'000'000 / kPerSecond);
  }
  void step() {
    ++current_;
    auto& b = buckets_[static_cast<size_t>(current_ % kHorizon)];
    now_.swap(b);  // now_ was empty
    while (!far_.empty() && slot_of(far_.top().at) < current_ + kHorizon) {
      push(far_.top());
      far_.pop();
    }
    std::make_heap(now_.begin(), now_.end(), std::greater<>());
  }

  TimePoint start_;
  int64_t current_ = 0;
  std::vector<Event> now_;  // a heap
  std::vector<std::vector<Event>> buckets_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> far_;
};

class Simulation final : public autoscaler::Scaler, public autoscaler::StatScraper {
 public:
  Simulation(const Trace& trace, const std::vector<ServiceSetup>& setups, const SimOptions& options)
      : trace_(trace),
        options_(options),
        random_(options.seed),
        loop_(clock_, io_.get_executor(), *this, *this, random_) {
    services_.reserve(trace.services.size());
    std::vector<bool> included(trace.services.size(), options.services.empty());
    for (uint32_t i : options.services)
      if (i < included.size())
        included[i] = true;
    for (size_t i = 0; i < trace.services.size(); ++i) {
      Service s;
      s.included = included[i];
      if (!s.included) {
        services_.push_back(std::move(s));
        continue;
      }
      ++included_;
      // Short keys: the loop finds revisions by key on every call, and the traces' names
      // share long prefixes ("owner00012/app00012").
      s.key = fmt::format("sim/{}", i);
      s.setup = setups.at(i);
      s.setup.scaling.keep_alive.start_lead = s.setup.start_time;
      s.accounted = start_;
      loop_.add(s.key, trace.services[i], s.setup.scaling);
      services_.push_back(std::move(s));
    }
  }

  std::vector<ServiceResult> run() {
    for (auto& s : services_) {
      if (!s.included)
        continue;
      s.asked = loop_.last_want(s.key);
      reconcile(s);
    }
    loop_.start();
    io_.poll();
    const double end_s = std::max(
        trace_.length_s, trace_.invocations.empty() ? 0.0 : trace_.invocations.back().arrival_s);
    // After the trace: each service until it is back at its floor, at most an hour more.
    const TimePoint end = start_ + seconds(end_s);
    const TimePoint hard_stop = end + 1h;
    size_t finished = 0;
    size_t next = 0;
    uint64_t second = 0;
    while (true) {
      const TimePoint boundary = start_ + std::chrono::seconds(++second);
      while (true) {
        const bool arrival =
            next < trace_.invocations.size() && at(trace_.invocations[next]) < boundary;
        const Event* top = events_.first_before(boundary);
        const bool event = top != nullptr;
        if (!arrival && !event)
          break;
        if (arrival && (!event || at(trace_.invocations[next]) <= top->at)) {
          const Invocation& inv = trace_.invocations[next++];
          if (!services_[inv.service].included)
            continue;
          now_ = at(inv);
          arrive(inv);
        } else {
          const Event e = *top;
          events_.pop();
          now_ = e.at;
          handle(e);
        }
      }
      now_ = boundary;
      sync();
      every_second();
      if (options_.progress && second % 3600 == 0)
        options_.progress(std::min(1.0, static_cast<double>(second) / std::max(1.0, end_s)));
      if (boundary >= end) {
        // A service's results end when it is back at its floor: they depend on its own
        // traffic alone, not on when the others settle (so a run split by services
        // gives the same results as one run).
        for (auto& s : services_) {
          if (s.included && !s.finished && settled(s)) {
            account(s);
            s.final = s.result;
            s.finished = true;
            ++finished;
          }
        }
        if (finished == included_ || boundary >= hard_stop)
          break;
      }
    }
    loop_.stop();
    std::vector<ServiceResult> out;
    out.reserve(services_.size());
    for (auto& s : services_) {
      if (s.finished) {
        out.push_back(std::move(s.final));
      } else {
        if (s.included)
          account(s);
        out.push_back(std::move(s.result));
      }
    }
    return out;
  }

  // autoscaler::Scaler
  int32_t scale(const std::string& revision, const autoscaler::ScaleDecision& d, bool) override {
    const auto i = index_of(revision);
    if (!i)
      return 0;
    Service& s = services_[*i];
    if (d.want != s.asked) {
      ++s.result.scale_events;
      s.asked = d.want;
      reconcile(s);
    }
    return d.want;
  }

  // autoscaler::StatScraper: every request went through the activator, whose reports
  // count it; the queue-proxies' own share is zero. Answered on a later turn, as a
  // scrape over the network is.
  void scrape(std::vector<std::string> targets, Done done) override {
    boost::asio::post(io_, [n = static_cast<int>(targets.size()), done = std::move(done)] {
      done(autoscaler::ScrapeSample{0, 0, n});
    });
  }

 private:
  TimePoint at(const Invocation& inv) const { return start_ + seconds(inv.arrival_s); }

  // "sim/<i>" → i (the keys are ours: no lookup table needed).
  std::optional<uint32_t> index_of(const std::string& key) const {
    uint32_t i = 0;
    if (key.size() <= 4 || key.compare(0, 4, "sim/") != 0)
      return std::nullopt;
    const auto [end, ec] = std::from_chars(key.data() + 4, key.data() + key.size(), i);
    if (ec != std::errc() || end != key.data() + key.size() || i >= services_.size())
      return std::nullopt;
    return i;
  }

  // The loop's clock is moved only when the loop is called (a poke, the second's
  // reports) or its timers may be due (whole seconds): the model keeps its own `now_`, so
  // most events touch neither the clock nor the io_context.
  void sync() {
    if (now_ > clock_.now())
      clock_.set(now_);
    io_.poll();
  }

  void account(Service& s) {
    const TimePoint now = now_;
    const double dt = core::to_seconds(now - s.accounted);
    if (dt <= 0)
      return;
    s.accounted = now;
    s.result.replica_seconds += dt * static_cast<double>(s.replicas.size());
    s.result.idle_replica_seconds += dt * static_cast<double>(s.idle);
  }

  void reconcile(Service& s) {
    account(s);
    const TimePoint now = now_;
    int32_t running = 0;
    for (const auto& r : s.replicas) running += r.state != Replica::State::Draining;
    while (running < s.asked) {
      Replica r;
      r.id = ++replica_ids_;
      r.ready_at = now + s.setup.start_time;
      s.replicas.push_back(r);
      events_.push({r.ready_at, ++seq_, index(s), r.id, 0});
      ++running;
    }
    s.step.replicas = std::max(s.step.replicas, static_cast<uint32_t>(s.replicas.size()));
    while (running > s.asked) {
      // Starting replicas go first (newest first), then idle ones; a busy one drains.
      auto pick = std::find_if(s.replicas.rbegin(), s.replicas.rend(), [](const Replica& r) {
        return r.state == Replica::State::Starting;
      });
      if (pick == s.replicas.rend())
        pick = std::find_if(s.replicas.rbegin(), s.replicas.rend(), [](const Replica& r) {
          return r.state == Replica::State::Ready && r.in_flight == 0;
        });
      if (pick != s.replicas.rend()) {
        if (pick->state == Replica::State::Ready) {
          --s.idle;
          mark(s);
        }
        s.replicas.erase(std::next(pick).base());
      } else {
        auto busy = std::find_if(s.replicas.rbegin(), s.replicas.rend(),
                                 [](const Replica& r) { return r.state == Replica::State::Ready; });
        busy->state = Replica::State::Draining;
        mark(s);
      }
      --running;
    }
  }

  void mark(Service& s) {
    if (!s.publish)
      dirty_.push_back(index(s));
    s.publish = true;
  }

  uint32_t index(const Service& s) const { return static_cast<uint32_t>(&s - services_.data()); }

  // Replicas are appended with rising ids and erased in place: the vector stays sorted.
  Replica* find(Service& s, uint32_t id) {
    auto it = std::lower_bound(s.replicas.begin(), s.replicas.end(), id,
                               [](const Replica& r, uint32_t v) { return r.id < v; });
    return it != s.replicas.end() && it->id == id ? &*it : nullptr;
  }

  void arrive(const Invocation& inv) {
    Service& s = services_[inv.service];
    ++s.result.requests;
    ++s.step.arrivals;
    if (auto poke = reporter_.request_in(inv.service, now_)) {
      sync();
      loop_.stat(s.key, poke->report.average_concurrency, poke->report.request_count);
      io_.poll();
    }
    s.queue.push_back({now_, inv.duration_s});
    dispatch(s);
  }

  void handle(const Event& e) {
    Service& s = services_[e.service];
    Replica* r = find(s, e.replica);
    if (r == nullptr)
      return;  // scaled away before it was ready
    account(s);
    if (e.kind() == Event::Kind::Ready) {
      r->state = Replica::State::Ready;
      ++s.idle;
      mark(s);
    } else {
      reporter_.request_out(e.service, now_);
      --r->in_flight;
      --s.in_flight;
      s.idle += r->state == Replica::State::Ready && r->in_flight == 0;
      if (r->state == Replica::State::Draining && r->in_flight == 0)
        s.replicas.erase(s.replicas.begin() + (r - s.replicas.data()));
    }
    dispatch(s);
  }

  // Waiting requests to ready replicas with a free slot, least loaded first.
  void dispatch(Service& s) {
    const uint32_t cc = s.setup.container_concurrency;
    while (!s.queue.empty()) {
      Replica* best = nullptr;
      for (auto& r : s.replicas) {
        if (r.state == Replica::State::Ready && (cc == 0 || r.in_flight < cc) &&
            (best == nullptr || r.in_flight < best->in_flight)) {
          best = &r;
          if (r.in_flight == 0)
            break;  // none is less loaded: the first idle one
        }
      }
      if (best == nullptr)
        return;
      account(s);
      const Pending p = s.queue.front();
      s.queue.pop_front();
      const TimePoint now = now_;
      s.result.added_latency.add(core::to_seconds(now - p.arrival));
      if (best->ready_at > p.arrival)
        ++s.result.cold_starts;
      s.idle -= best->in_flight == 0;
      ++best->in_flight;
      ++s.in_flight;
      events_.push({now + seconds(p.duration_s), ++seq_, index(s), best->id, 1});
    }
  }

  // The activator's report and its view of healthy pods, once a second.
  void every_second() {
    const TimePoint now = now_;
    for (const auto& c : reporter_.cut(now))
      loop_.stat(services_[c.revision].key, c.report.average_concurrency, c.report.request_count);
    // Readiness where it changed, as the runtime's view of ready pods. (An activator's
    // healthy list would say the same: every ready replica is healthy in the model.)
    ++seconds_;
    for (uint32_t i : dirty_) {
      Service& s = services_[i];
      std::vector<std::string> ready;
      for (const auto& r : s.replicas)
        if (r.state == Replica::State::Ready)
          ready.push_back(fmt::format("r{}", r.id));
      loop_.set_pods(s.key, std::move(ready));
      s.publish = false;
    }
    dirty_.clear();
    if (options_.series_step_s > 0 && seconds_ % options_.series_step_s == 0) {
      auto record = [](Service& s) {
        s.step.replicas = std::max(s.step.replicas, static_cast<uint32_t>(s.replicas.size()));
        s.result.series.push_back(s.step);
        s.step = SeriesPoint{static_cast<uint32_t>(s.replicas.size()), 0};
      };
      if (options_.series_of.empty()) {
        for (auto& s : services_)
          if (s.included)
            record(s);
      } else {
        for (uint32_t i : options_.series_of)
          if (i < services_.size() && services_[i].included)
            record(services_[i]);
      }
    }
    io_.poll();
  }

  // Nothing queued or in flight, and back at its floor: min-scale, or one replica where
  // scale to zero is off.
  static bool settled(const Service& s) {
    if (!s.queue.empty() || s.in_flight > 0)
      return false;
    const int32_t floor =
        std::max(s.setup.scaling.min_scale, s.setup.scaling.enable_scale_to_zero ? 0 : 1);
    return static_cast<int32_t>(s.replicas.size()) <= floor;
  }

  const Trace& trace_;
  SimOptions options_;
  core::ManualTimeSource clock_;
  boost::asio::io_context io_{1};
  core::FastRandom random_;
  autoscaler::ScalingLoop loop_;
  activator::BasicConcurrencyReporter<uint32_t> reporter_;  // by service index
  std::vector<Service> services_;
  TimePoint start_ = clock_.now();
  TimePoint now_ = start_;  // the model's time; the loop's clock follows it (sync())
  EventQueue events_{start_};
  uint64_t seq_ = 0;
  uint64_t seconds_ = 0;
  std::vector<uint32_t> dirty_;  // services whose readiness changed since the last second
  uint32_t replica_ids_ = 0;
  size_t included_ = 0;  // services simulated (SimOptions::services)
};

}  // namespace

void LatencyHistogram::add(double seconds) {
  ++count_;
  max_ = std::max(max_, seconds);
  if (seconds < kFirstBucket) {
    ++zeros_;
    return;
  }
  const auto b = static_cast<size_t>(std::log(seconds / kFirstBucket) / std::log(kBucketGrowth));
  if (b >= buckets_.size())
    buckets_.resize(b + 1);
  ++buckets_[b];
}

double LatencyHistogram::quantile(double q) const {
  if (count_ == 0)
    return 0;
  const auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  uint64_t seen = zeros_;
  if (seen >= rank)
    return 0;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    seen += buckets_[b];
    if (seen >= rank)  // the bucket's upper edge, capped by the largest value seen
      return std::min(max_, kFirstBucket * std::pow(kBucketGrowth, static_cast<double>(b + 1)));
  }
  return max_;
}

std::vector<ServiceResult> simulate(const Trace& trace,
                                    const std::vector<ServiceSetup>& setups,
                                    const SimOptions& options) {
  Simulation sim(trace, setups, options);
  return sim.run();
}

}  // namespace sluice::sim
