#include "activator/pod_tracker.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>

namespace sluice::activator {
namespace {

using P = PodState;

class PodTrackerTest : public ::testing::Test {
 protected:
  core::ManualTimeSource clock_;
  HealthConfig config_;

  // A tracker brought to `s` through legal events only.
  PodTracker in_state(P s) {
    PodTracker t("10.0.0.1:8012", clock_.now(), config_);
    switch (s) {
      case P::Pending:
        break;
      case P::Healthy:
        t.on_check_passed(clock_.now());
        break;
      case P::Quarantined:
        t.on_check_passed(clock_.now());
        t.on_check_failed(clock_.now());
        break;
      case P::Recovering:
        t.on_check_passed(clock_.now());
        t.on_check_failed(clock_.now());
        t.on_tick(clock_.now() + 1s);
        break;
      case P::Draining:
        t.on_check_passed(clock_.now());
        t.request_started();
        t.on_removed(clock_.now());
        break;
      case P::Removed:
        t.on_check_passed(clock_.now());
        t.on_removed(clock_.now());
        break;
    }
    EXPECT_EQ(t.state(), s);
    return t;
  }
};

TEST_F(PodTrackerTest, EveryStateEventPair) {
  using Event = std::function<Transition(PodTracker&, core::TimePoint)>;
  const std::map<std::string, Event> events = {
      {"check_passed", [](PodTracker& t, core::TimePoint n) { return t.on_check_passed(n); }},
      {"check_failed", [](PodTracker& t, core::TimePoint n) { return t.on_check_failed(n); }},
      {"check_not_ready", [](PodTracker& t, core::TimePoint n) { return t.on_check_not_ready(n); }},
      {"request_failed", [](PodTracker& t, core::TimePoint n) { return t.on_request_failed(n); }},
      {"request_succeeded",
       [](PodTracker& t, core::TimePoint n) { return t.on_request_succeeded(n); }},
      {"removed", [](PodTracker& t, core::TimePoint n) { return t.on_removed(n); }},
      {"readded", [](PodTracker& t, core::TimePoint n) { return t.on_readded(n); }},
      {"tick", [](PodTracker& t, core::TimePoint n) { return t.on_tick(n); }},
      // A restarted queue-proxy on the same address (the first id seen is just recorded).
      {"new_instance",
       [](PodTracker& t, core::TimePoint n) {
         t.on_instance("first", n);
         return t.on_instance("second", n);
       }},
  };
  // expected[state][event]; time does not move, so no backoff expires here.
  const std::map<P, std::map<std::string, P>> expected = {
      {P::Pending,
       {{"check_passed", P::Healthy},
        {"check_failed", P::Quarantined},
        {"check_not_ready", P::Pending},
        {"request_failed", P::Pending},
        {"request_succeeded", P::Pending},
        {"removed", P::Removed},
        {"readded", P::Pending},
        {"tick", P::Pending},
        {"new_instance", P::Pending}}},
      {P::Healthy,
       {{"check_passed", P::Healthy},
        {"check_failed", P::Quarantined},
        {"check_not_ready", P::Quarantined},
        {"request_failed", P::Quarantined},
        {"request_succeeded", P::Healthy},
        {"removed", P::Removed},
        {"readded", P::Healthy},
        {"tick", P::Healthy},
        {"new_instance", P::Pending}}},
      {P::Quarantined,
       {{"check_passed", P::Quarantined},
        {"check_failed", P::Quarantined},
        {"check_not_ready", P::Quarantined},
        {"request_failed", P::Quarantined},
        {"request_succeeded", P::Quarantined},
        {"removed", P::Removed},
        {"readded", P::Quarantined},
        {"tick", P::Quarantined},
        {"new_instance", P::Pending}}},
      {P::Recovering,
       {{"check_passed", P::Recovering},
        {"check_failed", P::Quarantined},
        {"check_not_ready", P::Quarantined},
        {"request_failed", P::Quarantined},
        {"request_succeeded", P::Healthy},
        {"removed", P::Removed},
        {"readded", P::Recovering},
        {"tick", P::Recovering},
        {"new_instance", P::Pending}}},
      {P::Draining,
       {{"check_passed", P::Draining},
        {"check_failed", P::Draining},
        {"check_not_ready", P::Draining},
        {"request_failed", P::Draining},
        {"request_succeeded", P::Draining},
        {"removed", P::Draining},
        {"readded", P::Pending},
        {"tick", P::Draining},
        {"new_instance", P::Draining}}},
      {P::Removed,
       {{"check_passed", P::Removed},
        {"check_failed", P::Removed},
        {"check_not_ready", P::Removed},
        {"request_failed", P::Removed},
        {"request_succeeded", P::Removed},
        {"removed", P::Removed},
        {"readded", P::Pending},
        {"tick", P::Removed},
        {"new_instance", P::Removed}}},
  };
  for (const auto& [state, row] : expected) {
    for (const auto& [name, to] : row) {
      PodTracker t = in_state(state);
      Transition tr = events.at(name)(t, clock_.now());
      EXPECT_EQ(t.state(), to) << to_string(state) << " + " << name;
      EXPECT_EQ(tr.from, state) << to_string(state) << " + " << name;
      EXPECT_EQ(tr.to, to) << to_string(state) << " + " << name;
    }
  }
}

TEST_F(PodTrackerTest, PendingFailuresFollowTheShortBackoffTable) {
  PodTracker t("p", clock_.now(), config_);
  const core::Duration expected[] = {0s, 1s, 1s, 2s, 5s, 5s, 5s};
  for (size_t i = 0; i < std::size(expected); ++i) {
    Transition tr = t.on_check_failed(clock_.now());
    ASSERT_EQ(t.state(), P::Quarantined) << "failure " << i;
    EXPECT_TRUE(tr.entered_quarantine()) << "failure " << i;
    EXPECT_EQ(t.quarantined_until() - clock_.now(), expected[i]) << "failure " << i;
    if (expected[i] > 0s) {
      clock_.advance(expected[i] - 1ms);
      EXPECT_FALSE(t.on_tick(clock_.now()).changed()) << "1 ms early, failure " << i;
      clock_.advance(1ms);
    }
    Transition out = t.on_tick(clock_.now());
    EXPECT_TRUE(out.left_quarantine()) << "failure " << i;
    ASSERT_EQ(t.state(), P::Pending)
        << "never served: back to pending, not probation; failure " << i;
  }
}

TEST_F(PodTrackerTest, HealthyFailuresFollowTheConservativeTable) {
  PodTracker t = in_state(P::Healthy);
  const core::Duration expected[] = {1s, 2s, 5s, 10s, 20s, 20s};
  for (size_t i = 0; i < std::size(expected); ++i) {
    t.on_request_failed(clock_.now());
    ASSERT_EQ(t.state(), P::Quarantined) << "quarantine " << i;
    EXPECT_EQ(t.quarantined_until() - clock_.now(), expected[i]) << "quarantine " << i;
    clock_.advance(expected[i]);
    t.on_tick(clock_.now());
    ASSERT_EQ(t.state(), P::Recovering) << "quarantine " << i;
  }
}

TEST_F(PodTrackerTest, EndpointUpdatesNeverCutABackoffShort) {
  PodTracker t = in_state(P::Quarantined);
  const auto until = t.quarantined_until();
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(t.on_readded(clock_.now()).changed());
    EXPECT_FALSE(t.on_check_passed(clock_.now()).changed());
  }
  EXPECT_EQ(t.quarantined_until(), until);
  EXPECT_EQ(t.state(), P::Quarantined);
}

TEST_F(PodTrackerTest, ReadyPushEndsAStartingPodsQuarantineButNotAServedPods) {
  PodTracker starting("p", clock_.now(), config_);
  starting.on_check_failed(clock_.now());  // refused while starting
  starting.on_check_failed(clock_.now());  // 1 s backoff
  ASSERT_EQ(starting.state(), P::Quarantined);
  Transition t = starting.on_ready_push(clock_.now());
  EXPECT_EQ(starting.state(), P::Healthy);
  EXPECT_TRUE(t.left_quarantine());

  PodTracker served = in_state(P::Quarantined);
  EXPECT_FALSE(served.on_ready_push(clock_.now()).changed())
      << "backoff kept for a pod that served";
  PodTracker pending = in_state(P::Pending);
  EXPECT_EQ(pending.on_ready_push(clock_.now()).to, P::Healthy);
  PodTracker removed = in_state(P::Removed);
  EXPECT_EQ(removed.on_ready_push(clock_.now()).to, P::Healthy);
}

TEST_F(PodTrackerTest, ARestartedQueueProxyStartsOverInPendingWithACleanHistory) {
  PodTracker t("10.0.0.1:8012", clock_.now(), config_);
  EXPECT_FALSE(t.on_instance("aaaa", clock_.now()).changed()) << "first id is recorded";
  EXPECT_EQ(t.instance(), "aaaa");
  t.on_check_passed(clock_.now());
  for (int i = 0; i < 3; ++i) {
    t.on_request_failed(clock_.now());
    clock_.advance(30s);
    t.on_tick(clock_.now());
  }
  t.on_request_failed(clock_.now());
  ASSERT_EQ(t.state(), P::Quarantined);
  ASSERT_EQ(t.consecutive_quarantines(), 4);
  EXPECT_FALSE(t.on_instance("aaaa", clock_.now()).changed()) << "same process: nothing";
  EXPECT_FALSE(t.on_instance("", clock_.now()).changed()) << "no id: nothing";
  const Transition tr = t.on_instance("bbbb", clock_.now());
  EXPECT_TRUE(tr.left_quarantine());
  EXPECT_EQ(t.state(), P::Pending);
  EXPECT_EQ(t.consecutive_quarantines(), 0);
  EXPECT_FALSE(t.accepts_request()) << "a new process is checked before it gets traffic";
  // Its first failure follows the pending table (0 s), as for any new pod.
  t.on_check_failed(clock_.now());
  EXPECT_EQ(t.quarantined_until(), clock_.now());
  t.on_tick(clock_.now());
  EXPECT_EQ(t.state(), P::Pending);
  t.on_check_passed(clock_.now());
  EXPECT_EQ(t.state(), P::Healthy);
}

TEST_F(PodTrackerTest, RecoveringNeedsOneServedRequestAndTakesOneAtATime) {
  PodTracker t = in_state(P::Recovering);
  EXPECT_TRUE(t.accepts_request());
  t.request_started();
  EXPECT_FALSE(t.accepts_request()) << "one probation request at a time";
  t.on_check_passed(clock_.now());
  EXPECT_EQ(t.state(), P::Recovering) << "a passing check is not a served request";
  t.request_finished(clock_.now());
  t.on_request_succeeded(clock_.now());
  EXPECT_EQ(t.state(), P::Healthy);
  EXPECT_EQ(t.consecutive_quarantines(), 0) << "history cleared";
}

TEST_F(PodTrackerTest, RecoveringFailureContinuesItsBackoffHistory) {
  PodTracker t = in_state(P::Healthy);
  t.on_request_failed(clock_.now());  // 1s
  clock_.advance(1s);
  t.on_tick(clock_.now());
  t.on_check_failed(clock_.now());  // recovering fails: next step, 2s
  EXPECT_EQ(t.quarantined_until() - clock_.now(), 2s);
}

TEST_F(PodTrackerTest, EvictedAfterFiveConsecutiveQuarantinesExactlyOnce) {
  PodTracker t = in_state(P::Healthy);
  int evictions = 0;
  for (int i = 0; i < 7; ++i) {
    Transition tr = t.on_check_failed(clock_.now());
    evictions += tr.evicted;
    EXPECT_EQ(t.evicted(), i >= 4) << "quarantine " << i;
    clock_.advance(1min);
    t.on_tick(clock_.now());
  }
  EXPECT_EQ(evictions, 1);
}

TEST_F(PodTrackerTest, DrainEndsWhenTheLastRequestFinishesOrAtMaxDrain) {
  PodTracker a = in_state(P::Healthy);
  a.request_started();
  a.request_started();
  a.on_removed(clock_.now());
  EXPECT_EQ(a.state(), P::Draining);
  EXPECT_FALSE(a.accepts_request());
  EXPECT_FALSE(a.request_finished(clock_.now()).changed());
  EXPECT_EQ(a.request_finished(clock_.now()).to, P::Removed);
  EXPECT_EQ(a.in_flight(), 0);

  PodTracker b = in_state(P::Draining);
  clock_.advance(config_.max_drain - 1ms);
  EXPECT_EQ(b.on_tick(clock_.now()).to, P::Draining);
  clock_.advance(1ms);
  EXPECT_EQ(b.on_tick(clock_.now()).to, P::Removed);
  b.request_finished(clock_.now());
  b.request_finished(clock_.now());
  EXPECT_EQ(b.in_flight(), 0) << "never negative";
}

TEST_F(PodTrackerTest, OnlyHealthyAndProbationTakeTrafficOnlyPendingRecoveringGetChecked) {
  for (P s : {P::Pending, P::Healthy, P::Quarantined, P::Recovering, P::Draining, P::Removed}) {
    PodTracker t = in_state(s);
    EXPECT_EQ(t.accepts_request(), s == P::Healthy || s == P::Recovering) << to_string(s);
    EXPECT_EQ(t.wants_check(clock_.now()), s == P::Pending || s == P::Recovering) << to_string(s);
  }
}

}  // namespace
}  // namespace sluice::activator
