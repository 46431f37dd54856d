#include "activator/concurrency_reporter.h"

#include <algorithm>

namespace sluice::activator {

std::optional<RevisionConcurrency> ConcurrencyReporter::request_in(const std::string& revision,
                                                                   core::TimePoint now) {
  auto it = entries_.find(revision);
  std::optional<RevisionConcurrency> poke;
  if (it == entries_.end()) {
    it = entries_.emplace(revision, Entry(now)).first;
    RevisionConcurrency r{revision, {}};
    r.report.average_concurrency = 1;
    r.report.request_count = 1;
    poke = std::move(r);
  }
  it->second.stats.handle(stats::RequestStats::Event::ReqIn, now);
  return poke;
}

void ConcurrencyReporter::request_out(const std::string& revision, core::TimePoint now) {
  auto it = entries_.find(revision);
  if (it != entries_.end())
    it->second.stats.handle(stats::RequestStats::Event::ReqOut, now);
}

std::vector<RevisionConcurrency> ConcurrencyReporter::cut(core::TimePoint now) {
  std::vector<RevisionConcurrency> batch;
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

}  // namespace sluice::activator
