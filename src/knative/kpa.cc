#include "knative/kpa.h"

#include <algorithm>
#include <cmath>

namespace sluice::knative {

using nlohmann::json;

namespace {

json find_condition(const json& status, const std::string& type) {
  if (status.is_object() && status.contains("conditions") && status["conditions"].is_array())
    for (const auto& c : status["conditions"])
      if (c.is_object() && c.value("type", "") == type)
        return c;
  return nullptr;
}

// A condition, keeping the old transition time while the status holds.
json condition(const json& old_status,
               const std::string& type,
               const std::string& value,
               const std::string& reason,
               const std::string& message,
               const std::string& now) {
  json c = {{"type", type}, {"status", value}};
  if (!reason.empty())
    c["reason"] = reason;
  if (!message.empty())
    c["message"] = message;
  const json old = find_condition(old_status, type);
  c["lastTransitionTime"] = old.is_object() && old.value("status", "") == value
                                ? old.value("lastTransitionTime", now)
                                : now;
  return c;
}

}  // namespace

bool condition_is(const json& status, const std::string& type, const std::string& value) {
  const json c = find_condition(status, type);
  return c.is_object() && c.value("status", "") == value;
}

json pa_status(const json& old_status,
               const PaObservation& o,
               int64_t generation,
               const std::string& now) {
  json st = old_status.is_object() ? old_status : json::object();
  st["observedGeneration"] = generation;
  // The CRD requires both (Knative writes "" until the SKS has them).
  for (const char* required : {"serviceName", "metricsServiceName"})
    if (!st.contains(required) || !st[required].is_string())
      st[required] = "";
  const bool was_initialized = condition_is(old_status, "ScaleTargetInitialized", "True");
  const bool was_inactive = condition_is(old_status, "Active", "False");
  const bool was_activating =
      !condition_is(old_status, "Active", "True") && !condition_is(old_status, "Active", "False");

  std::string active, active_reason, active_message;
  std::string initialized = was_initialized ? "True" : "Unknown";
  std::string sks = "Unknown", sks_reason, sks_message;
  if (o.invalid) {
    active = "False";
    active_reason = "InvalidAnnotation";
    active_message = *o.invalid;
  } else {
    if (!o.sks_exists || o.private_service_name.empty()) {
      sks = "False";
      sks_reason = "NoPrivateService";
      sks_message = "There is no private service yet";
    } else {
      st["metricsServiceName"] = o.private_service_name;
      st["serviceName"] = o.service_name;
      sks = o.sks_ready ? "True" : "False";
      if (!o.sks_ready) {
        sks_reason = "NotReady";
        sks_message = o.sks_message;
      }
    }
    st["actualScale"] = o.ready;
    // After a restart the want is unknown for a moment: keep the last one.
    if (!(o.want == kScaleUnknown && st.contains("desiredScale") &&
          st["desiredScale"].is_number() && st["desiredScale"].get<int64_t>() >= 0))
      st["desiredScale"] = o.want;
    // computeActiveCondition.
    const int32_t min_ready =
        was_initialized ? std::max(o.min_scale, 1) : std::max(o.min_scale, o.initial_scale);
    if (o.ready >= min_ready && !st.value("serviceName", "").empty())
      initialized = "True";
    if (o.want == 0 || min_ready == 0) {
      active = "False";
      if (was_activating && min_ready > 0) {
        active_reason = "TimedOut";
        active_message = "The target could not be activated.";
      } else {
        active_reason = "NoTraffic";
        active_message = "The target is not receiving traffic.";
      }
    } else if (o.ready < min_ready) {
      if (o.want > 0 || !was_inactive) {
        active = "Unknown";
        active_reason = "Queued";
        active_message = "Requests to the target are being buffered as resources are provisioned.";
      } else {
        active = "False";
        active_reason = "NoTraffic";
        active_message = "The target is not receiving traffic.";
      }
    } else if (o.want > 0 || !was_inactive) {
      active = "True";
    } else {
      active = "False";
      active_reason = "NoTraffic";
      active_message = "The target is not receiving traffic.";
    }
  }
  json conds = json::array();
  conds.push_back(condition(old_status, "Active", active, active_reason, active_message, now));
  conds.push_back(condition(old_status, "ScaleTargetInitialized", initialized, "", "", now));
  conds.push_back(condition(old_status, "SKSReady", sks, sks_reason, sks_message, now));
  // Ready: all three True; False when any is False; Unknown otherwise (a living set).
  std::string ready = "True", ready_reason, ready_message;
  for (const auto& c : conds) {
    const std::string v = c["status"];
    if (v == "False" || (v == "Unknown" && ready == "True")) {
      if (ready != "False") {
        ready = v;
        ready_reason = c.value("reason", "");
        ready_message = c.value("message", "");
      }
    }
  }
  conds.push_back(condition(old_status, "Ready", ready, ready_reason, ready_message, now));
  st["conditions"] = conds;
  return st;
}

std::string sks_mode(int32_t want, int32_t excess_burst_capacity, bool pa_inactive) {
  if (want == kScaleUnknown && pa_inactive)
    return "Proxy";
  if (want > 0 && excess_burst_capacity >= 0)
    return "Serve";
  return "Proxy";
}

int32_t num_activators(int32_t ready,
                       double total_target,
                       double target_burst_capacity,
                       double activator_capacity) {
  if (target_burst_capacity == 0)
    return kMinActivators;
  double cover = ready * total_target;
  if (target_burst_capacity > 0)
    cover += target_burst_capacity;
  return static_cast<int32_t>(
      std::max<double>(kMinActivators, std::ceil(cover / activator_capacity)));
}

json make_sks(const json& pa, const std::string& mode, int32_t activators) {
  const json& meta = pa["metadata"];
  json annotations = json::object();
  if (meta.contains("annotations") && meta["annotations"].is_object())
    for (const auto& [k, v] : meta["annotations"].items())
      if (k != "autoscaling.knative.dev/metric")  // MakeSKS filters the metric out
        annotations[k] = v;
  json owner = {{"apiVersion", "autoscaling.internal.knative.dev/v1alpha1"},
                {"kind", "PodAutoscaler"},
                {"name", meta.value("name", "")},
                {"uid", meta.value("uid", "")},
                {"controller", true},
                {"blockOwnerDeletion", true}};
  json sks = {{"apiVersion", "networking.internal.knative.dev/v1alpha1"},
              {"kind", "ServerlessService"},
              {"metadata",
               {{"name", meta.value("name", "")},
                {"namespace", meta.value("namespace", "")},
                {"labels", meta.value("labels", json::object())},
                {"annotations", annotations},
                {"ownerReferences", json::array({owner})}}},
              {"spec",
               {{"mode", mode},
                {"objectRef", pa["spec"].value("scaleTargetRef", json::object())},
                {"protocolType", pa["spec"].value("protocolType", "http1")},
                {"numActivators", activators}}}};
  return sks;
}

LeaseAction LeaseElector::decide(const LeaseView& v, core::TimePoint now) {
  if (!v.exists)
    return LeaseAction::Create;
  if (v.holder == identity_)
    return LeaseAction::Renew;
  if (v.holder.empty())
    return LeaseAction::Take;  // released by its last holder
  if (v.holder != seen_holder_ || v.renew_time != seen_renew_ || seen_at_ == core::TimePoint{}) {
    // The record moved (or is new to us): its holder is alive as of now.
    seen_holder_ = v.holder;
    seen_renew_ = v.renew_time;
    seen_at_ = now;
    return LeaseAction::Wait;
  }
  const core::Duration duration =
      v.duration_seconds > 0 ? std::chrono::seconds(v.duration_seconds) : duration_;
  return now - seen_at_ >= duration ? LeaseAction::Take : LeaseAction::Wait;
}

}  // namespace sluice::knative
