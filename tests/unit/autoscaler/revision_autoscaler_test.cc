#include "autoscaler/revision_autoscaler.h"

#include <gtest/gtest.h>

namespace sluice::autoscaler {
namespace {

using namespace std::chrono_literals;

class RevisionAutoscalerTest : public ::testing::Test {
 protected:
  ScalingSpec spec(int cc_target = 10) {
    ScalingSpec s;
    s.decider.target = cc_target * 0.7;
    s.decider.total_target = cc_target;
    s.decider.stable_window = 6s;
    s.panic_window = panic_window_of(6s, 10);  // 1 s
    s.scale_to_zero_grace = 0s;
    return s;
  }
  // One second of steady load, recorded and decided as the collector would.
  ScaleDecision second(RevisionAutoscaler& a, double concurrency, int32_t ready) {
    clock_.advance(1s);
    a.record(clock_.now(), concurrency, concurrency);
    return a.decide(clock_.now(), ready);
  }
  core::ManualTimeSource clock_;
};

TEST_F(RevisionAutoscalerTest, StartsAtZeroAndTheFirstRequestPokesItToOne) {
  RevisionAutoscaler a(spec(), clock_.now());
  EXPECT_EQ(a.last_want(), 0);
  EXPECT_FALSE(a.decide(clock_.now(), 0).has_data);
  EXPECT_EQ(a.decide(clock_.now(), 0).want, 0) << "no data: held at zero";
  EXPECT_TRUE(a.wants_poke(1));
  a.record(clock_.now(), 1, 1);
  const ScaleDecision d = a.decide(clock_.now(), 0);
  EXPECT_EQ(d.want, 1);
  EXPECT_NE(d.reason.str().find("stable: 1 concurrent, target 7/replica"), std::string::npos)
      << d.reason.str();
  EXPECT_FALSE(a.wants_poke(1)) << "only a revision at zero is poked";
}

TEST_F(RevisionAutoscalerTest, IdleForAStableWindowScalesToZeroWithoutRetention) {
  RevisionAutoscaler a(spec(), clock_.now());
  a.record(clock_.now(), 3, 3);
  ASSERT_EQ(a.decide(clock_.now(), 0).want, 1);
  second(a, 3, 1);  // the replica is up and active from here
  for (int i = 0; i < 5; ++i) EXPECT_EQ(second(a, 0, 1).want, 1) << i;
  // Six seconds of zeros: the stable average is 0 and the pod was active ≥ 6 s.
  const ScaleDecision d = second(a, 0, 1);
  EXPECT_EQ(d.want, 0) << d.reason.str();
  EXPECT_NE(d.reason.str().find("no traffic for a stable window (6s)"), std::string::npos)
      << d.reason.str();
}

// A keep-alive policy owns an idle revision's last replica: fixed 30 s lets go 30 s after
// the last busy second, sooner than the KPA's window would; and with the windows empty
// (no samples at all) the histogram policy pre-warms from zero, saying why.
TEST_F(RevisionAutoscalerTest, AKeepAlivePolicyOwnsTheLastReplicaOfAnIdleRevision) {
  ScalingSpec s = spec();
  s.decider.stable_window = 60s;
  s.keep_alive.mode = KeepAliveSpec::Mode::Fixed;
  s.keep_alive.fixed = 30s;
  RevisionAutoscaler a(s, clock_.now());
  ASSERT_EQ(second(a, 2, 0).want, 1);
  int32_t want = 1;
  int seconds = 0;
  while (want == 1 && seconds < 120) {
    want = second(a, 0, 1).want;
    ++seconds;
  }
  // Busy second t (stamped at its end), idle from t + 1, let go at t + 1 + 30 s.
  EXPECT_EQ(seconds, 31);

  s.keep_alive.mode = KeepAliveSpec::Mode::Histogram;
  s.keep_alive.start_lead = 20s;
  RevisionAutoscaler h(s, clock_.now());
  // A request every 10 minutes, long enough for the histogram to be representative.
  for (int i = 0; i < 12; ++i) {
    clock_.advance(600s);
    h.record(clock_.now(), 1, 1);
  }
  // Idle for two seconds after the busy one: the KPA would keep the replica for its
  // window; the histogram lets it go.
  clock_.advance(3s);
  ScaleDecision d = h.decide(clock_.now(), 1);
  EXPECT_TRUE(d.has_data);
  EXPECT_EQ(d.want, 0) << d.reason.str();
  EXPECT_EQ(d.reason.str(), "idle: next request expected in ~9 min");
  // Nothing recorded since: the windows are empty, and the policy pre-warms at 10 min
  // less 10% less the start time, from the end of the busy second.
  clock_.advance(1s + 540s - 20s - 3s - 1s);
  EXPECT_EQ(h.decide(clock_.now(), 0).want, 0);
  clock_.advance(1s);
  d = h.decide(clock_.now(), 0);
  EXPECT_FALSE(d.has_data);
  EXPECT_EQ(d.want, 1) << d.reason.str();
  EXPECT_EQ(d.reason.str(), "pre-warm: next request expected in ~20 s");
}

TEST_F(RevisionAutoscalerTest, PodRetentionKeepsTheReplicaAfterTheWindow) {
  ScalingSpec s = spec();
  s.pod_retention = 4s;
  RevisionAutoscaler a(s, clock_.now());
  a.record(clock_.now(), 3, 3);
  a.decide(clock_.now(), 0);
  second(a, 3, 1);
  for (int i = 0; i < 6; ++i) second(a, 0, 1);
  // Inactive from now; retention holds the replica for 4 s.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(second(a, 0, 1).want, 1) << i;
  EXPECT_EQ(second(a, 0, 1).want, 0);
}

TEST_F(RevisionAutoscalerTest, GracePeriodWaitsUntilTheActivatorHasBeenInThePathLongEnough) {
  ScalingSpec s = spec();
  s.scale_to_zero_grace = 30s;
  const auto start = clock_.now();
  RevisionAutoscaler a(s, clock_.now());
  a.record(clock_.now(), 3, 3);
  a.decide(clock_.now(), 0);
  second(a, 3, 1);
  for (int i = 0; i < 6; ++i) second(a, 0, 1);
  // 7 s in: the KPA says 0, but neither inactive-for nor proxied-for has reached 30 s.
  EXPECT_EQ(a.last_want(), 1);
  while (second(a, 0, 1).want != 0) ASSERT_LT(clock_.now() - start, 60s);
  EXPECT_EQ(clock_.now() - start, 30s) << "zero once the activator was in the path 30 s";
}

TEST_F(RevisionAutoscalerTest, ScaleToZeroDisabledKeepsOne) {
  ScalingSpec s = spec();
  s.enable_scale_to_zero = false;
  RevisionAutoscaler a(s, clock_.now());
  a.record(clock_.now(), 1, 1);
  a.decide(clock_.now(), 0);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(second(a, 0, 1).want, 1);
}

TEST_F(RevisionAutoscalerTest, ScaleBufferAddsReplicasOnlyWhileThereIsTraffic) {
  ScalingSpec s = spec();
  s.scale_buffer = 2;
  RevisionAutoscaler a(s, clock_.now());
  a.record(clock_.now(), 7, 7);
  const ScaleDecision d = a.decide(clock_.now(), 0);
  EXPECT_EQ(d.want, 3) << "kpa 1 + buffer 2";
  EXPECT_NE(d.reason.str().find("scale buffer 2"), std::string::npos) << d.reason.str();
  second(a, 7, 3);
  int32_t want = 3;  // replicas follow the decision
  for (int i = 0; i < 20 && want != 0; ++i) want = second(a, 0, want).want;
  EXPECT_EQ(want, 0) << "no traffic for a window: the buffer does not hold replicas";
}

TEST_F(RevisionAutoscalerTest, BoundsAndInitialScale) {
  ScalingSpec s = spec();
  s.min_scale = 2;
  s.max_scale = 3;
  s.initial_scale = 5;
  RevisionAutoscaler a(s, clock_.now());
  EXPECT_EQ(a.last_want(), 3) << "initial 5, capped by max 3";
  a.record(clock_.now(), 700, 700);
  ScaleDecision d = a.decide(clock_.now(), 3);
  EXPECT_EQ(d.want, 3);
  EXPECT_NE(d.reason.str().find("capped at max-scale 3"), std::string::npos) << d.reason.str();
  for (int i = 0; i < 20; ++i) d = second(a, 0, 3);
  EXPECT_EQ(d.want, 2) << "idle: min-scale holds 2";
}

TEST_F(RevisionAutoscalerTest, PanicUsesReadyPodsOnly) {
  RevisionAutoscaler a(spec(), clock_.now());
  a.record(clock_.now(), 1, 1);
  ASSERT_EQ(a.decide(clock_.now(), 0).want, 1);
  // 40 concurrent on one ready replica (others still starting do not count): panic.
  const ScaleDecision d = second(a, 40, 1);
  EXPECT_TRUE(d.kpa.panicking);
  EXPECT_EQ(d.want, 6) << "ceil(40 / 7)";
  EXPECT_NE(d.reason.str().find("panic: 40 concurrent, target 7/replica"), std::string::npos)
      << d.reason.str();
}

// Effective capacity: `want` counts every replica the load needs, whether ready or still
// starting; the runtime compares it with ready + starting. So while 4 ordered replicas
// start, the same load orders nothing more, and the panic math still uses the 1 ready.
TEST_F(RevisionAutoscalerTest, StartingReplicasAbsorbLoadWithoutOrderingMore) {
  RevisionAutoscaler a(spec(2), clock_.now());  // target 1.4
  a.record(clock_.now(), 7, 7);
  ASSERT_EQ(a.decide(clock_.now(), 0).want, 5);
  for (int i = 0; i < 4; ++i) {
    const ScaleDecision d = second(a, 7, 1);  // 1 ready, 4 starting
    EXPECT_EQ(d.want, 5) << i;
    EXPECT_TRUE(d.kpa.panicking) << "5 / 1 ready ≥ 2: panic counts ready pods only";
  }
}

// A decision keeps its reason as facts; str() is what a runtime prints.
TEST(ReasonText, EachWhyAOneIsKeptReadsAsItSays) {
  Reason r;
  r.head = Reason::Head::Metric;
  r.value = 0;
  r.target = 7;
  const std::pair<Reason::Zero, std::string> cases[] = {
      {Reason::Zero::None, "stable: 0 concurrent, target 7/replica"},
      {Reason::Zero::Disabled, "stable: 0 concurrent, target 7/replica, scale to zero disabled"},
      {Reason::Zero::YoungerThanWindow,
       "stable: 0 concurrent, target 7/replica, active for less than a stable window"},
      {Reason::Zero::Retention, "stable: 0 concurrent, target 7/replica, pod retention"},
      {Reason::Zero::Grace, "stable: 0 concurrent, target 7/replica, scale-to-zero grace period"},
  };
  for (const auto& [zero, text] : cases) {
    r.zero = zero;
    EXPECT_EQ(r.str(), text);
  }
  r.panic = true;
  r.rps = true;
  r.value = 40;
  r.zero = Reason::Zero::None;
  r.scale_buffer = 1;
  r.bound = Reason::Bound::CappedAtMax;
  r.bound_to = 3;
  r.note = ", capped at 1: the container listens on a fixed port";
  EXPECT_EQ(r.str(),
            "panic: 40 req/s, target 7/replica + scale buffer 1, capped at max-scale 3, capped at "
            "1: the container listens on a fixed port");
  EXPECT_EQ(Reason{}.str(), "no recent samples");
}

}  // namespace
}  // namespace sluice::autoscaler
