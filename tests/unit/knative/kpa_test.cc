#include "knative/kpa.h"

#include <gtest/gtest.h>

#include "service/service_file.h"

namespace sluice::knative {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::string cond(const json& status, const std::string& type, const char* field = "status") {
  for (const auto& c : status["conditions"])
    if (c["type"] == type)
      return c.value(field, "");
  return "absent";
}

PaObservation served(int32_t want, int32_t ready) {
  PaObservation o;
  o.want = want;
  o.ready = ready;
  o.sks_exists = o.sks_ready = true;
  o.service_name = "hello-00001";
  o.private_service_name = "hello-00001-private";
  return o;
}

// computeActiveCondition's table (kpa.go), row by row.
TEST(PaStatus, ActiveFollowsKnativesTable) {
  struct Row {
    const char* name;
    int32_t want, ready;
    const char* before;  // Active before: True, False, Unknown, or "" (no status)
    const char* after;
    const char* reason;
  } rows[] = {
      {"want 0: inactive", 0, 1, "True", "False", "NoTraffic"},
      {"want >0, too few ready: activating", 2, 0, "False", "Unknown", "Queued"},
      {"want >0, enough ready: active", 1, 1, "Unknown", "True", ""},
      {"unknown want, inactive, none ready: stays inactive", -1, 0, "False", "False", "NoTraffic"},
      {"unknown want, was active, none ready: activating", -1, 0, "True", "Unknown", "Queued"},
      {"unknown want, enough ready, was activating: active", -1, 1, "Unknown", "True", ""},
  };
  for (const auto& r : rows) {
    json old = json::object();
    if (std::string(r.before).size())
      old = {{"conditions", json::array({{{"type", "Active"}, {"status", r.before}}})}};
    const json st = pa_status(old, served(r.want, r.ready), 3, "2026-12-01T00:00:00.000000Z");
    EXPECT_EQ(cond(st, "Active"), r.after) << r.name;
    EXPECT_EQ(cond(st, "Active", "reason"), r.reason) << r.name;
    EXPECT_EQ(st["observedGeneration"], 3) << r.name;
  }
}

TEST(PaStatus, ReadyIsAllThreeAndTheServiceNamesComeFromTheSks) {
  const json st = pa_status(json::object(), served(1, 1), 1, "t0");
  EXPECT_EQ(cond(st, "Ready"), "True");
  EXPECT_EQ(cond(st, "ScaleTargetInitialized"), "True");
  EXPECT_EQ(st["serviceName"], "hello-00001");
  EXPECT_EQ(st["metricsServiceName"], "hello-00001-private");
  EXPECT_EQ(st["desiredScale"], 1);
  EXPECT_EQ(st["actualScale"], 1);
  // No SKS yet: both names are still present (the CRD requires them), SKSReady False.
  PaObservation none;
  none.want = 1;
  const json early = pa_status(json::object(), none, 1, "t0");
  EXPECT_EQ(early["serviceName"], "");
  EXPECT_EQ(early["metricsServiceName"], "");
  EXPECT_EQ(cond(early, "SKSReady"), "False");
  EXPECT_EQ(cond(early, "Ready"), "False");
}

TEST(PaStatus, TransitionTimesHoldWhileTheStatusDoes) {
  const json a = pa_status(json::object(), served(1, 1), 1, "t0");
  const json b = pa_status(a, served(2, 1), 1, "t1");
  EXPECT_EQ(cond(b, "Active", "lastTransitionTime"), "t0");
  const json c = pa_status(b, served(0, 1), 1, "t2");
  EXPECT_EQ(cond(c, "Active", "lastTransitionTime"), "t2");
}

TEST(PaStatus, AnUnknownWantKeepsTheLastDesiredScale) {
  const json a = pa_status(json::object(), served(3, 3), 1, "t0");
  EXPECT_EQ(pa_status(a, served(-1, 3), 1, "t1")["desiredScale"], 3);
}

TEST(PaStatus, InvalidAnnotationsAreTheMessage) {
  PaObservation o;
  o.invalid = "autoscaling.knative.dev/scale-buffer: -1 must be at least 0";
  const json st = pa_status(json::object(), o, 1, "t0");
  EXPECT_EQ(cond(st, "Active"), "False");
  EXPECT_EQ(cond(st, "Active", "reason"), "InvalidAnnotation");
  EXPECT_EQ(cond(st, "Ready", "message"), *o.invalid);
}

TEST(Sks, ModeAndActivatorsAsKnative) {
  EXPECT_EQ(sks_mode(2, 0, false), "Serve");
  EXPECT_EQ(sks_mode(2, -1, false), "Proxy") << "no excess burst capacity";
  EXPECT_EQ(sks_mode(0, 5, false), "Proxy");
  EXPECT_EQ(sks_mode(-1, 5, true), "Proxy");
  EXPECT_EQ(num_activators(0, 100, 0), 2) << "TBC 0: the minimum";
  EXPECT_EQ(num_activators(5, 100, 211), 8) << "ceil((500 + 211) / 100)";
  EXPECT_EQ(num_activators(5, 100, -1), 5) << "TBC -1: just the pods";
  EXPECT_EQ(num_activators(0, 100, 211), 3);
}

TEST(Sks, MadeLikeMakeSks) {
  const json pa = {{"metadata",
                    {{"name", "hello-00001"},
                     {"namespace", "default"},
                     {"uid", "u-1"},
                     {"labels", {{"serving.knative.dev/revision", "hello-00001"}}},
                     {"annotations",
                      {{"autoscaling.knative.dev/metric", "concurrency"},
                       {"autoscaling.knative.dev/class", "kpa.autoscaling.knative.dev"}}}}},
                   {"spec",
                    {{"protocolType", "http1"},
                     {"scaleTargetRef",
                      {{"apiVersion", "apps/v1"},
                       {"kind", "Deployment"},
                       {"name", "hello-00001-deployment"}}}}}};
  const json sks = make_sks(pa, "Proxy", 2);
  EXPECT_EQ(sks["metadata"]["name"], "hello-00001");
  EXPECT_FALSE(sks["metadata"]["annotations"].contains("autoscaling.knative.dev/metric"));
  EXPECT_TRUE(sks["metadata"]["annotations"].contains("autoscaling.knative.dev/class"));
  EXPECT_EQ(sks["metadata"]["ownerReferences"][0]["uid"], "u-1");
  EXPECT_EQ(sks["metadata"]["ownerReferences"][0]["controller"], true);
  EXPECT_EQ(sks["spec"]["objectRef"]["name"], "hello-00001-deployment");
  EXPECT_EQ(sks["spec"]["mode"], "Proxy");
  EXPECT_EQ(sks["spec"]["numActivators"], 2);
}

TEST(LeaseElector, TakesAnAbsentReleasedOrSilentLeaseAndNeverALiveOne) {
  core::ManualTimeSource clock;
  LeaseElector e("b", 10s);
  EXPECT_EQ(e.decide({}, clock.now()), LeaseAction::Create);
  EXPECT_EQ(e.decide({true, "b", "r1", 10}, clock.now()), LeaseAction::Renew);
  EXPECT_EQ(e.decide({true, "", "r1", 10}, clock.now()), LeaseAction::Take) << "released";
  // A holder that keeps renewing is never taken over.
  for (int i = 0; i < 20; ++i) {
    clock.advance(2s);
    EXPECT_EQ(e.decide({true, "a", "r" + std::to_string(i), 10}, clock.now()), LeaseAction::Wait);
  }
  // Silent: the record does not move for a whole lease, as *we* measure it.
  clock.advance(9s);
  EXPECT_EQ(e.decide({true, "a", "r19", 10}, clock.now()), LeaseAction::Wait);
  clock.advance(1s);
  EXPECT_EQ(e.decide({true, "a", "r19", 10}, clock.now()), LeaseAction::Take);
}

TEST(AnnotationScaling, SameRulesAndMessagesAsAServiceFile) {
  auto ok =
      service::scaling_from_annotations({{"autoscaling.knative.dev/scale-buffer", "2"},
                                         {"autoscaling.knative.dev/target", "4"},
                                         {"unrelated", "x"}},
                                        {{"stable-window", "6s"}, {"_example", "ignored"}}, 1);
  EXPECT_TRUE(ok.errors.empty()) << ok.errors.front();
  EXPECT_TRUE(ok.config_errors.empty()) << ok.config_errors.front();
  EXPECT_EQ(ok.scaling.scale_buffer, 2);
  EXPECT_EQ(ok.scaling.decider.stable_window, 6s);
  EXPECT_DOUBLE_EQ(ok.scaling.decider.target, 0.7) << "containerConcurrency 1 caps it, at 70 %";
  EXPECT_EQ(ok.scaling.keep_alive.mode, autoscaler::KeepAliveSpec::Mode::Kpa);

  // A PodAutoscaler carries the revision's annotations, Sluice's keep-alive among them.
  auto hist = service::scaling_from_annotations({{"sluice.dev/keep-alive", "histogram"}}, {}, 0);
  EXPECT_TRUE(hist.errors.empty()) << hist.errors.front();
  EXPECT_EQ(hist.scaling.keep_alive.mode, autoscaler::KeepAliveSpec::Mode::Histogram);
  auto typo = service::scaling_from_annotations({{"sluice.dev/keep-alive", "warm"}}, {}, 0);
  ASSERT_EQ(typo.errors.size(), 1u);
  EXPECT_EQ(typo.errors[0].rfind("sluice.dev/keep-alive: \"warm\": one of kpa", 0), 0u)
      << typo.errors[0];

  auto bad = service::scaling_from_annotations({{"autoscaling.knative.dev/scale-buffer", "-1"},
                                                {"autoscaling.knative.dev/min-scale", "5"},
                                                {"autoscaling.knative.dev/max-scale", "2"}},
                                               {}, 0);
  ASSERT_EQ(bad.errors.size(), 2u);
  EXPECT_EQ(bad.errors[0], "autoscaling.knative.dev/scale-buffer: -1 must be at least 0");
  EXPECT_EQ(bad.errors[1], "autoscaling.knative.dev/min-scale: min-scale 5 > max-scale 2");

  auto cm = service::scaling_from_annotations({}, {{"stable-window", "soon"}}, 0);
  EXPECT_TRUE(cm.errors.empty());
  ASSERT_EQ(cm.config_errors.size(), 1u);
  EXPECT_NE(cm.config_errors[0].find("stable-window"), std::string::npos) << cm.config_errors[0];
}

}  // namespace
}  // namespace sluice::knative
