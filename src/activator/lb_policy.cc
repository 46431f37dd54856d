#include "activator/lb_policy.h"

#include <vector>

namespace sluice::activator {

LbKind default_lb_for(uint32_t cc) {
  if (cc == 0)
    return LbKind::RandomChoiceOfTwo;
  if (cc <= 3)
    return LbKind::FirstAvailable;
  return LbKind::RoundRobin;
}

std::optional<LbKind> parse_lb(std::string_view name) {
  if (name == "random-choice-2")
    return LbKind::RandomChoiceOfTwo;
  if (name == "first-available")
    return LbKind::FirstAvailable;
  if (name == "round-robin")
    return LbKind::RoundRobin;
  if (name == "least-connections")
    return LbKind::LeastConnections;
  return std::nullopt;
}

std::string_view to_string(LbKind kind) {
  switch (kind) {
    case LbKind::RandomChoiceOfTwo:
      return "random-choice-2";
    case LbKind::FirstAvailable:
      return "first-available";
    case LbKind::RoundRobin:
      return "round-robin";
    case LbKind::LeastConnections:
      return "least-connections";
  }
  return "unknown";
}

std::optional<size_t> LbPolicy::pick(std::span<const PodSlot> slots, core::Random& random) {
  const size_t n = slots.size();
  if (n == 0)
    return std::nullopt;
  switch (kind_) {
    case LbKind::FirstAvailable:
      for (size_t i = 0; i < n; ++i) {
        if (slots[i].free())
          return i;
      }
      return std::nullopt;
    case LbKind::RoundRobin: {
      if (cursor_ >= n)
        cursor_ = 0;
      for (size_t k = 0; k < n; ++k) {
        size_t i = (cursor_ + k) % n;
        if (slots[i].free()) {
          cursor_ = i + 1;
          return i;
        }
      }
      return std::nullopt;
    }
    case LbKind::LeastConnections: {
      std::optional<size_t> best;
      for (size_t i = 0; i < n; ++i) {
        if (slots[i].free() && (!best || slots[i].in_flight < slots[*best].in_flight))
          best = i;
      }
      return best;
    }
    case LbKind::RandomChoiceOfTwo: {
      // Two distinct random candidates among those with room; the less loaded wins, a tie
      // is broken at random (power of two choices).
      std::vector<size_t> usable;
      usable.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        if (slots[i].free())
          usable.push_back(i);
      }
      if (usable.empty())
        return std::nullopt;
      if (usable.size() == 1)
        return usable[0];
      size_t a = random.uniform(usable.size());
      size_t b = random.uniform(usable.size() - 1);
      if (b >= a)
        ++b;
      const auto& sa = slots[usable[a]];
      const auto& sb = slots[usable[b]];
      if (sa.in_flight != sb.in_flight)
        return sa.in_flight < sb.in_flight ? usable[a] : usable[b];
      return random.uniform(2) == 0 ? usable[a] : usable[b];
    }
  }
  return std::nullopt;
}

}  // namespace sluice::activator
