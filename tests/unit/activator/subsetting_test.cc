#include "activator/subsetting.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

namespace sluice::activator {
namespace {

std::vector<std::string> names(const char* prefix, int n, int start = 1) {
  std::vector<std::string> v;
  for (int i = start; i < start + n; ++i) v.push_back(prefix + std::to_string(i) + ":8012");
  return v;
}

using Owners = std::map<std::string, std::set<std::string>>;  // pod → activators

Owners ours(const std::vector<std::string>& acts, const std::vector<std::string>& pods) {
  Owners o;
  auto m = subset_map(acts, pods);
  for (size_t i = 0; i < m.pods.size(); ++i)
    o[m.pods[i]] = {m.owners[i].begin(), m.owners[i].end()};
  return o;
}

// Knative 1.18 (spec §2.5b): contiguous ranges over sorted pods and sorted activators.
Owners knative(std::vector<std::string> acts, std::vector<std::string> pods) {
  std::sort(acts.begin(), acts.end());
  std::sort(pods.begin(), pods.end());
  Owners o;
  const size_t n = pods.size(), a = acts.size();
  for (size_t i = 0; i < a; ++i) {
    if (a > n) {
      o[pods[i % n]].insert(acts[i]);
      continue;
    }
    const size_t size = n / a, r = n % a;
    for (size_t j = i * size; j < i * size + size; ++j) o[pods[j]].insert(acts[i]);
    if (i < r)
      o[pods[n - r + i]].insert(acts[i]);
  }
  return o;
}

// The fork: pod index mod activator count ("consistent hashing" in its commit).
Owners fork_modulo(std::vector<std::string> acts, std::vector<std::string> pods) {
  std::sort(acts.begin(), acts.end());
  std::sort(pods.begin(), pods.end());
  Owners o;
  if (acts.size() > pods.size()) {
    for (size_t i = 0; i < acts.size(); ++i) o[pods[i % pods.size()]].insert(acts[i]);
  } else {
    for (size_t j = 0; j < pods.size(); ++j) o[pods[j]].insert(acts[j % acts.size()]);
  }
  return o;
}

// Pods present before and after whose owners changed.
int moved(const Owners& before, const Owners& after) {
  int n = 0;
  for (const auto& [pod, owners] : before) {
    auto it = after.find(pod);
    if (it != after.end() && it->second != owners)
      ++n;
  }
  return n;
}

struct Change {
  std::vector<std::string> acts_before, pods_before, acts_after, pods_after;
};

using Scheme = Owners (*)(const std::vector<std::string>&, const std::vector<std::string>&);

// Mean pods moved over every variant of one kind of change.
double mean_moved(Scheme scheme, const std::vector<Change>& variants) {
  double total = 0;
  for (const auto& c : variants) {
    total += moved(scheme(c.acts_before, c.pods_before), scheme(c.acts_after, c.pods_after));
  }
  return total / static_cast<double>(variants.size());
}

Owners knative_scheme(const std::vector<std::string>& a, const std::vector<std::string>& p) {
  return knative(a, p);
}
Owners fork_scheme(const std::vector<std::string>& a, const std::vector<std::string>& p) {
  return fork_modulo(a, p);
}

TEST(Subsetting, MovementWhenOneActivatorOrPodComesOrGoes) {
  const auto acts = names("10.1.0.", 4);
  const auto pods = names("10.0.0.", 20);
  std::map<std::string, std::vector<Change>> kinds;
  for (int i = 0; i < 4; ++i) {  // each activator leaving in turn
    auto fewer = acts;
    fewer.erase(fewer.begin() + i);
    kinds["activator removed (4->3, 20 pods)"].push_back({acts, pods, fewer, pods});
  }
  for (int i = 0; i < 4; ++i) {  // a fifth activator with various names
    auto more = acts;
    more.push_back("10.1." + std::to_string(i + 1) + ".5:8012");
    kinds["activator added (4->5, 20 pods)"].push_back({acts, pods, more, pods});
  }
  for (int i = 0; i < 20; ++i) {  // each pod leaving in turn
    auto fewer = pods;
    fewer.erase(fewer.begin() + i);
    kinds["pod removed (4 activators, 20->19)"].push_back({acts, pods, acts, fewer});
  }
  for (int i = 0; i < 20; ++i) {  // a new pod landing anywhere in the sorted order
    auto more = pods;
    more.push_back("10.0.0." + std::to_string(i + 1) + "5:8012");
    kinds["pod added (4 activators, 20->21)"].push_back({acts, pods, acts, more});
  }
  std::printf("mean pods moved (of 20)              %8s %8s %8s\n", "sluice", "knative", "fork");
  for (const auto& [what, variants] : kinds) {
    double s = mean_moved(ours, variants);
    double k = mean_moved(knative_scheme, variants);
    double f = mean_moved(fork_scheme, variants);
    std::printf("%-36s %8.1f %8.1f %8.1f\n", what.c_str(), s, k, f);
    EXPECT_LE(s, k) << what;
    EXPECT_LE(s, f) << what;
    // Bounded-load consistent hashing: a handful of pods, not a reshuffle. (An
    // activator leaving must move at least its own 5 pods.)
    EXPECT_LE(s, 7.0) << what;
  }
}

TEST(Subsetting, EveryPodOwnedOnceAndLoadBounded) {
  for (int a = 1; a <= 6; ++a) {
    for (int n = a; n <= 25; ++n) {
      auto m = subset_map(names("10.1.0.", a), names("10.0.0.", n));
      std::map<std::string, int> load;
      for (const auto& owners : m.owners) {
        ASSERT_EQ(owners.size(), 1u) << a << " activators, " << n << " pods";
        ++load[owners[0]];
      }
      for (const auto& [act, count] : load) {
        EXPECT_LE(count, (n + a - 1) / a) << a << " activators, " << n << " pods";
      }
    }
  }
}

TEST(Subsetting, MoreActivatorsThanPodsSplitsConcurrencyWithoutOvercommit) {
  for (int a = 2; a <= 9; ++a) {
    for (int n = 1; n < a; ++n) {
      for (uint32_t cc : {1u, 2u, 3u, 4u, 10u}) {
        const auto acts = names("10.1.0.", a);
        const auto pods = names("10.0.0.", n);
        std::map<std::string, uint32_t> committed;
        for (const auto& self : acts) {
          auto mine = assign_pods(acts, self, pods, cc);
          ASSERT_EQ(mine.size(), 1u) << "each activator gets exactly one pod";
          committed[mine[0].pod] += mine[0].concurrency;
        }
        for (const auto& pod : pods) {
          const int sharers = (a + n - 1) / n;
          // Never over-committed; fully used whenever CC can be split among the sharers.
          EXPECT_LE(committed[pod], cc) << a << "/" << n << " cc " << cc;
          if (cc >= static_cast<uint32_t>(sharers)) {
            EXPECT_EQ(committed[pod], cc) << a << "/" << n;
          }
        }
      }
    }
  }
}

TEST(Subsetting, SelfNotListedOrSingleActivatorGetsEverything) {
  const auto pods = names("10.0.0.", 5);
  EXPECT_EQ(assign_pods({"a:1", "b:1"}, "c:1", pods, 4).size(), 5u);
  EXPECT_EQ(assign_pods({"a:1"}, "a:1", pods, 4).size(), 5u);
  auto unlimited = assign_pods({"a:1", "b:1"}, "a:1", pods, 0);
  EXPECT_EQ(unlimited.size(), 5u) << "CC = 0: no subsetting";
}

TEST(Subsetting, ActivatorsAgreeWithoutTalking) {
  const auto acts = names("10.1.0.", 3);
  const auto pods = names("10.0.0.", 11);
  std::set<std::string> seen;
  for (const auto& self : acts) {
    for (const auto& a : assign_pods(acts, self, pods, 5)) {
      EXPECT_TRUE(seen.insert(a.pod).second) << a.pod << " assigned twice";
      EXPECT_EQ(a.concurrency, 5u);
    }
  }
  EXPECT_EQ(seen.size(), pods.size());
}

}  // namespace
}  // namespace sluice::activator
