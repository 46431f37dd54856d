#include "activator/revision_throttler.h"

#include <gtest/gtest.h>

namespace sluice::activator {
namespace {

using P = PodState;

class Woken final : public admission::Waiter {
 public:
  int wakes = 0;

 private:
  void on_wake() override { ++wakes; }
};

class RevisionThrottlerTest : public ::testing::Test {
 protected:
  RevisionThrottler make(uint32_t cc, std::optional<LbKind> lb = std::nullopt) {
    RevisionSpec spec;
    spec.namespace_name = "default";
    spec.name = "hello-00001";
    spec.container_concurrency = cc;
    spec.lb = lb;
    return RevisionThrottler(spec, health_, config_);
  }
  void healthy(RevisionThrottler& r, const std::string& pod) {
    r.on_check(pod, CheckResult::Passed, clock_.now());
  }
  core::ManualTimeSource clock_;
  HealthConfig health_;
  ThrottlerConfig config_;
  core::ScriptedRandom random_{{0}};
  const std::vector<std::string> self_only_{"127.0.0.1:8012"};
  const std::string self_ = "127.0.0.1:8012";
};

TEST_F(RevisionThrottlerTest, ColdStartReleasesWaitersTheMomentAPodIsHealthy) {
  Woken w1, w2, w3;  // declared first: they must outlive the queue that links them
  auto r = make(2);
  EXPECT_EQ(r.capacity(), 0u);
  ASSERT_EQ(r.breaker().acquire(w1, clock_.now(), clock_.now() + 10s),
            admission::Breaker::Admit::Queued);
  ASSERT_EQ(r.breaker().acquire(w2, clock_.now(), clock_.now() + 10s),
            admission::Breaker::Admit::Queued);
  ASSERT_EQ(r.breaker().acquire(w3, clock_.now(), clock_.now() + 10s),
            admission::Breaker::Admit::Queued);
  r.set_endpoints({"10.0.0.1:8012"}, self_only_, self_, clock_.now());
  EXPECT_EQ(r.capacity(), 0u) << "pending pods take no traffic";
  EXPECT_EQ(w1.wakes, 0);
  healthy(r, "10.0.0.1:8012");
  EXPECT_EQ(r.capacity(), 2u);
  EXPECT_EQ(w1.wakes + w2.wakes + w3.wakes, 2) << "two slots, FIFO";
  EXPECT_EQ(w3.wakes, 0);
}

TEST_F(RevisionThrottlerTest, CapacityCountsHealthyFullyRecoveringAsOneOthersNot) {
  auto r = make(4);
  r.set_endpoints({"a:1", "b:1", "c:1", "d:1"}, self_only_, self_, clock_.now());
  healthy(r, "a:1");
  healthy(r, "b:1");
  healthy(r, "c:1");
  EXPECT_EQ(r.capacity(), 12u);
  r.on_check("c:1", CheckResult::Failed, clock_.now());  // quarantined 1s
  EXPECT_EQ(r.capacity(), 8u);
  clock_.advance(1s);
  r.tick(clock_.now());  // recovering
  EXPECT_EQ(r.find("c:1")->state(), P::Recovering);
  EXPECT_EQ(r.capacity(), 9u) << "probation: one request";
  EXPECT_EQ(r.count(P::Pending), 1u);
}

TEST_F(RevisionThrottlerTest, DescribesItsPodsForAClientThatWaitedInVain) {
  Woken w1;
  auto r = make(1);
  EXPECT_EQ(r.describe_pods(), "no replicas");
  r.set_endpoints({"a:1", "b:1", "c:1"}, self_only_, self_, clock_.now());
  EXPECT_EQ(r.describe_pods(), "3 pending");
  healthy(r, "a:1");
  r.on_check("b:1", CheckResult::Failed, clock_.now());
  EXPECT_EQ(r.describe_pods(), "1 healthy, 1 pending, 1 quarantined");
  ASSERT_EQ(r.breaker().acquire(w1, clock_.now(), clock_.now() + 10s),
            admission::Breaker::Admit::Admitted);
  EXPECT_EQ(r.describe_pods(), "1 healthy, 1 pending, 1 quarantined; all busy: capacity 1");
}

TEST_F(RevisionThrottlerTest, UnlimitedConcurrencyIsOpenWhileAnyPodServes) {
  auto r = make(0);
  r.set_endpoints({"a:1"}, self_only_, self_, clock_.now());
  EXPECT_EQ(r.capacity(), 0u);
  healthy(r, "a:1");
  EXPECT_EQ(r.capacity(), admission::Breaker::kUnlimited);
}

TEST_F(RevisionThrottlerTest, PickRespectsPerPodLimitsAndFinishFrees) {
  auto r = make(1);
  r.set_endpoints({"a:1", "b:1"}, self_only_, self_, clock_.now());
  healthy(r, "a:1");
  healthy(r, "b:1");
  PodTracker* first = r.pick(random_);
  PodTracker* second = r.pick(random_);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  EXPECT_NE(first, second) << "CC=1: never two requests on one pod";
  EXPECT_EQ(r.pick(random_), nullptr);
  r.finish(first, RequestOutcome::Success, clock_.now());
  EXPECT_EQ(r.pick(random_), first);
}

TEST_F(RevisionThrottlerTest, PassiveFailuresQuarantineUpToTheEjectionCap) {
  auto r = make(10);
  r.set_endpoints({"a:1", "b:1", "c:1", "d:1"}, self_only_, self_, clock_.now());
  for (auto p : {"a:1", "b:1", "c:1", "d:1"}) healthy(r, p);
  int quarantined = 0;
  for (int i = 0; i < 4; ++i) {
    PodTracker* pod = r.pick(random_);
    ASSERT_NE(pod, nullptr);
    // Pick a still-healthy pod each time (first-available/round robin may repeat).
    auto events = r.finish(pod, RequestOutcome::PodFailure, clock_.now());
    for (const auto& e : events) quarantined += e.transition.entered_quarantine();
  }
  EXPECT_EQ(r.count(P::Quarantined), 2u) << "50% of 4 pods";
  EXPECT_EQ(quarantined, 2);
  EXPECT_EQ(r.ejection_overflows(), 2u);
  // An active check failure is not capped.
  std::string healthy_pod;
  for (auto p : {"a:1", "b:1", "c:1", "d:1"}) {
    if (r.find(p)->state() == P::Healthy)
      healthy_pod = p;
  }
  r.on_check(healthy_pod, CheckResult::Failed, clock_.now());
  EXPECT_EQ(r.count(P::Quarantined), 3u);
}

TEST_F(RevisionThrottlerTest, AppAnswersNeverQuarantine) {
  auto r = make(1);
  r.set_endpoints({"a:1", "b:1"}, self_only_, self_, clock_.now());
  healthy(r, "a:1");
  for (int i = 0; i < 10; ++i) r.finish(r.pick(random_), RequestOutcome::Success, clock_.now());
  r.finish(r.pick(random_), RequestOutcome::Other, clock_.now());
  EXPECT_EQ(r.find("a:1")->state(), P::Healthy);
}

TEST_F(RevisionThrottlerTest, RemovedPodDrainsThenIsForgotten) {
  auto r = make(2);
  r.set_endpoints({"a:1"}, self_only_, self_, clock_.now());
  healthy(r, "a:1");
  PodTracker* pod = r.pick(random_);
  r.set_endpoints({}, self_only_, self_, clock_.now());
  EXPECT_EQ(pod->state(), P::Draining);
  EXPECT_EQ(r.capacity(), 0u);
  EXPECT_EQ(r.pod_count(), 1u) << "kept while a request holds it";
  r.finish(pod, RequestOutcome::Success, clock_.now());
  EXPECT_EQ(r.pod_count(), 0u);
}

TEST_F(RevisionThrottlerTest, EndpointUpdatesKeepStatesAndBackoffs) {
  auto r = make(2);
  r.set_endpoints({"a:1", "b:1"}, self_only_, self_, clock_.now());
  healthy(r, "a:1");
  r.on_check("b:1", CheckResult::Failed, clock_.now());
  clock_.advance(100ms);
  auto events = r.set_endpoints({"a:1", "b:1", "c:1"}, self_only_, self_, clock_.now());
  ASSERT_EQ(events.size(), 1u) << "only the new pod changes";
  EXPECT_EQ(events[0].pod, "c:1");
  EXPECT_EQ(r.find("a:1")->state(), P::Healthy);
  EXPECT_EQ(r.find("b:1")->state(), P::Quarantined);
}

TEST_F(RevisionThrottlerTest, WrongRevisionForgetsThePod) {
  auto r = make(2);
  r.set_endpoints({"a:1"}, self_only_, self_, clock_.now());
  r.on_check("a:1", CheckResult::WrongRevision, clock_.now());
  EXPECT_EQ(r.pod_count(), 0u);
}

TEST_F(RevisionThrottlerTest, ARestartedReplicaComesBackThroughPendingOnItsReadyPush) {
  auto r = make(2);
  r.set_endpoints({"a:1", "b:1"}, self_only_, self_, clock_.now());
  r.on_check("a:1", CheckResult::Passed, clock_.now(), "old");
  healthy(r, "b:1");
  r.on_check("a:1", CheckResult::Failed, clock_.now(), "old");  // killed
  ASSERT_EQ(r.find("a:1")->state(), P::Quarantined);
  EXPECT_EQ(r.capacity(), 2u);
  // Restarted on the same address well inside its 1 s backoff: its push names a new process.
  clock_.advance(100ms);
  auto events = r.on_push("a:1", PushedState::Ready, clock_.now(), "new");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_TRUE(events[0].new_instance);
  EXPECT_EQ(events[0].transition.from, P::Quarantined);
  EXPECT_EQ(events[0].transition.to, P::Pending);
  EXPECT_EQ(events[1].transition.to, P::Healthy);
  EXPECT_EQ(r.capacity(), 4u);
  // A late push from the same process changes nothing.
  EXPECT_TRUE(r.on_push("a:1", PushedState::Ready, clock_.now(), "new").empty());
}

TEST_F(RevisionThrottlerTest, ARestartedReplicaFoundByAProbeIsCheckedAgainFromPending) {
  auto r = make(2);
  r.set_endpoints({"a:1"}, self_only_, self_, clock_.now());
  r.on_check("a:1", CheckResult::Passed, clock_.now(), "old");
  r.on_check("a:1", CheckResult::Failed, clock_.now(), "old");
  clock_.advance(1s);
  r.tick(clock_.now());
  ASSERT_EQ(r.find("a:1")->state(), P::Recovering);
  // The new process is not ready yet: the pod waits in Pending, not in a backoff.
  auto events = r.on_check("a:1", CheckResult::NotReady, clock_.now(), "new");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].transition.to, P::Pending);
  EXPECT_EQ(r.capacity(), 0u);
  r.on_check("a:1", CheckResult::Passed, clock_.now(), "new");
  EXPECT_EQ(r.find("a:1")->state(), P::Healthy);
  EXPECT_EQ(r.capacity(), 2u);
}

