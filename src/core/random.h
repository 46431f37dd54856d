// core/random.h
//
// Injected randomness. Production uses one fast PRNG per worker (not thread-safe: each
// worker owns its own); tests use ScriptedRandom or a fixed seed, so every pick replays.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::core {

class Random {
 public:
  virtual ~Random() = default;
  virtual uint64_t next_u64() = 0;
  // Uniform in [0, bound); bound must be > 0.
  uint64_t uniform(uint64_t bound);
};

// xoshiro256** seeded through splitmix64: fast, small state, good statistical quality.
class FastRandom final : public Random {
 public:
  explicit FastRandom(uint64_t seed);
  uint64_t next_u64() override;

 private:
  uint64_t s_[4];
};

// Replays a fixed sequence (wrapping around), for tests.
class ScriptedRandom final : public Random {
 public:
  explicit ScriptedRandom(std::vector<uint64_t> values) : values_(std::move(values)) {}
  uint64_t next_u64() override { return values_[next_++ % values_.size()]; }

 private:
  std::vector<uint64_t> values_;
  size_t next_ = 0;
};

// A seed from the OS, for production start-up (logged so a run can be replayed).
uint64_t os_seed();

// 32 lowercase hex characters (128 random bits): request ids.
inline constexpr size_t kHexIdLength = 32;
void random_hex_id(Random& random, char (&out)[kHexIdLength]);
std::string random_hex_id(Random& random);

}  // namespace sluice::core
