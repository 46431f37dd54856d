#include "activator/subsetting.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <tuple>

namespace sluice::activator {

namespace {

uint64_t hash_of(const std::string& a, const std::string& b) {
  XXH64_state_t state;
  XXH64_reset(&state, 0x511ceULL);
  XXH64_update(&state, a.data(), a.size());
  const char sep = '\0';
  XXH64_update(&state, &sep, 1);
  XXH64_update(&state, b.data(), b.size());
  return XXH64_digest(&state);
}

std::vector<std::string> sorted_unique(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// Spreads items over bins so every bin gets floor(I/B) or ceil(I/B) items, preferring
// high rendezvous scores: all (item, bin) pairs are taken best score first, first up to
// floor(I/B) per bin, then the leftover items up to one more per bin. A pair's fate
// depends only on pairs that score higher, so a change moves few assignments.
std::map<std::string, std::vector<std::string>> balanced_rendezvous(
    const std::vector<std::string>& items, const std::vector<std::string>& bins) {
  struct Pair {
    uint64_t score;
    uint32_t item;
    uint32_t bin;
  };
  std::vector<Pair> pairs;
  pairs.reserve(items.size() * bins.size());
  for (uint32_t i = 0; i < items.size(); ++i) {
    for (uint32_t b = 0; b < bins.size(); ++b) pairs.push_back({hash_of(items[i], bins[b]), i, b});
  }
  std::sort(pairs.begin(), pairs.end(), [&](const Pair& x, const Pair& y) {
    if (x.score != y.score)
      return x.score > y.score;
    return std::tie(items[x.item], bins[x.bin]) < std::tie(items[y.item], bins[y.bin]);
  });
  std::vector<int> owner(items.size(), -1);
  std::vector<size_t> load(bins.size(), 0);
  const size_t floor_room = items.size() / bins.size();
  for (size_t room : {floor_room, floor_room + 1}) {
    for (const auto& p : pairs) {
      if (owner[p.item] < 0 && load[p.bin] < room) {
        owner[p.item] = static_cast<int>(p.bin);
        ++load[p.bin];
      }
    }
  }
  std::map<std::string, std::vector<std::string>> got;
  for (uint32_t i = 0; i < items.size(); ++i) got[bins[owner[i]]].push_back(items[i]);
  return got;
}

}  // namespace

SubsetMap subset_map(const std::vector<std::string>& activators_in,
                     const std::vector<std::string>& pods_in) {
  SubsetMap m;
  const auto activators = sorted_unique(activators_in);
  m.pods = sorted_unique(pods_in);
  m.owners.resize(m.pods.size());
  if (m.pods.empty() || activators.empty())
    return m;
  auto index_of = [&](const std::string& pod) {
    return static_cast<size_t>(std::lower_bound(m.pods.begin(), m.pods.end(), pod) -
                               m.pods.begin());
  };
  if (activators.size() <= m.pods.size()) {
    for (const auto& [activator, pods] : balanced_rendezvous(m.pods, activators)) {
      for (const auto& pod : pods) m.owners[index_of(pod)].push_back(activator);
    }
  } else {
    // More activators than pods: activators are spread over the pods, each pod shared by
    // floor(A / P) or ceil(A / P) of them.
    for (const auto& [pod, sharers] : balanced_rendezvous(activators, m.pods)) {
      auto& owners = m.owners[index_of(pod)];
      owners = sharers;
      // Best-scoring sharer first: it gets the remainder when CC is split.
      std::sort(owners.begin(), owners.end(), [&](const std::string& x, const std::string& y) {
        uint64_t hx = hash_of(pod, x), hy = hash_of(pod, y);
        return hx != hy ? hx > hy : x < y;
      });
    }
  }
  return m;
}

std::vector<Assignment> assign_pods(const std::vector<std::string>& activators,
                                    const std::string& self,
                                    const std::vector<std::string>& pods,
                                    uint32_t container_concurrency) {
  std::vector<Assignment> out;
  const bool known = std::find(activators.begin(), activators.end(), self) != activators.end();
  if (!known || activators.size() <= 1 || container_concurrency == 0) {
    // Unknown self (not yet in the list) or a single activator: every pod, full CC.
    // CC = 0 needs no split: unlimited pods can take everyone's traffic.
    for (const auto& pod : sorted_unique(pods)) out.push_back({pod, container_concurrency});
    return out;
  }
  const SubsetMap m = subset_map(activators, pods);
  for (size_t i = 0; i < m.pods.size(); ++i) {
    const auto& owners = m.owners[i];
    auto it = std::find(owners.begin(), owners.end(), self);
    if (it == owners.end())
      continue;
    const uint32_t k = static_cast<uint32_t>(owners.size());
    const uint32_t rank = static_cast<uint32_t>(it - owners.begin());
    const uint32_t share = container_concurrency / k + (rank < container_concurrency % k ? 1 : 0);
    out.push_back({m.pods[i], share});
  }
  return out;
}

}  // namespace sluice::activator
