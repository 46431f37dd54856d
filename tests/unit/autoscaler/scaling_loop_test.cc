#include "autoscaler/scaling_loop.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

namespace sluice::autoscaler {
namespace {

using namespace std::chrono_literals;

struct FakeScaler final : Scaler {
  struct Call {
    std::string revision;
    int32_t want;
    bool poke;
    core::TimePoint at;
  };
  core::TimeSource* clock = nullptr;
  int32_t cap = 1000;
  std::vector<Call> calls;
  int32_t scale(const std::string& revision, const ScaleDecision& d, bool poke) override {
    calls.push_back({revision, d.want, poke, clock->now()});
    return std::min(d.want, cap);
  }
};

// Holds every scrape until the test answers it.
struct FakeScraper final : StatScraper {
  struct Pending {
    std::vector<std::string> targets;
    Done done;
  };
  std::vector<Pending> pending;
  void scrape(std::vector<std::string> targets, Done done) override {
    pending.push_back({std::move(targets), std::move(done)});
  }
  // Answers every pending scrape with `per_pod` concurrency from each pod asked.
  void answer_all(double per_pod) {
    auto all = std::move(pending);
    pending.clear();
    for (auto& p : all) {
      ScrapeSample s;
      s.pods = static_cast<int>(p.targets.size());
      s.concurrency = per_pod * s.pods;
      s.rps = per_pod * s.pods;
      p.done(s);
    }
  }
};

class ScalingLoopTest : public ::testing::Test {
 protected:
  ScalingLoopTest() { scaler_.clock = &clock_; }
  ScalingSpec spec() {
    ScalingSpec s;
    s.decider.target = 1;  // CC=1 at 100 % utilisation
    s.decider.total_target = 1;
    s.decider.stable_window = 6s;
    s.panic_window = panic_window_of(6s, 10);
    s.scale_to_zero_grace = 0s;
    return s;
  }
  void run_for(core::Duration d) {
    for (auto t = 0ms; t < d; t += 100ms) {
      clock_.advance(100ms);
      io_.restart();
      io_.poll();
    }
  }
  static std::vector<std::string> pods(int n) {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) out.push_back("10.0.0." + std::to_string(i + 1) + ":9090");
    return out;
  }

