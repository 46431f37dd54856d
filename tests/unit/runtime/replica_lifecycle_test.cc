#include "runtime/replica_lifecycle.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice::runtime {
namespace {

using namespace std::chrono_literals;

// A script of events at times, and the state after each.
struct Step {
  core::Duration at;  // since the start
  enum Event { Healthy, Crash, CannotRun, Restart, Stop, Tick } event;
  ReplicaState want;
  int crashes;
};

void play(const std::string& name, const std::vector<Step>& steps) {
  LifecyclePolicy p;  // 5 crashes, 10 s stable run, 0.5 s … 30 s backoff
  core::ManualTimeSource clock;
  const auto t0 = clock.now();
  ReplicaLifecycle life(p, t0);
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    const auto now = t0 + s.at;
    switch (s.event) {
      case Step::Healthy:
        life.healthy(now);
        break;
      case Step::Crash:
        life.crashed(now);
        break;
      case Step::CannotRun:
        life.failed(now);
        break;
      case Step::Restart:
        if (life.due(now))
          life.restarted(now);
        break;
      case Step::Stop:
        life.stop(now);
        break;
      case Step::Tick:
        life.tick(now);
        break;
    }
    EXPECT_EQ(to_string(life.state()), std::string(to_string(s.want))) << name << ", step " << i;
    EXPECT_EQ(life.crashes(), s.crashes) << name << ", step " << i;
  }
}

TEST(ReplicaLifecycle, Table) {
  using S = ReplicaState;
  play("starts, turns ready", {{0s, Step::Healthy, S::Ready, 0}});
  play("a crash backs off 0.5 s before the restart", {{0s, Step::Crash, S::Backoff, 1},
                                                      {400ms, Step::Restart, S::Backoff, 1},
                                                      {500ms, Step::Restart, S::Starting, 1}});
  play("backoff doubles: 0.5, 1, 2 s", {{0s, Step::Crash, S::Backoff, 1},
                                        {500ms, Step::Restart, S::Starting, 1},
                                        {600ms, Step::Crash, S::Backoff, 2},
                                        {1500ms, Step::Restart, S::Backoff, 2},
                                        {1600ms, Step::Restart, S::Starting, 2},
                                        {1700ms, Step::Crash, S::Backoff, 3},
                                        {3600ms, Step::Restart, S::Backoff, 3},
                                        {3700ms, Step::Restart, S::Starting, 3}});
  play("the fifth crash in a row fails; a retry after 30 s fails again at the next crash",
       {{0s, Step::Crash, S::Backoff, 1},
        {1s, Step::Restart, S::Starting, 1},
        {1s, Step::Crash, S::Backoff, 2},
        {3s, Step::Restart, S::Starting, 2},
        {3s, Step::Crash, S::Backoff, 3},
        {6s, Step::Restart, S::Starting, 3},
        {6s, Step::Crash, S::Backoff, 4},
        {11s, Step::Restart, S::Starting, 4},
        {11s, Step::Crash, S::Failed, 4},
        {40s, Step::Restart, S::Failed, 4},
        {41s, Step::Restart, S::Starting, 4},
        {41s, Step::Crash, S::Failed, 4}});
  play("ready for 10 s forgives the crashes; ready alone does not",
       {{0s, Step::Crash, S::Backoff, 1},
        {1s, Step::Restart, S::Starting, 1},
        {2s, Step::Healthy, S::Ready, 1},
        {11s, Step::Tick, S::Ready, 1},
        {12s, Step::Tick, S::Ready, 0}});
  play("a command that cannot run fails at once",
       {{0s, Step::CannotRun, S::Failed, 4}, {29s, Step::Restart, S::Failed, 4}});
  play("stopping is final", {{0s, Step::Healthy, S::Ready, 0},
                             {1s, Step::Stop, S::Stopping, 0},
                             {2s, Step::Crash, S::Stopping, 0},
                             {3s, Step::Healthy, S::Stopping, 0},
                             {60s, Step::Restart, S::Stopping, 0}});
  play("healthy again while ready changes nothing",
       {{0s, Step::Healthy, S::Ready, 0}, {5s, Step::Healthy, S::Ready, 0}});
}

TEST(ReplicaLifecycle, CountsAndRoutes) {
  LifecyclePolicy p;
  core::ManualTimeSource clock;
  ReplicaLifecycle life(p, clock.now());
  EXPECT_TRUE(life.counts());
  EXPECT_TRUE(life.routable()) << "a starting replica is listed: the activator probes it";
  life.crashed(clock.now());
  EXPECT_TRUE(life.counts());
  EXPECT_FALSE(life.routable());
  life.stop(clock.now());
  EXPECT_FALSE(life.counts());
}

}  // namespace
}  // namespace sluice::runtime
