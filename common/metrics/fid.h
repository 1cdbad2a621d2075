// FID and KID between two sets of image features (paper §4.1; DESIGN.md §7).
//
// FID = |μ₁−μ₂|² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½). The trace of the matrix square root is computed as
// Σᵢ √λᵢ of the symmetric PSD matrix Σ₁^½ Σ₂ Σ₁^½ (same eigenvalues as Σ₁Σ₂), with both
// square roots from symmetric eigendecompositions in float64 and negative round-off eigenvalues
// clamped to 0 — no complex parts to discard, unlike scipy.linalg.sqrtm on the non-symmetric
// product. KID: unbiased MMD² with the cubic polynomial kernel k(x,y) = (x·y/d + 1)³, averaged
// over random subsets (Bińkowski et al. 2018), reported ×100 by callers as in the paper.
#ifndef CELLFLUX_COMMON_METRICS_FID_H_
#define CELLFLUX_COMMON_METRICS_FID_H_

#include <torch/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace cellflux {

struct FeatureStats {
  torch::Tensor mean;  // [D] float64
  torch::Tensor cov;   // [D, D] float64 (unbiased, like numpy.cov)
};

// features: [N, D], N ≥ 2.
absl::StatusOr<FeatureStats> ComputeFeatureStats(const torch::Tensor& features);

// Trace of the square root of a·b for symmetric PSD a, b ([D, D]).
double TraceSqrtProduct(const torch::Tensor& a, const torch::Tensor& b);

absl::StatusOr<double> FrechetDistance(const FeatureStats& a, const FeatureStats& b);

struct KidResult {
  double mean = 0;  // MMD² (not ×100)
  double std = 0;
};

// Unbiased MMD² over `num_subsets` subsets of min(subset_size, N_a, N_b) rows, seeded.
absl::StatusOr<KidResult> KernelInceptionDistance(const torch::Tensor& a, const torch::Tensor& b,
                                                  int64_t subset_size = 1000,
                                                  int64_t num_subsets = 100, uint64_t seed = 0);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_METRICS_FID_H_