TEST_F(RevisionThrottlerTest, AStaleNotReadyAnswerDoesNotQuarantineAPodThePushMadeHealthy) {
  auto r = make(2);
  r.set_endpoints({"a:1"}, self_only_, self_, clock_.now());
  const auto probe_sent = clock_.now();  // the app is not up yet: the answer will be 503
  clock_.advance(1ms);
  r.on_push("a:1", PushedState::Ready, clock_.now());
  ASSERT_EQ(r.find("a:1")->state(), P::Healthy);
  clock_.advance(1ms);
  EXPECT_TRUE(r.on_check("a:1", CheckResult::NotReady, clock_.now(), "", probe_sent).empty());
  EXPECT_EQ(r.find("a:1")->state(), P::Healthy) << "the answer predates the push";
  // A check sent after the change still counts.
  EXPECT_FALSE(r.on_check("a:1", CheckResult::Failed, clock_.now(), "", clock_.now()).empty());
  EXPECT_EQ(r.find("a:1")->state(), P::Quarantined);
}

TEST_F(RevisionThrottlerTest, NotReadyKeepsAStartingPodPending) {
  auto r = make(2);
  r.set_endpoints({"a:1"}, self_only_, self_, clock_.now());
  for (int i = 0; i < 20; ++i) r.on_check("a:1", CheckResult::NotReady, clock_.now());
  EXPECT_EQ(r.find("a:1")->state(), P::Pending) << "no backoff for a pod that is still starting";
  EXPECT_EQ(r.pods_to_check(clock_.now()), std::vector<std::string>{"a:1"});
}

TEST_F(RevisionThrottlerTest, TwoActivatorsSplitFourSingleSlotPods) {
  const std::vector<std::string> acts{"10.1.0.1:8012", "10.1.0.2:8012"};
  const std::vector<std::string> pods{"a:1", "b:1", "c:1", "d:1"};
  std::set<const PodTracker*> unused;
  std::set<std::string> used;
  for (const auto& self : acts) {
    auto r = make(1);
    r.set_endpoints(pods, acts, self, clock_.now());
    for (const auto& p : pods) healthy(r, p);
    EXPECT_EQ(r.capacity(), 2u) << self;
    EXPECT_EQ(r.assigned_count(), 2u) << self;
    while (PodTracker* p = r.pick(random_)) {
      EXPECT_TRUE(used.insert(p->address()).second) << p->address() << " used by both";
    }
  }
  EXPECT_EQ(used.size(), 4u);
}

}  // namespace
}  // namespace sluice::activator
