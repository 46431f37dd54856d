#include "kube/watch.h"

#include <algorithm>

namespace sluice::kube {

WatchMachine::Next WatchMachine::next(core::TimePoint now) const {
  if (wait_until_ && now < *wait_until_)
    return {Step::Wait, {}, *wait_until_};
  if (!listed_)
    return {Step::List, {}, {}};
  return {Step::Watch, rv_, {}};
}

void WatchMachine::succeeded() {
  backoff_ = core::Duration{0};
  wait_until_.reset();
  last_cause_.clear();
}

void WatchMachine::listed(std::string resource_version) {
  listed_ = true;
  rv_ = std::move(resource_version);
  succeeded();
}

void WatchMachine::event(std::string resource_version) {
  if (!resource_version.empty())
    rv_ = std::move(resource_version);
  succeeded();
}

void WatchMachine::ended() {
  wait_until_.reset();
}

void WatchMachine::expired() {
  listed_ = false;
  rv_.clear();
  wait_until_.reset();
}

bool WatchMachine::failed(core::TimePoint now, std::string cause) {
  backoff_ = backoff_ == core::Duration{0} ? policy_.initial_backoff
                                           : std::min(policy_.max_backoff, backoff_ * 2);
  // Up to +20%: spreads clients that failed together.
  const auto jitter_range = static_cast<uint64_t>(backoff_.count() / 5);
  const core::Duration jitter{
      jitter_range > 0 ? static_cast<core::Duration::rep>(random_.uniform(jitter_range)) : 0};
  wait_until_ = now + backoff_ + jitter;
  const bool report = cause != last_cause_;
  last_cause_ = std::move(cause);
  return report;
}

}  // namespace sluice::kube
