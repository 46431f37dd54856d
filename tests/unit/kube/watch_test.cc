#include "kube/watch.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "kube/reflector.h"

namespace sluice::kube {
namespace {

using namespace std::chrono_literals;
using Step = WatchMachine::Step;

struct WatchMachineTest : ::testing::Test {
  core::ManualTimeSource clock;
  core::ScriptedRandom random{{0}};  // no jitter unless a test says otherwise
  WatchMachine m{WatchPolicy{500ms, 4s}, random};
};

TEST_F(WatchMachineTest, ListsThenWatchesFromTheListsVersion) {
  EXPECT_EQ(m.next(clock.now()).step, Step::List);
  m.listed("100");
  auto n = m.next(clock.now());
  EXPECT_EQ(n.step, Step::Watch);
  EXPECT_EQ(n.resource_version, "100");
  m.event("105");
  EXPECT_EQ(m.next(clock.now()).resource_version, "105");
  m.event("");  // an event without a version keeps the last one
  EXPECT_EQ(m.next(clock.now()).resource_version, "105");
}

TEST_F(WatchMachineTest, ACleanEndWatchesAgainAtOnceFromTheLastVersion) {
  m.listed("7");
  m.event("9");
  m.ended();
  auto n = m.next(clock.now());
  EXPECT_EQ(n.step, Step::Watch);
  EXPECT_EQ(n.resource_version, "9");
}

TEST_F(WatchMachineTest, ExpiryRelistsAtOnceWithoutBackoff) {
  m.listed("7");
  m.expired();
  EXPECT_EQ(m.next(clock.now()).step, Step::List);
  EXPECT_EQ(m.resource_version(), "");
}

TEST_F(WatchMachineTest, FailuresBackOffDoublingToTheCapAndResetOnSuccess) {
  m.listed("1");
  const core::Duration expected[] = {500ms, 1s, 2s, 4s, 4s};
  for (auto d : expected) {
    m.failed(clock.now(), "watch failed: connection refused");
    auto n = m.next(clock.now());
    EXPECT_EQ(n.step, Step::Wait);
    EXPECT_EQ(n.until, clock.now() + d);
    clock.advance(d - 1ms);
    EXPECT_EQ(m.next(clock.now()).step, Step::Wait) << "a millisecond early";
    clock.advance(1ms);
    n = m.next(clock.now());
    EXPECT_EQ(n.step, Step::Watch);  // from the version it had: nothing was lost
    EXPECT_EQ(n.resource_version, "1");
  }
  m.event("2");
  m.failed(clock.now(), "watch failed: connection refused");
  EXPECT_EQ(m.next(clock.now()).until, clock.now() + 500ms);
}

TEST_F(WatchMachineTest, AFailedListRetriesTheList) {
  m.failed(clock.now(), "list failed: 503");
  EXPECT_EQ(m.next(clock.now()).step, Step::Wait);
  clock.advance(500ms);
  EXPECT_EQ(m.next(clock.now()).step, Step::List);
}

TEST_F(WatchMachineTest, EachDistinctCauseIsReportedOnce) {
  m.listed("1");
  EXPECT_TRUE(m.failed(clock.now(), "watch failed: connection refused"));
  EXPECT_FALSE(m.failed(clock.now(), "watch failed: connection refused"));
  EXPECT_FALSE(m.failed(clock.now(), "watch failed: connection refused"));
  EXPECT_TRUE(m.failed(clock.now(), "watch failed: 403: forbidden"));
  m.event("2");  // recovered: the next failure is news again
  EXPECT_TRUE(m.failed(clock.now(), "watch failed: 403: forbidden"));
}

TEST(WatchMachineJitter, AddsUpToAFifthOfTheBackoff) {
  core::ManualTimeSource clock;
  core::FastRandom random(42);
  bool some_jitter = false;
  for (int i = 0; i < 200; ++i) {
    WatchMachine m{WatchPolicy{500ms, 4s}, random};
    m.failed(clock.now(), "x");
    const auto wait = m.next(clock.now()).until - clock.now();
    EXPECT_GE(wait, 500ms);
    EXPECT_LT(wait, 600ms);
    some_jitter = some_jitter || wait > 500ms;
  }
  EXPECT_TRUE(some_jitter);
}

TEST(WatchEvent, ParsesEveryTypeAndRefusesGarbage) {
  nlohmann::json obj;
  auto e = parse_watch_event(
      R"({"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"p","namespace":"n","resourceVersion":"12"}}})",
      obj);
  EXPECT_EQ(e.type, WatchEvent::Type::Added);
  EXPECT_EQ(e.resource_version, "12");
  EXPECT_EQ(obj["metadata"]["name"], "p");
  EXPECT_EQ(parse_watch_event(R"({"type":"MODIFIED","object":{"metadata":{}}})", obj).type,
            WatchEvent::Type::Modified);
  EXPECT_EQ(parse_watch_event(R"({"type":"DELETED","object":{"metadata":{}}})", obj).type,
            WatchEvent::Type::Deleted);
  e = parse_watch_event(
      R"({"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"99"}}})", obj);
  EXPECT_EQ(e.type, WatchEvent::Type::Bookmark);
  EXPECT_EQ(e.resource_version, "99");
  e = parse_watch_event(
      R"js({"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version: 1 (5)"}})js",
      obj);
  EXPECT_EQ(e.type, WatchEvent::Type::Error);
  EXPECT_EQ(e.code, 410);
  EXPECT_NE(e.message.find("too old"), std::string::npos);
  for (const char* bad : {"", "{", "[]", R"({"type":"ADDED"})", R"({"type":1,"object":{}})",
                          R"({"type":"ADDED","object":"x"})"})
    EXPECT_EQ(parse_watch_event(bad, obj).type, WatchEvent::Type::Malformed) << bad;
  e = parse_watch_event(R"({"type":"SURPRISE","object":{}})", obj);
  EXPECT_EQ(e.type, WatchEvent::Type::Malformed);
  EXPECT_NE(e.message.find("SURPRISE"), std::string::npos);
}

TEST(QueryEscape, EscapesSelectorPunctuation) {
  EXPECT_EQ(
      query_escape(
          "serving.knative.dev/revisionUID,networking.internal.knative.dev/serviceType=Private"),
      "serving.knative.dev%2FrevisionUID%2Cnetworking.internal.knative.dev%2FserviceType%"
      "3DPrivate");
  EXPECT_EQ(query_escape("a b&c"), "a%20b%26c");
}

}  // namespace
}  // namespace sluice::kube
