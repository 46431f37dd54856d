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
  for (int i = 0; i < 200; ++i)
    inv.push_back({1.0 + 0.37 * i, 0, 0.05f * static_cast<float>(i % 7)});
  const auto a = simulate(trace_of(inv, 300), {setup(3s)});
  const auto b = simulate(trace_of(inv, 300), {setup(3s)});
  EXPECT_EQ(a[0].cold_starts, b[0].cold_starts);
  EXPECT_EQ(a[0].replica_seconds, b[0].replica_seconds);
  EXPECT_EQ(a[0].added_latency.quantile(0.99), b[0].added_latency.quantile(0.99));
}

// Services share nothing in the model: a run split by services (as `sluice simulate`
// splits a policy over cores) gives exactly the results of one run, also for services
// that settle at different times after the trace (a min-scale floor, a keep-alive that
// pre-warms after the last request).
TEST(Simulator, RunsOverDisjointServicesTogetherGiveTheResultsOfOneRun) {
  Trace t;
  t.services = {"a", "b", "c", "d"};
  t.length_s = 900;
  for (int i = 0; i < 300; ++i)
    t.invocations.push_back(
        {2.0 + 2.9 * i, static_cast<uint32_t>(i % 4), 0.1f + 0.3f * static_cast<float>(i % 5)});
  std::vector<ServiceSetup> setups(4, setup(3s));
  setups[1].scaling.min_scale = 2;
  setups[2].scaling.keep_alive = autoscaler::parse_keep_alive("histogram:2m", nullptr).value();
  setups[3].container_concurrency = 1;
  const auto whole = simulate(t, setups);
  SimOptions odd, even;
  odd.services = {1, 3};
  even.services = {0, 2};
  const auto a = simulate(t, setups, odd);
  const auto b = simulate(t, setups, even);
  ASSERT_EQ(whole.size(), 4u);
  for (uint32_t i = 0; i < 4; ++i) {
    const auto& part = i % 2 ? a[i] : b[i];
    const auto& other = i % 2 ? b[i] : a[i];
    EXPECT_EQ(other.requests, 0u) << i;  // not simulated by that run
    EXPECT_EQ(part.requests, whole[i].requests) << i;
    EXPECT_EQ(part.cold_starts, whole[i].cold_starts) << i;
    EXPECT_EQ(part.replica_seconds, whole[i].replica_seconds) << i;
    EXPECT_EQ(part.idle_replica_seconds, whole[i].idle_replica_seconds) << i;
    EXPECT_EQ(part.scale_events, whole[i].scale_events) << i;
    EXPECT_EQ(part.added_latency.max(), whole[i].added_latency.max()) << i;
  }
  EXPECT_GT(whole[1].replica_seconds, 2 * 890.0);  // its floor of two ran all along
}

// --- Keep-alive policies on hand-computed traces --------------------------------------

ServiceSetup with_policy(const std::string& text, core::Duration start_time) {
  ServiceSetup s = setup(start_time);
  std::string why;
  auto k = autoscaler::parse_keep_alive(text, &why);
  EXPECT_TRUE(k) << why;
  s.scaling.keep_alive = k.value_or(autoscaler::KeepAliveSpec{});
  return s;
}

// `n` requests of 0.5 s, every `period` s from 10 s.
Trace periodic(int n, double period) {
  std::vector<Invocation> inv;
  for (int i = 0; i < n; ++i) inv.push_back({10.0 + period * i, 0, 0.5});
  return trace_of(inv, 10.0 + period * n);
}

// Every 10 minutes, a 5 s start. The KPA keeps a replica ~64 s: every request is cold.
// A fixed 15 min keep-alive: only the first; the replica runs from the first request to
// 15 min after the last. The histogram: only the first too (its 4 h fallback holds the
// replica while fewer than 10 idle times are known); from the 11th request on it lets
// the replica go ~4 s after each request and starts it again 10% before the next one's
// bin (10 min: 9 min) less the start time: ~68 s of replica per cycle, no cold start.
// After the last request it pre-warms once more and keeps the replica to 10% past the
// tail (11 min after the request's busy second): ~128 s for a request that never comes.
TEST(Simulator, APeriodicServiceUnderEachPolicy) {
  const Trace t = periodic(20, 600);
  const auto kpa = simulate(t, {setup(5s)});
  const auto fixed = simulate(t, {with_policy("fixed:15m", 5s)});
  const auto hist = simulate(t, {with_policy("histogram", 5s)});
  EXPECT_EQ(kpa[0].cold_starts, 20u);
  EXPECT_NEAR(kpa[0].replica_seconds, 20 * 69.0, 20 * 3.0);
  EXPECT_EQ(fixed[0].cold_starts, 1u);
  EXPECT_NEAR(fixed[0].replica_seconds, 19 * 600.0 + 900 + 5, 5.0);
  EXPECT_EQ(hist[0].cold_starts, 1u);
  // 10 cycles held by the fallback (from the first request to the 11th), 9 cycles of
  // ~68 s, and the pre-warm after the last.
  EXPECT_NEAR(hist[0].replica_seconds, 10 * 600.0 + 4 + 9 * 68.0 + 128, 10 * 2.0);
  EXPECT_LT(hist[0].replica_seconds, fixed[0].replica_seconds);
}

// One burst, then an hour of nothing: the KPA lets go after its window; fixed 10 min
// holds one replica 10 minutes after the burst; the histogram, knowing nothing, holds its
// fallback (here shortened to 30 min) after it. One cold start each: the burst's first
// second waited for replicas under every policy.
TEST(Simulator, ASingleBurstUnderEachPolicy) {
  std::vector<Invocation> inv;
  for (int i = 0; i < 30; ++i) inv.push_back({10.0 + i * 0.01, 0, 0.2});
  const Trace t = trace_of(inv, 3600);
  const auto kpa = simulate(t, {setup(2s)});
  const auto fixed = simulate(t, {with_policy("fixed:10m", 2s)});
  const auto hist = simulate(t, {with_policy("histogram:30m", 2s)});
  for (const auto* r : {&kpa, &fixed, &hist}) {
    EXPECT_EQ((*r)[0].requests, 30u);
    EXPECT_EQ((*r)[0].cold_starts, 30u);  // all arrived before the first replica was ready
  }
  EXPECT_LT(kpa[0].replica_seconds, 120.0);
  // Up from 10 s; the burst is over by ~12.5 s; let go 10 min (or 30 min) after its last
  // busy second, at a 2 s tick.
  EXPECT_NEAR(fixed[0].replica_seconds, 600 + 3.0, 3.0);
  EXPECT_NEAR(hist[0].replica_seconds, 1800 + 3.0, 3.0);
}

// A service that is never called costs nothing under any policy: nothing is held before
// a first request.
TEST(Simulator, AnIdleServiceUnderEachPolicyCostsNothing) {
  Trace t;
  t.services = {"idle", "busy"};
  t.invocations = {{100, 1, 1.0}};
  t.length_s = 3600;
  for (const char* p : {"kpa", "fixed:10m", "histogram"}) {
    const auto r = simulate(t, {with_policy(p, 2s), with_policy(p, 2s)});
    EXPECT_EQ(r[0].replica_seconds, 0.0) << p;
    EXPECT_EQ(r[0].scale_events, 0u) << p;
    EXPECT_EQ(r[1].cold_starts, 1u) << p;
  }
}

}  // namespace
}  // namespace sluice::sim
