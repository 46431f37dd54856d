#include "sim/simulator.h"

#include <gtest/gtest.h>

namespace sluice::sim {
namespace {

using namespace std::chrono_literals;

Trace trace_of(std::vector<Invocation> invocations, double length_s) {
  Trace t;
  t.services = {"svc"};
  t.invocations = std::move(invocations);
  t.length_s = length_s;
  return t;
}

ServiceSetup setup(core::Duration start_time = 2s) {
  ServiceSetup s;
  s.start_time = start_time;
  return s;
}

// One request to a service at zero: it waits the whole start time, and the replica goes
// away again once the stable window has forgotten it.
TEST(Simulator, ASingleRequestIsOneColdStartThatWaitsTheStartTime) {
  const auto r = simulate(trace_of({{10.0, 0, 1.0}}, 60), {setup(2s)});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].requests, 1u);
  EXPECT_EQ(r[0].cold_starts, 1u);
  EXPECT_NEAR(r[0].added_latency.max(), 2.0, 1e-9);
  EXPECT_NEAR(r[0].added_latency.quantile(0.5), 2.0, 0.03);
  EXPECT_EQ(r[0].scale_events, 2u);  // 0 → 1, then 1 → 0
  // Up from the request (10 s) until the first 2 s tick at which the 60 s stable window
  // no longer holds the request's second of concurrency (it ran 12-13 s: gone at 73 s,
  // tick at 74 s). Locally the activator is always in the path, so the scale-to-zero
  // grace has long passed. 64 s, give or take the tick's phase.
  EXPECT_NEAR(r[0].replica_seconds, 64.0, 2.0);
  EXPECT_NEAR(r[0].idle_replica_seconds, r[0].replica_seconds - 2.0 - 1.0, 1e-6);
}

// A request every 5 s keeps the replica warm: one cold start, the rest wait for nothing.
TEST(Simulator, APeriodicServiceColdStartsOnceAndStaysWarm) {
  std::vector<Invocation> inv;
  for (int i = 0; i < 20; ++i) inv.push_back({10.0 + 5.0 * i, 0, 0.1});
  const auto r = simulate(trace_of(inv, 200), {setup(2s)});
  EXPECT_EQ(r[0].requests, 20u);
  EXPECT_EQ(r[0].cold_starts, 1u);
  EXPECT_NEAR(r[0].added_latency.quantile(0.9), 0.0, 1e-9);
  EXPECT_EQ(r[0].scale_events, 2u);
}

// Requests 10 minutes apart, each outliving the KPA's keep-alive: every one is cold.
TEST(Simulator, RequestsFurtherApartThanTheKeepAliveAreAllCold) {
  const auto r =
      simulate(trace_of({{10, 0, 0.5}, {610, 0, 0.5}, {1210, 0, 0.5}}, 1800), {setup(5s)});
  EXPECT_EQ(r[0].cold_starts, 3u);
  EXPECT_EQ(r[0].scale_events, 6u);
  EXPECT_NEAR(r[0].added_latency.quantile(0.5), 5.0, 0.06);
}

// An idle service costs nothing; with min-scale 1 it costs one replica for the whole
// trace, and nothing is ever cold.
TEST(Simulator, AnIdleServiceCostsItsMinScaleOnly) {
  ServiceSetup idle = setup(2s), warm = setup(2s);
  warm.scaling.min_scale = 1;
  Trace t;
  t.services = {"idle", "warm"};
  t.invocations = {{100, 1, 1.0}};
  t.length_s = 600;
  const auto r = simulate(t, {idle, warm});
  EXPECT_EQ(r[0].requests, 0u);
  EXPECT_EQ(r[0].replica_seconds, 0.0);
  EXPECT_EQ(r[0].scale_events, 0u);
  EXPECT_EQ(r[1].cold_starts, 0u);  // its replica was up (since t = 0 + 2 s) before the request
  EXPECT_NEAR(r[1].replica_seconds, 600.0, 1.0);
}

// With scale to zero off, a service's floor is one replica: the simulation ends with the
// trace (not an hour later, waiting for a zero that never comes).
TEST(Simulator, WithoutScaleToZeroTheFloorIsOneReplicaAndTheRunEndsWithTheTrace) {
  ServiceSetup s = setup(2s);
  s.scaling.enable_scale_to_zero = false;
  s.scaling.initial_scale = 1;
  const auto r = simulate(trace_of({{50, 0, 1.0}}, 300), {s});
  EXPECT_EQ(r[0].cold_starts, 0u);
  EXPECT_NEAR(r[0].replica_seconds, 300.0, 2.0);
}

// containerConcurrency 1 and a burst of 10 at once: the KPA scales out, and requests
// that waited for the new replicas count as cold; none is lost.
TEST(Simulator, ABurstBeyondOneReplicasSlotsScalesOutAndLosesNothing) {
  std::vector<Invocation> inv;
  for (int i = 0; i < 10; ++i) inv.push_back({10.0, 0, 4.0});
  ServiceSetup s = setup(1s);
  s.container_concurrency = 1;
  s.scaling.decider.target = 1;
  s.scaling.decider.total_target = 1;
  const auto r = simulate(trace_of(inv, 120), {s});
  EXPECT_EQ(r[0].requests, 10u);
  EXPECT_EQ(r[0].added_latency.count(), 10u);
  EXPECT_GE(r[0].cold_starts, 2u);
  EXPECT_LE(r[0].cold_starts, 10u);
  EXPECT_GT(r[0].scale_events, 2u);
}

TEST(Simulator, TheSameInputGivesTheSameResult) {
  std::vector<Invocation> inv;
  for (int i = 0; i < 200; ++i) inv.push_back({1.0 + 0.37 * i, 0, 0.05 * (i % 7)});
  const auto a = simulate(trace_of(inv, 300), {setup(3s)});
  const auto b = simulate(trace_of(inv, 300), {setup(3s)});
  EXPECT_EQ(a[0].cold_starts, b[0].cold_starts);
  EXPECT_EQ(a[0].replica_seconds, b[0].replica_seconds);
  EXPECT_EQ(a[0].added_latency.quantile(0.99), b[0].added_latency.quantile(0.99));
}

}  // namespace
}  // namespace sluice::sim
