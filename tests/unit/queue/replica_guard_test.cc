#include "queue/replica_guard.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <optional>

#include "core/time_source.h"
#include "metrics/registry.h"

namespace sluice::queue {
namespace {

using namespace std::chrono_literals;

// One io_context stands for both of the guard's threads (home and control): the
// coroutines run to completion on poll(), with no socket (no readiness probe configured:
// Knative's "always ready") and no other thread.
struct GuardUnderTest {
  core::ManualTimeSource time;
  boost::asio::io_context io{1};
  std::unique_ptr<ReplicaGuard> guard;

  explicit GuardUnderTest(uint32_t cc = 2) {
    ReplicaGuard::Options o;
    o.config.namespace_name = "default";
    o.config.revision_name = "hello-00001";
    o.config.configuration_name = "hello";
    o.config.service_name = "hello";
    o.config.pod_name = "hello-00001-3";
    o.config.user_port = 9;
    o.config.container_concurrency = cc;
    o.time = &time;
    o.home = &io;
    o.control = &io;
    o.instance_id = "abc";
    guard = std::make_unique<ReplicaGuard>(std::move(o));
  }

  std::optional<bool> health_check() {
    std::optional<bool> answer;
    boost::asio::co_spawn(io, guard->health_check(),
                          [&](std::exception_ptr, bool ok) { answer = ok; });
    io.poll();
    io.restart();
    return answer;
  }
};

TEST(ReplicaGuard, HealthChecksPassOnlyWhenTheAppIsReadyAndNotDraining) {
  GuardUnderTest t;
  EXPECT_EQ(t.health_check(), false) << "before the prober started: not ready";
  EXPECT_TRUE(t.guard->idle());
  t.guard->start();  // no probe configured: ready at once
  EXPECT_TRUE(t.guard->app_is_ready());
  EXPECT_EQ(t.health_check(), true);
  t.guard->set_draining(true);
  EXPECT_EQ(t.health_check(), false) << "a draining replica takes no new traffic";
  t.guard->set_draining(false);
  EXPECT_EQ(t.health_check(), true) << "the preStop hook's drain can end (app restart)";
  t.guard->stop();
  t.io.poll();
  EXPECT_TRUE(t.guard->idle()) << "nothing of the prober left running: safe to free";
}

TEST(ReplicaGuard, NothingInFlightAndNoStatsBeforeAnyRequest) {
  GuardUnderTest t;
  EXPECT_EQ(t.guard->in_flight(), 0);
  t.time.advance(1s);
  const stats::Report r = t.guard->cut_stats(t.time.now());
  EXPECT_EQ(r.request_count, 0);
  EXPECT_EQ(r.average_concurrency, 0);
  EXPECT_EQ(t.guard->instance_id(), "abc");
}

TEST(ReplicaGuard, ItsMetricsCarryTheReplicaAsKnativesSidecarLabelsIt) {
  GuardUnderTest t;
  const std::string text = t.guard->metrics().registry().serialize();
  EXPECT_NE(text.find("breaker_pending_requests{"), std::string::npos) << text;
  EXPECT_NE(text.find("pod_name=\"hello-00001-3\""), std::string::npos) << text;
  EXPECT_NE(text.find("container_name=\"queue-proxy\""), std::string::npos) << text;
}

// A starting app is polled at a tenth of the time polled so far, from 1 ms up to the
// startup interval: readiness is seen within about 10% of the start time.
TEST(StartupProbePeriod, RampsFromAMillisecondToTheStartupInterval) {
  using std::chrono::microseconds;
  using std::chrono::milliseconds;
  struct Case {
    core::Duration polling_for;
    milliseconds cap;
    core::Duration want;
  } cases[] =
      {
          {0ms, 5ms, 1ms},     {3ms, 5ms, 1ms},  {20ms, 5ms, 2ms},
          {35ms, 5ms, 3500us}, {50ms, 5ms, 5ms}, {10s, 5ms, 5ms},
          {400ms, 50ms, 40ms}, {1h, 50ms, 50ms}, {0ms, 0ms, 0ms},  // a zero interval stays zero
      };
  for (size_t i = 0; i < std::size(cases); ++i) {
    EXPECT_EQ(startup_probe_period(cases[i].polling_for, cases[i].cap), cases[i].want)
        << "case " << i;
  }
}

}  // namespace
}  // namespace sluice::queue
