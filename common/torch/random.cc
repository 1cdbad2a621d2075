#include "common/torch/random.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/MT19937RNGEngine.h>

#include "common/util/seed.h"

namespace cellflux {

at::Generator MakeCpuGenerator(uint64_t seed) {
  at::mt19937 engine(seed);  // sets the bookkeeping; its 32-bit-seeded state is replaced below
  at::mt19937_data_pod data = engine.data();
  SplitMix64 words(seed);
  for (size_t i = 0; i < data.state_.size(); i += 2) {
    const uint64_t w = words.Next();
    data.state_[i] = static_cast<uint32_t>(w);
    if (i + 1 < data.state_.size()) data.state_[i + 1] = static_cast<uint32_t>(w >> 32);
  }
  data.left_ = 1;  // regenerate (twist) before the first draw, as a freshly seeded engine does
  data.next_ = 0;
  engine.set_data(data);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  gen.get<at::CPUGeneratorImpl>()->set_engine(engine);
  return gen;
}

}  // namespace cellflux
