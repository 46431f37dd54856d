#include "core/random.h"

#include <gtest/gtest.h>

#include <set>

namespace sluice::core {
namespace {

TEST(FastRandom, SameSeedSameSequence) {
  FastRandom a(42), b(42), c(43);
  for (int i = 0; i < 100; ++i) {
    uint64_t va = a.next_u64();
    EXPECT_EQ(va, b.next_u64()) << "step " << i;
    EXPECT_NE(va, c.next_u64()) << "step " << i;
  }
}

TEST(Random, UniformStaysInBound) {
  FastRandom r(7);
  std::set<uint64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    uint64_t v = r.uniform(5);
    ASSERT_LT(v, 5u);
    seen.insert(v);
  }
  EXPECT_EQ(seen.size(), 5u);
}

TEST(Random, HexIdIs32LowercaseHexChars) {
  ScriptedRandom r({0x0123456789abcdefULL, 0xfedcba9876543210ULL});
  std::string id = random_hex_id(r);
  EXPECT_EQ(id, "fedcba98765432100123456789abcdef");
}

}  // namespace
}  // namespace sluice::core
