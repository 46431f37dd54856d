// activator/lb_policy.h
//
// Load-balancing policies over one revision's pods (spec §2.6 and the issue): Knative's
// defaults by containerConcurrency (random choice of two for CC = 0, first available
// for CC ≤ 3, round robin above) plus least-connections, overridable per revision.
//
// Pure: a policy sees a list of slots and returns an index; randomness is injected.
// Threading: a policy object belongs to one revision's owner (round robin keeps a cursor).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "core/random.h"

namespace sluice::activator {

struct PodSlot {
  int in_flight = 0;
  uint32_t limit = 0;    // concurrency this activator may use here; 0 = unlimited
  bool accepts = false;  // the health machine lets a request go here now
  bool free() const { return accepts && (limit == 0 || in_flight < static_cast<int>(limit)); }
};

enum class LbKind { RandomChoiceOfTwo, FirstAvailable, RoundRobin, LeastConnections };

// Knative's choice by containerConcurrency.
LbKind default_lb_for(uint32_t container_concurrency);
// "random-choice-2", "first-available", "round-robin", "least-connections"; nullopt if unknown.
std::optional<LbKind> parse_lb(std::string_view name);
std::string_view to_string(LbKind kind);

class LbPolicy {
 public:
  explicit LbPolicy(LbKind kind) : kind_(kind) {}
  LbKind kind() const { return kind_; }
  // Index of a slot with room, or nullopt when none has.
  std::optional<size_t> pick(std::span<const PodSlot> slots, core::Random& random);

 private:
  LbKind kind_;
  size_t cursor_ = 0;  // round robin
};

}  // namespace sluice::activator
