#include "activator/concurrency_reporter.h"

#include <algorithm>

namespace sluice::activator {

template <class Key>
std::optional<KeyedConcurrency<Key>> BasicConcurrencyReporter<Key>::request_in(
    const Key& revision, core::TimePoint now) {
  auto it = entries_.find(revision);
  std::optional<KeyedConcurrency<Key>> poke;
  if (it == entries_.end()) {
    it = entries_.emplace(revision, Entry(now)).first;
    KeyedConcurrency<Key> r{revision, {}};
    r.report.average_concurrency = 1;
    r.report.request_count = 1;
    poke = std::move(r);
  }
  it->second.stats.handle(stats::RequestStats::Event::ReqIn, now);
  return poke;
}

template <class Key>
void BasicConcurrencyReporter<Key>::request_out(const Key& revision, core::TimePoint now) {
  auto it = entries_.find(revision);
  if (it != entries_.end())
    it->second.stats.handle(stats::RequestStats::Event::ReqOut, now);
}

template <class Key>
std::vector<KeyedConcurrency<Key>> BasicConcurrencyReporter<Key>::cut(core::TimePoint now) {
  std::vector<KeyedConcurrency<Key>> batch;
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    stats::Report r = e.stats.report(now);
    if (r.average_concurrency == 0 && e.stats.concurrency() == 0 && !e.poked) {
      it = entries_.erase(it);
      continue;
    }
    if (e.poked) {
      // The poke already told the autoscaler about one request.
      r.average_concurrency = std::max(0.0, r.average_concurrency - 1);
      r.request_count = std::max(0.0, r.request_count - 1);
      e.poked = false;
    }
    batch.push_back({it->first, r});
    ++it;
  }
  return batch;
}

template class BasicConcurrencyReporter<std::string>;
template class BasicConcurrencyReporter<uint32_t>;

}  // namespace sluice::activator