  core::ManualTimeSource clock_;
  boost::asio::io_context io_;
  FakeScaler scaler_;
  FakeScraper scraper_;
  core::FastRandom random_{42};
  ScalingLoop loop_{clock_, io_.get_executor(), scaler_, scraper_, random_};
};

TEST_F(ScalingLoopTest, TicksEveryTwoSecondsAndHoldsWithoutData) {
  loop_.add("ns/a", "a", spec());
  loop_.start();
  ASSERT_EQ(scaler_.calls.size(), 1u) << "the first tick decides at once";
  run_for(10s);
  ASSERT_EQ(scaler_.calls.size(), 6u);
  for (const auto& c : scaler_.calls) {
    EXPECT_EQ(c.want, 0);
    EXPECT_FALSE(c.poke);
  }
  EXPECT_EQ(scaler_.calls[1].at - scaler_.calls[0].at, 2s);
  EXPECT_TRUE(scraper_.pending.empty()) << "no ready pods: nothing to scrape";
}

TEST_F(ScalingLoopTest, TheFirstRequestPokesAtOnceNotAtTheNextTick) {
  loop_.add("ns/a", "a", spec());
  loop_.start();
  run_for(500ms);
  const auto before = scaler_.calls.size();
  const auto at = clock_.now();
  loop_.stat("ns/a", 1, 1);
  ASSERT_EQ(scaler_.calls.size(), before + 1);
  EXPECT_TRUE(scaler_.calls.back().poke);
  EXPECT_EQ(scaler_.calls.back().want, 1);
  EXPECT_EQ(scaler_.calls.back().at, at) << "no wait on the clock";
  EXPECT_EQ(loop_.last_want("ns/a"), 1);
  loop_.stat("ns/a", 1, 1);
  EXPECT_EQ(scaler_.calls.size(), before + 1) << "only a revision at zero is poked";
}

// Knative waits for its next 2 s tick; a sample that means more pods is acted on at once.
TEST_F(ScalingLoopTest, LoadBeyondCapacityBetweenTicksScalesUpAtOnceAndDownOnlyAtATick) {
  loop_.add("ns/a", "a", spec());
  loop_.start();
  loop_.stat("ns/a", 2, 2);  // poke: 0 -> 2
  ASSERT_EQ(loop_.last_want("ns/a"), 2);
  loop_.set_healthy("ns/a", "act-1", {"10.0.0.1:8012", "10.0.0.2:8012"});
  run_for(2s);  // a tick on 2 pods carrying 2
  ASSERT_EQ(loop_.last_want("ns/a"), 2);
  run_for(500ms);
  const auto calls = scaler_.calls.size();
  loop_.stat("ns/a", 2, 2);  // what 2 pods carry: wait for the tick
  EXPECT_EQ(scaler_.calls.size(), calls);
  const auto at = clock_.now();
  loop_.stat("ns/a", 20, 20);  // a step: panic, now
  ASSERT_EQ(scaler_.calls.size(), calls + 1);
  EXPECT_EQ(scaler_.calls.back().at, at) << "not at the next tick";
  EXPECT_FALSE(scaler_.calls.back().poke);
  EXPECT_GT(loop_.last_want("ns/a"), 2);
  const int32_t stepped = loop_.last_want("ns/a");
  loop_.stat("ns/a", 0.5, 0.5);
  EXPECT_EQ(scaler_.calls.size(), calls + 1) << "less load never decides between ticks";
  loop_.stat("ns/a", 1, 1);  // the same second: 21.5 in all, what was asked for covers it
  EXPECT_EQ(scaler_.calls.size(), calls + 1);
  run_for(2s);
  EXPECT_GE(loop_.last_want("ns/a"), stepped) << "panic holds at the tick";
  EXPECT_NE(loop_.metrics_text().find("sluice_autoscaler_early_scale_ups_total 1"),
            std::string::npos)
      << loop_.metrics_text();
}

TEST_F(ScalingLoopTest, ScrapesASampleScaledToTheReadyPopulation) {
  loop_.add("ns/a", "a", spec());
  loop_.start();
  loop_.stat("ns/a", 1, 1);  // to one
  loop_.set_pods("ns/a", pods(20));
  run_for(1s);
  ASSERT_EQ(scraper_.pending.size(), 1u);
  EXPECT_EQ(scraper_.pending[0].targets.size(), static_cast<size_t>(sample_size(20)));
  run_for(1s);
  EXPECT_EQ(scraper_.pending.size(), 1u) << "one scrape per revision in flight";
  // Each sampled pod has 3 in flight: 60 revision-wide, 60 pods at target 1.
  for (int i = 0; i < 8; ++i) {
    scraper_.answer_all(3);
    run_for(1s);
  }
  EXPECT_EQ(scaler_.calls.back().want, 60) << scaler_.calls.back().revision;
  EXPECT_EQ(loop_.ready("ns/a"), 20) << "no activator spoke: the runtime's ready pods";
}

TEST_F(ScalingLoopTest, AnIncompleteSampleRecordsNothing) {
  loop_.add("ns/a", "a", spec());
  loop_.start();
  loop_.set_pods("ns/a", pods(2));
  for (int i = 0; i < 8; ++i) {
    run_for(1s);
    for (auto& p : std::exchange(scraper_.pending, {})) p.done(std::nullopt);
  }
  EXPECT_FALSE(loop_.last("ns/a")->has_data);
}

TEST_F(ScalingLoopTest, EffectiveCapacityIsTheUnionOfWhatTheActivatorsHoldHealthy) {
  loop_.add("ns/a", "a", spec());
  loop_.start();
  loop_.set_pods("ns/a", pods(4));  // Kubernetes: four ready
  loop_.set_healthy("ns/a", "act-1", {"10.0.0.1:8012", "10.0.0.2:8012"});
  loop_.set_healthy("ns/a", "act-2", {"10.0.0.2:8012"});  // subsets overlap
  run_for(2s);
  EXPECT_EQ(loop_.ready("ns/a"), 2)
      << "two pods the activators do not hold healthy count for nothing";
  EXPECT_EQ(loop_.quarantined("ns/a"), 0);
  loop_.set_healthy("ns/a", "act-2", {"10.0.0.2:8012"}, {"10.0.0.3:8012", "10.0.0.1:8012"});
  EXPECT_EQ(loop_.quarantined("ns/a"), 1) << "10.0.0.1 is healthy at act-1: it still serves";
  // Activators that fall silent say nothing any more: the runtime's count again.
  run_for(6s);
  EXPECT_EQ(loop_.ready("ns/a"), 4);
}

TEST_F(ScalingLoopTest, TheScalersCapIsWhatTheLoopReports) {
  scaler_.cap = 1;
  loop_.add("ns/a", "a", spec());
  loop_.start();
  loop_.stat("ns/a", 5, 5);
  EXPECT_EQ(scaler_.calls.back().want, 5);
  EXPECT_EQ(loop_.last_want("ns/a"), 1);
  EXPECT_NE(loop_.metrics_text().find("autoscaler_desired_pods{namespace_name=\"ns\","
                                      "configuration_name=\"a\",revision_name=\"a\"} 1"),
            std::string::npos)
      << loop_.metrics_text();
}

TEST_F(ScalingLoopTest, StopEndsTheTicksAndAScrapeAnsweredLateIsIgnored) {
  loop_.add("ns/a", "a", spec());
  loop_.start();
  loop_.set_pods("ns/a", pods(1));
  run_for(1s);
  ASSERT_EQ(scraper_.pending.size(), 1u);
  loop_.stop();
  const auto calls = scaler_.calls.size();
  run_for(10s);
  scraper_.answer_all(5);
  EXPECT_EQ(scaler_.calls.size(), calls);
  EXPECT_FALSE(loop_.last("ns/a")->has_data);
}

TEST_F(ScalingLoopTest, ARemovedRevisionIsNeitherScaledNorScraped) {
  loop_.add("ns/a", "a", spec());
  loop_.start();
  loop_.set_pods("ns/a", pods(1));
  run_for(1s);
  loop_.remove("ns/a");
  scraper_.answer_all(5);  // answered after removal: dropped
  const auto calls = scaler_.calls.size();
  run_for(4s);
  EXPECT_EQ(scaler_.calls.size(), calls);
  EXPECT_FALSE(loop_.has("ns/a"));
  EXPECT_EQ(loop_.last("ns/a"), nullptr);
}

TEST_F(ScalingLoopTest, OutOfProxyModeScaleToZeroWaitsTheWholeGraceAfterGoingIdle) {
  ScalingSpec s = spec();
  s.scale_to_zero_grace = 10s;
  loop_.add("ns/a", "a", s);
  loop_.set_proxied("ns/a", false);  // Serve mode: the activator is not in the path
  loop_.start();
  loop_.stat("ns/a", 1, 1);
  loop_.set_pods("ns/a", pods(1));
  core::TimePoint idle{}, zero{};
  for (int i = 0; i < 40 && zero == core::TimePoint{}; ++i) {
    run_for(1s);
    scraper_.answer_all(0);
    const ScaleDecision* d = loop_.last("ns/a");
    if (idle == core::TimePoint{} && d->has_data && d->stable == 0)
      idle = clock_.now();
    if (loop_.last_want("ns/a") == 0)
      zero = clock_.now();
  }
  ASSERT_NE(zero, core::TimePoint{}) << loop_.last("ns/a")->reason.str();
  EXPECT_GE(zero - idle, 10s) << "proxied for none of it: the grace is counted from idle";
}

}  // namespace
}  // namespace sluice::autoscaler
