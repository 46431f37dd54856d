#include "activator/lb_policy.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

namespace sluice::activator {
namespace {

std::vector<PodSlot> slots(std::initializer_list<int> in_flight, uint32_t limit) {
  std::vector<PodSlot> v;
  for (int f : in_flight) v.push_back({f, limit, true});
  return v;
}

TEST(LbPolicy, KnativeDefaultsByContainerConcurrency) {
  EXPECT_EQ(default_lb_for(0), LbKind::RandomChoiceOfTwo);
  EXPECT_EQ(default_lb_for(1), LbKind::FirstAvailable);
  EXPECT_EQ(default_lb_for(3), LbKind::FirstAvailable);
  EXPECT_EQ(default_lb_for(4), LbKind::RoundRobin);
  EXPECT_EQ(parse_lb("least-connections"), LbKind::LeastConnections);
  EXPECT_EQ(parse_lb("round-robin"), LbKind::RoundRobin);
  EXPECT_FALSE(parse_lb("roundrobin"));
}

TEST(LbPolicy, FirstAvailableFillsTheLowestPodsFirst) {
  core::ScriptedRandom r({0});
  LbPolicy p(LbKind::FirstAvailable);
  EXPECT_EQ(p.pick(slots({0, 0, 0}, 2), r), 0u);
  EXPECT_EQ(p.pick(slots({2, 1, 0}, 2), r), 1u);
  EXPECT_EQ(p.pick(slots({2, 2, 2}, 2), r), std::nullopt);
}

TEST(LbPolicy, RoundRobinRotatesAndSkipsFullPods) {
  core::ScriptedRandom r({0});
  LbPolicy p(LbKind::RoundRobin);
  auto s = slots({0, 0, 0}, 4);
  std::vector<size_t> order;
  for (int i = 0; i < 4; ++i) order.push_back(*p.pick(s, r));
  EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2, 0}));
  s[1].in_flight = 4;  // full
  EXPECT_EQ(p.pick(s, r), 2u) << "cursor at 1, pod 1 full";
}

TEST(LbPolicy, LeastConnectionsPicksTheIdlest) {
  core::ScriptedRandom r({0});
  LbPolicy p(LbKind::LeastConnections);
  EXPECT_EQ(p.pick(slots({3, 1, 2}, 0), r), 1u);
}

TEST(LbPolicy, RandomChoiceOfTwoTakesTheLessLoadedOfTwoDistinct) {
  // uniform(3) → 0, then uniform(2) → 1 which is shifted past 0 → candidates 0 and 2.
  core::ScriptedRandom r({0, 0xC000000000000000ULL});
  LbPolicy p(LbKind::RandomChoiceOfTwo);
  EXPECT_EQ(p.pick(slots({5, 0, 1}, 0), r), 2u);
}

TEST(LbPolicy, RandomChoiceOfTwoSpreadsLoad) {
  core::FastRandom r(1);
  LbPolicy p(LbKind::RandomChoiceOfTwo);
  auto s = slots({0, 0, 0, 0}, 0);
  for (int i = 0; i < 400; ++i) ++s[*p.pick(s, r)].in_flight;
  for (const auto& slot : s) EXPECT_NEAR(slot.in_flight, 100, 2) << "power of two choices";
}

TEST(LbPolicy, NothingAcceptingMeansNoPick) {
  core::ScriptedRandom r({0});
  for (auto kind : {LbKind::RandomChoiceOfTwo, LbKind::FirstAvailable, LbKind::RoundRobin,
                    LbKind::LeastConnections}) {
    LbPolicy p(kind);
    auto s = slots({0, 0}, 0);
    for (auto& slot : s) slot.accepts = false;
    EXPECT_EQ(p.pick(s, r), std::nullopt) << to_string(kind);
    EXPECT_EQ(p.pick({}, r), std::nullopt) << to_string(kind);
  }
}

}  // namespace
}  // namespace sluice::activator
