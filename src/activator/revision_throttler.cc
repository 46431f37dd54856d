#include "activator/revision_throttler.h"

#include <fmt/format.h>

#include <algorithm>

#include "activator/subsetting.h"

namespace sluice::activator {

RevisionThrottler::RevisionThrottler(RevisionSpec spec,
                                     const HealthConfig& health,
                                     const ThrottlerConfig& config)
    : spec_(std::move(spec)),
      key_(spec_.namespace_name + "/" + spec_.name),
      health_(health),
      config_(config),
      breaker_(0, config.queue_depth),
      lb_(spec_.lb.value_or(default_lb_for(spec_.container_concurrency))) {}

void RevisionThrottler::update_spec(const RevisionSpec& spec) {
  const bool lb_changed =
      spec.lb != spec_.lb || spec.container_concurrency != spec_.container_concurrency;
  spec_ = spec;
  if (lb_changed)
    lb_ = LbPolicy(spec_.lb.value_or(default_lb_for(spec_.container_concurrency)));
  reassign();
}

void RevisionThrottler::note_instance(PodTracker& t,
                                      std::string_view instance,
                                      core::TimePoint now,
                                      std::vector<PodEvent>& out) {
  const size_t before = out.size();
  collect(t, t.on_instance(instance, now), out);
  if (out.size() > before)
    out.back().new_instance = true;
}

void RevisionThrottler::collect(PodTracker& t, Transition tr, std::vector<PodEvent>& out) {
  if (tr.left_quarantine())
    passive_quarantined_.erase(t.address());
  if (tr.changed() || tr.evicted)
    out.push_back({t.address(), tr});
}

std::vector<PodEvent> RevisionThrottler::set_endpoints(const std::vector<std::string>& pods,
                                                       const std::vector<std::string>& activators,
                                                       const std::string& self,
                                                       core::TimePoint now) {
  std::vector<PodEvent> events;
  std::set<std::string> wanted(pods.begin(), pods.end());
  for (auto& [address, tracker] : pods_) {
    if (!wanted.count(address))
      collect(*tracker, tracker->on_removed(now), events);
  }
  for (const auto& address : wanted) {
    auto it = pods_.find(address);
    if (it == pods_.end()) {
      auto t = std::make_unique<PodTracker>(address, now, health_);
      events.push_back({address, Transition{PodState::Removed, PodState::Pending}});
      pods_.emplace(address, std::move(t));
    } else {
      // Re-added after removal → pending; still present → unchanged (backoffs kept).
      collect(*it->second, it->second->on_readded(now), events);
    }
  }
  endpoints_.assign(wanted.begin(), wanted.end());
  activators_ = activators;
  self_ = self;
  forget_removed();
  reassign();
  return events;
}

void RevisionThrottler::reassign() {
  assigned_.clear();
  for (const auto& a : assign_pods(activators_, self_, endpoints_, spec_.container_concurrency)) {
    auto it = pods_.find(a.pod);
    if (it != pods_.end())
      assigned_.emplace_back(it->second.get(), a.concurrency);
  }
  recompute_capacity();
}

void RevisionThrottler::recompute_capacity() {
  uint64_t capacity = 0;
  bool any_serving = false;
  for (const auto& [pod, share] : assigned_) {
    if (pod->state() == PodState::Healthy) {
      any_serving = true;
      capacity += share;
    } else if (pod->state() == PodState::Recovering) {
      any_serving = true;
      capacity += 1;
    }
  }
  if (spec_.container_concurrency == 0) {
    breaker_.set_capacity(any_serving ? admission::Breaker::kUnlimited : 0);
  } else {
    breaker_.set_capacity(
        static_cast<uint32_t>(std::min<uint64_t>(capacity, admission::Breaker::kUnlimited - 1)));
  }
}

PodTracker* RevisionThrottler::pick(core::Random& random) {
  slots_.clear();
  for (const auto& [pod, share] : assigned_) {
    PodSlot slot;
    slot.in_flight = pod->in_flight();
    slot.accepts = pod->accepts_request();
    slot.limit = pod->state() == PodState::Recovering ? 1 : share;
    slots_.push_back(slot);
  }
  auto index = lb_.pick(slots_, random);
  if (!index)
    return nullptr;
  PodTracker* pod = assigned_[*index].first;
  pod->request_started();
  return pod;
}

std::vector<PodEvent> RevisionThrottler::finish(PodTracker* pod,
                                                RequestOutcome outcome,
                                                core::TimePoint now) {
  std::vector<PodEvent> events;
  collect(*pod, pod->request_finished(now), events);
  if (outcome == RequestOutcome::Success) {
    collect(*pod, pod->on_request_succeeded(now), events);
  } else if (outcome == RequestOutcome::PodFailure &&
             (pod->state() == PodState::Healthy || pod->state() == PodState::Recovering)) {
    // Envoy-style ejection cap: passive signals may not take out more than a share of
    // the revision's pods; past it the failure is counted and the pod stays in rotation.
    const size_t total = pods_.size();
    size_t allowed = static_cast<size_t>(config_.ejection_cap * static_cast<double>(total));
    if (total >= 2)
      allowed = std::max<size_t>(allowed, 1);
    if (passive_quarantined_.size() + 1 > allowed) {
      ++ejection_overflows_;
    } else {
      Transition tr = pod->on_request_failed(now);
      if (tr.entered_quarantine())
        passive_quarantined_.insert(pod->address());
      collect(*pod, tr, events);
    }
  }
  forget_removed();
  recompute_capacity();
  return events;
}

std::vector<PodEvent> RevisionThrottler::on_check(const std::string& address,
                                                  CheckResult result,
                                                  core::TimePoint now,
                                                  std::string_view instance,
                                                  core::TimePoint sent_at) {
  std::vector<PodEvent> events;
  auto it = pods_.find(address);
  if (it == pods_.end())
    return events;
  PodTracker& t = *it->second;
  if (t.state_since() > sent_at)
    return events;  // stale: the pod moved on while the check was in flight
  if (result != CheckResult::WrongRevision)
    note_instance(t, instance, now, events);
  switch (result) {
    case CheckResult::Passed:
      collect(t, t.on_check_passed(now), events);
      break;
    case CheckResult::NotReady:
      collect(t, t.on_check_not_ready(now), events);
      break;
    case CheckResult::Failed:
      collect(t, t.on_check_failed(now), events);
      break;
    case CheckResult::WrongRevision:
      // The address now belongs to another revision (pod IP reused): forget it.
      collect(t, t.on_removed(now), events);
      endpoints_.erase(std::remove(endpoints_.begin(), endpoints_.end(), address),
                       endpoints_.end());
      forget_removed();
      reassign();
      return events;
  }
  recompute_capacity();
  return events;
}

std::vector<PodEvent> RevisionThrottler::on_push(const std::string& address,
                                                 PushedState state,
                                                 core::TimePoint now,
                                                 std::string_view instance) {
  std::vector<PodEvent> events;
  if (std::find(endpoints_.begin(), endpoints_.end(), address) == endpoints_.end()) {
    return events;  // not one of ours (the file decides membership)
  }
  auto it = pods_.find(address);
  if (it == pods_.end()) {
    if (state != PushedState::Ready)
      return events;
    it = pods_.emplace(address, std::make_unique<PodTracker>(address, now, health_)).first;
    events.push_back({address, Transition{PodState::Removed, PodState::Pending}});
    reassign();
  }
  PodTracker& t = *it->second;
  note_instance(t, instance, now, events);
  switch (state) {
    case PushedState::Ready:
      collect(t, t.on_ready_push(now), events);
      break;
    case PushedState::NotReady:
      collect(t, t.on_check_not_ready(now), events);
      break;
    case PushedState::Draining:
      collect(t, t.on_removed(now), events);
      break;
  }
  forget_removed();
  recompute_capacity();
  return events;
}

std::vector<PodEvent> RevisionThrottler::tick(core::TimePoint now) {
  std::vector<PodEvent> events;
  for (auto& [address, t] : pods_) collect(*t, t->on_tick(now), events);
  if (!events.empty()) {
    forget_removed();
    recompute_capacity();
  }
  return events;
}

core::TimePoint RevisionThrottler::next_deadline() const {
  core::TimePoint next = core::TimePoint::max();
  for (const auto& [address, t] : pods_) next = std::min(next, t->next_deadline());
  return next;
}

std::vector<std::string> RevisionThrottler::pods_to_check(core::TimePoint now) const {
  std::vector<std::string> out;
  for (const auto& [address, t] : pods_) {
    if (t->wants_check(now))
      out.push_back(address);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void RevisionThrottler::forget_removed() {
  std::vector<const PodTracker*> dead;
  for (const auto& [address, t] : pods_) {
    if (t->state() == PodState::Removed && t->in_flight() == 0)
      dead.push_back(t.get());
  }
  if (dead.empty())
    return;
  // assigned_ must drop them before the trackers die.
  std::erase_if(assigned_, [&](const auto& a) {
    return std::find(dead.begin(), dead.end(), a.first) != dead.end();
  });
  for (const PodTracker* t : dead) {
    const std::string address = t->address();  // the key must outlive the tracker
    passive_quarantined_.erase(address);
    pods_.erase(address);
  }
}

size_t RevisionThrottler::count(PodState s) const {
  size_t n = 0;
  for (const auto& [address, t] : pods_) n += t->state() == s;
  return n;
}

std::vector<std::string> RevisionThrottler::pods_in(std::initializer_list<PodState> states) const {
  std::vector<std::string> out;
  for (const auto& [address, t] : pods_)
    if (std::find(states.begin(), states.end(), t->state()) != states.end())
      out.push_back(address);
  return out;
}

std::string RevisionThrottler::describe_pods() const {
  if (pods_.empty())
    return "no replicas";
  std::string out;
  for (PodState s : {PodState::Healthy, PodState::Recovering, PodState::Pending,
                     PodState::Quarantined, PodState::Draining}) {
    const size_t n = count(s);
    if (n == 0)
      continue;
    if (!out.empty())
      out += ", ";
    out += fmt::format("{} {}", n, to_string(s));
  }
  if (breaker_.capacity() > 0 && !breaker_.has_free_slot())
    out += fmt::format("; all busy: capacity {}", breaker_.capacity());
  return out;
}

const PodTracker* RevisionThrottler::find(const std::string& pod) const {
  auto it = pods_.find(pod);
  return it == pods_.end() ? nullptr : it->second.get();
}

}  // namespace sluice::activator
