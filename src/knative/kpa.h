// knative/kpa.h
//
// What Knative 1.18's KPA reconciler writes, as pure functions of what it read
// (pkg/reconciler/autoscaling/kpa/kpa.go, reconciler.go, resources/sks.go), so Sluice's
// autoscaler leaves the same objects Knative's controller expects:
//   - the PodAutoscaler status: desiredScale, actualScale, serviceName,
//     metricsServiceName, conditions Active / ScaleTargetInitialized / SKSReady / Ready
//     (computeStatus, computeActiveCondition);
//   - the ServerlessService: mode Proxy/Serve and numActivators (MakeSKS,
//     computeNumActivators);
// and the Lease that keeps two autoscaler replicas from both scaling (client-go's
// leader election: expiry is judged by when *we* last saw the record change, never by
// comparing clocks across machines).
//
// Pure: no clock (callers pass `now` and its RFC 3339 text), no I/O.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/time_source.h"

namespace sluice::knative {

inline constexpr int32_t kScaleUnknown = -1;
inline constexpr int32_t kMinActivators = 2;

struct PaObservation {
  int32_t want = kScaleUnknown;  // the decision; -1: no data yet
  int32_t ready = 0;             // ready pods
  int32_t min_scale = 0;
  int32_t initial_scale = 1;
  bool sks_exists = false;
  bool sks_ready = false;
  std::string sks_message;  // its Ready condition's message when not ready
  std::string service_name, private_service_name;
  std::optional<std::string> invalid;  // the annotations' errors: reported, nothing scaled
};

// The PodAutoscaler's new `status` from its old one (conditions keep their transition
// time while their status holds). `now` is RFC 3339.
nlohmann::json pa_status(const nlohmann::json& old_status,
                         const PaObservation& o,
                         int64_t generation,
                         const std::string& now);

// Knative's choice of SKS mode: Serve when the revision wants pods and has excess burst
// capacity, Proxy otherwise (and while an inactive revision's want is unknown).
std::string sks_mode(int32_t want, int32_t excess_burst_capacity, bool pa_inactive);

// computeNumActivators: enough activators to cover ready × total + TBC.
int32_t num_activators(int32_t ready,
                       double total_target,
                       double target_burst_capacity,
                       double activator_capacity = 100);

// The ServerlessService Knative's KPA creates for `pa` (MakeSKS).
nlohmann::json make_sks(const nlohmann::json& pa, const std::string& mode, int32_t activators);

// Whether a condition of `status` is True / False.
bool condition_is(const nlohmann::json& status, const std::string& type, const std::string& value);

// --- Lease (coordination.k8s.io/v1) -------------------------------------------------

struct LeaseView {
  bool exists = false;
  std::string holder;
  std::string renew_time;  // the record's text: a change means the holder is alive
  int32_t duration_seconds = 0;
};

enum class LeaseAction { Create, Take, Renew, Wait };

class LeaseElector {
 public:
  LeaseElector(std::string identity, core::Duration lease_duration)
      : identity_(std::move(identity)), duration_(lease_duration) {}
  // What to do with the record as read at `now`.
  LeaseAction decide(const LeaseView& v, core::TimePoint now);
  const std::string& identity() const { return identity_; }

 private:
  std::string identity_;
  core::Duration duration_;
  std::string seen_holder_, seen_renew_;
  core::TimePoint seen_at_{};
};

}  // namespace sluice::knative
