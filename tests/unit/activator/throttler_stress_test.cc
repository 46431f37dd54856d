// Concurrent stress of the pod trackers through their single owner: several threads
// fire request outcomes, health checks, endpoint changes and ticks at one revision,
// all funnelled through the owner's io_context as the activator does. Run under TSan
// in CI; invariants are checked after every event.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <thread>

#include "activator/revision_throttler.h"

namespace sluice::activator {
namespace {

TEST(ThrottlerStress, ManyThreadsOneOwnerInvariantsHold) {
  boost::asio::io_context home(1);
  core::ManualTimeSource clock;  // advanced only on the owner thread
  HealthConfig health;
  ThrottlerConfig config;
  RevisionSpec spec;
  spec.name = "stress";
  spec.container_concurrency = 3;
  RevisionThrottler r(spec, health, config);
  core::FastRandom random(7);
  const std::vector<std::string> all{"a:1", "b:1", "c:1", "d:1", "e:1"};
  std::vector<PodTracker*> held;
  std::atomic<int> violations{0};

  auto check = [&] {
    for (const auto& p : all) {
      const PodTracker* t = r.find(p);
      if (t != nullptr && t->in_flight() < 0)
        ++violations;
    }
    if (r.count(PodState::Quarantined) > r.pod_count())
      ++violations;
    // Passive quarantines never exceed the cap; active ones may add to them.
    if (r.assigned_count() > r.pod_count())
      ++violations;
  };
  boost::asio::post(home, [&] {
    r.set_endpoints(all, {"x:1"}, "x:1", clock.now());
    for (const auto& p : all) r.on_check(p, CheckResult::Passed, clock.now());
  });

  constexpr int kThreads = 4;
  constexpr int kEvents = 3000;
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      core::FastRandom mine(100 + t);
      for (int i = 0; i < kEvents; ++i) {
        const uint64_t what = mine.uniform(6);
        const std::string pod = all[mine.uniform(all.size())];
        boost::asio::post(home, [&, what, pod] {
          clock.advance(std::chrono::milliseconds(7));
          switch (what) {
            case 0:
            case 1:
              if (PodTracker* p = r.pick(random))
                held.push_back(p);
              break;
            case 2:
              if (!held.empty()) {
                PodTracker* p = held.back();
                held.pop_back();
                r.finish(
                    p,
                    random.uniform(4) == 0 ? RequestOutcome::PodFailure : RequestOutcome::Success,
                    clock.now());
              }
              break;
            case 3:
              r.on_check(pod, random.uniform(3) == 0 ? CheckResult::Failed : CheckResult::Passed,
                         clock.now());
              break;
            case 4: {
              std::vector<std::string> some;
              for (const auto& p : all) {
                if (random.uniform(5) != 0)
                  some.push_back(p);
              }
              r.set_endpoints(some, {"x:1"}, "x:1", clock.now());
              break;
            }
            case 5:
              r.tick(clock.now());
              break;
          }
          check();
        });
      }
    });
  }
  std::thread owner([&] {
    auto guard = boost::asio::make_work_guard(home);
    home.run();
  });
  for (auto& p : producers) p.join();
  boost::asio::post(home, [&] {
    while (!held.empty()) {
      r.finish(held.back(), RequestOutcome::Success, clock.now());
      held.pop_back();
    }
    r.set_endpoints({}, {"x:1"}, "x:1", clock.now());
    home.stop();
  });
  owner.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(r.pod_count(), 0u) << "every pod forgotten once removed and idle";
}

}  // namespace
}  // namespace sluice::activator
