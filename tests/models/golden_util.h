// Shared by the golden-output tests of tests/models/: where the PyTorch reference files live,
// loading them, and the max-abs-difference measure they are compared with.
#ifndef CELLFLUX_TESTS_MODELS_GOLDEN_UTIL_H_
#define CELLFLUX_TESTS_MODELS_GOLDEN_UTIL_H_

#include <torch/torch.h>

#include <string>

#include "common/torch/tensors.h"
#include "gtest/gtest.h"

namespace cellflux::testing {

// Relative to the source root (CTest runs tests there).
inline constexpr char kGoldenDir[] = "tests/models/golden/";

// kGoldenDir + name; an unreadable file fails the test and gives an empty map.
inline TensorMap LoadGolden(const std::string& name) {
  absl::StatusOr<TensorMap> m = LoadSafetensors(std::string(kGoldenDir) + name);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : TensorMap{};
}

// max |a − b| in float64; differing shapes fail the test.
inline double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace cellflux::testing

#endif  // CELLFLUX_TESTS_MODELS_GOLDEN_UTIL_H_
