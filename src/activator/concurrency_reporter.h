// activator/concurrency_reporter.h
//
// Per-revision request concurrency as the activator sees it, for the autoscaler
// (Knative's concurrency_reporter, spec §2.7). A request counts from arrival (so time
// spent waiting for capacity is included) to its answer. Every second cut() returns one
// Stat per active revision; the first request of a revision without an entry produces
// an immediate report {concurrency 1, count 1} (the scale-from-zero poke), which the
// next cut subtracts so it is not counted twice. A revision whose average over a cut is
// 0 with nothing in flight is dropped, so its next request pokes again.
//
// Threading: single owner (the activator's home worker). Time: callers pass `now`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "stats/request_stats.h"

namespace sluice::activator {

template <class Key>
struct KeyedConcurrency {
  Key revision;  // "ns/name"
  stats::Report report;
};
using RevisionConcurrency = KeyedConcurrency<std::string>;

// Keyed by the revision's name in the activator; by a dense index in the simulator,
// which replays tens of millions of requests a day through this same code (instantiated
// for std::string and uint32_t in the .cc).
template <class Key>
class BasicConcurrencyReporter {
 public:
  // Returns the immediate poke for a revision's first request.
  std::optional<KeyedConcurrency<Key>> request_in(const Key& revision, core::TimePoint now);
  void request_out(const Key& revision, core::TimePoint now);
  std::vector<KeyedConcurrency<Key>> cut(core::TimePoint now);

 private:
  struct Entry {
    explicit Entry(core::TimePoint now) : stats(now) {}
    stats::RequestStats stats;
    bool poked = true;  // the immediate report still has to be subtracted
  };
  std::unordered_map<Key, Entry> entries_;
};

using ConcurrencyReporter = BasicConcurrencyReporter<std::string>;

}  // namespace sluice::activator
