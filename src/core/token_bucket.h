// core/token_bucket.h
//
// A token bucket on a caller-supplied clock: `burst` tokens at most, `per_second` regained
// every second. Used to bound how fast a peer may do something cheap for it and costly
// for us (an HTTP/2 client resetting streams, CVE-2023-44487).
//
// Pure: time comes in as arguments, so tests drive it with a manual clock.
// Threading: not thread-safe; one owner.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/time_source.h"

namespace sluice::core {

class TokenBucket {
 public:
  TokenBucket(uint32_t burst, uint32_t per_second, TimePoint now)
      : burst_(burst), per_second_(per_second), tokens_(burst), at_(now) {}

  // Spends one token if there is one.
  bool take(TimePoint now) {
    if (now > at_) {
      tokens_ = std::min<double>(burst_, tokens_ + to_seconds(now - at_) * per_second_);
      at_ = now;
    }
    if (tokens_ < 1)
      return false;
    tokens_ -= 1;
    return true;
  }

 private:
  uint32_t burst_;
  uint32_t per_second_;
  double tokens_;
  TimePoint at_;
};

}  // namespace sluice::core
