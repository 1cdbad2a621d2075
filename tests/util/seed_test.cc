// common/util/seed.h: the one SplitMix64 every deterministic stream is built from.
#include "common/util/seed.h"

#include <gtest/gtest.h>

#include <set>

namespace cellflux {
namespace {

TEST(SeedTest, SplitMix64MatchesTheReferenceImplementation) {
  // First outputs of Vigna's splitmix64.c seeded with 0 and with 1234567.
  SplitMix64 zero(0);
  EXPECT_EQ(zero.Next(), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(zero.Next(), 0x6E789E6AA1B965F4ULL);
  EXPECT_EQ(zero.Next(), 0x06C45D188009454FULL);
  SplitMix64 other(1234567);
  EXPECT_EQ(other.Next(), 6457827717110365317ULL);
  EXPECT_EQ(other.Next(), 3203168211198807973ULL);
  EXPECT_EQ(SplitMix64Hash(0), 0xE220A8397B1DCDAFULL);
}

TEST(SeedTest, MixSeedsKeepsTheFormulaGoldenDataWasMadeWith) {
  // dataset.cc's Mix(Mix(a) ^ b) before the helper existed; the split and training crops of the
  // repository's fixtures depend on it.
  auto old_mix = [](uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
  };
  for (uint64_t a : {0ull, 1ull, 42ull, ~0ull}) {
    for (uint64_t b : {0ull, 7ull, 1ull << 40}) {
      EXPECT_EQ(MixSeeds(a, b), old_mix(old_mix(a) ^ b)) << a << " " << b;
    }
  }
}

TEST(SeedTest, EveryBitOfTheSeedCounts) {
  std::set<uint64_t> seen;
  const uint64_t s = 12345;
  for (int bit = 0; bit < 64; ++bit) {
    seen.insert(SplitMix64Hash(s ^ (uint64_t{1} << bit)));
    seen.insert(MixSeeds(s ^ (uint64_t{1} << bit), 3));
  }
  EXPECT_EQ(seen.size(), 128u);
  EXPECT_NE(SplitMix64Hash(s), SplitMix64Hash(s + (uint64_t{1} << 32)));
}

}  // namespace
}  // namespace cellflux
