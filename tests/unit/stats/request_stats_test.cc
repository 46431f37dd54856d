#include "stats/request_stats.h"

#include <gtest/gtest.h>

namespace sluice::stats {
namespace {

using namespace std::chrono_literals;
using Event = RequestStats::Event;

TEST(RequestStats, TimeWeightedConcurrencyMatchesHandComputation) {
  core::ManualTimeSource clock;
  RequestStats s(clock.now());
  // t=0: A in; t=250ms: B in; t=500ms: A out; t=1000ms: report.
  // ∫conc = 1×0.25 + 2×0.25 + 1×0.5 = 1.25 request-seconds over 1 s.
  s.handle(Event::ReqIn, clock.now());
  clock.advance(250ms);
  s.handle(Event::ReqIn, clock.now());
  clock.advance(250ms);
  s.handle(Event::ReqOut, clock.now());
  clock.advance(500ms);
  Report r = s.report(clock.now());
  EXPECT_DOUBLE_EQ(r.average_concurrency, 1.25);
  EXPECT_DOUBLE_EQ(r.request_count, 2);
  EXPECT_DOUBLE_EQ(r.average_proxied_concurrency, 0);
  EXPECT_DOUBLE_EQ(r.window_seconds, 1.0);
}

TEST(RequestStats, ProxiedRequestsCountInBothFigures) {
  core::ManualTimeSource clock;
  RequestStats s(clock.now());
  s.handle(Event::ProxiedIn, clock.now());
  s.handle(Event::ReqIn, clock.now());
  clock.advance(500ms);
  s.handle(Event::ProxiedOut, clock.now());
  clock.advance(500ms);
  Report r = s.report(clock.now());
  // all: 2×0.5 + 1×0.5 = 1.5; proxied: 1×0.5 = 0.5
  EXPECT_DOUBLE_EQ(r.average_concurrency, 1.5);
  EXPECT_DOUBLE_EQ(r.average_proxied_concurrency, 0.5);
  EXPECT_DOUBLE_EQ(r.request_count, 2);
  EXPECT_DOUBLE_EQ(r.proxied_request_count, 1);
}

TEST(RequestStats, ConcurrencyCarriesOverAndCountsReset) {
  core::ManualTimeSource clock;
  RequestStats s(clock.now());
  s.handle(Event::ReqIn, clock.now());
  s.handle(Event::ReqIn, clock.now());
  clock.advance(1s);
  Report first = s.report(clock.now());
  EXPECT_DOUBLE_EQ(first.average_concurrency, 2);
  EXPECT_DOUBLE_EQ(first.request_count, 2);
  clock.advance(2s);
  Report second = s.report(clock.now());
  EXPECT_DOUBLE_EQ(second.average_concurrency, 2) << "still two in flight";
  EXPECT_DOUBLE_EQ(second.request_count, 0) << "no new arrivals";
  EXPECT_DOUBLE_EQ(second.window_seconds, 2);
}

TEST(RequestStats, UnmatchedOutNeverGoesNegative) {
  core::ManualTimeSource clock;
  RequestStats s(clock.now());
  s.handle(Event::ReqOut, clock.now());
  s.handle(Event::ProxiedOut, clock.now());
  EXPECT_EQ(s.concurrency(), 0);
  EXPECT_EQ(s.proxied_concurrency(), 0);
  clock.advance(1s);
  EXPECT_DOUBLE_EQ(s.report(clock.now()).average_concurrency, 0);
}

TEST(RequestStats, EventsOutOfOrderIgnoreNegativeDurations) {
  core::ManualTimeSource clock;
  RequestStats s(clock.now());
  auto t0 = clock.now();
  clock.advance(1s);
  s.handle(Event::ReqIn, clock.now());
  s.handle(Event::ReqOut, t0);  // stamped earlier than the last change: no negative area
  clock.advance(1s);
  Report r = s.report(clock.now());
  EXPECT_DOUBLE_EQ(r.average_concurrency, 0);
}

}  // namespace
}  // namespace sluice::stats
