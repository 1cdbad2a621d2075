// Seeds and the one 64-bit mixer every deterministic stream in cellflux is built from: SplitMix64
// (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014; the
// finaliser is Stafford's "Mix13"). Header-only and LibTorch-free.
//
//   SplitMix64 rng(seed);  rng.Next();       // the generator: state += γ, then Finalize
//   SplitMix64Finalize(z)                    // the bijective 64-bit mix alone
//   MixSeeds(a, b)                           // two seeds → one well-mixed seed
//
// Every function uses all 64 bits of its inputs: seeds that differ in any bit (s and s + 2³², say)
// give unrelated outputs. The constants are part of the repository's golden data (synthetic
// datasets, splits, training batches): changing them changes every generated file.
#ifndef CELLFLUX_COMMON_UTIL_SEED_H_
#define CELLFLUX_COMMON_UTIL_SEED_H_

#include <cstdint>

namespace cellflux {

// γ, the golden-ratio increment of SplitMix64 (2⁶⁴/φ, odd).
inline constexpr uint64_t kSplitMix64Gamma = 0x9E3779B97F4A7C15ULL;

// The SplitMix64 output function: a bijection of the 64-bit integers with full avalanche.
constexpr uint64_t SplitMix64Finalize(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// The SplitMix64 generator: tiny, seedable, identical on every platform.
class SplitMix64 {
 public:
  explicit constexpr SplitMix64(uint64_t seed) : state_(seed) {}
  constexpr uint64_t Next() { return SplitMix64Finalize(state_ += kSplitMix64Gamma); }

 private:
  uint64_t state_;
};

// One SplitMix64 step from `x`: the first output of SplitMix64(x).
constexpr uint64_t SplitMix64Hash(uint64_t x) { return SplitMix64Finalize(x + kSplitMix64Gamma); }

// Combines two seeds into one well-mixed seed: nearby inputs (consecutive epochs, pair ids) give
// unrelated outputs.
constexpr uint64_t MixSeeds(uint64_t a, uint64_t b) {
  return SplitMix64Hash(SplitMix64Hash(a) ^ b);
}

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_UTIL_SEED_H_
