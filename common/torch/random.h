// CPU random generators seeded with all 64 bits of a seed.
//
// LibTorch's CPUGeneratorImpl(seed) initialises its Mersenne Twister from the low 32 bits of the
// seed only (at::mt19937::init_with_uint32), so seeds s and s + 2³² draw identical numbers. Here
// the generator's whole 624-word state comes from a SplitMix64 stream over the 64-bit seed
// (common/util/seed.h), so every bit of the seed counts and nearby seeds give unrelated streams.
#ifndef CELLFLUX_COMMON_TORCH_RANDOM_H_
#define CELLFLUX_COMMON_TORCH_RANDOM_H_

#include <ATen/core/Generator.h>

#include <cstdint>

namespace cellflux {

// A fresh CPU generator whose stream is a function of all 64 bits of `seed`. Deterministic on
// every platform; current_seed() reports `seed`.
at::Generator MakeCpuGenerator(uint64_t seed);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_TORCH_RANDOM_H_
