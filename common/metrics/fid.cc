#include "common/metrics/fid.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"

namespace cellflux {
namespace {

// Symmetric PSD square root via eigh; round-off negatives clamped to 0.
torch::Tensor SqrtPsd(const torch::Tensor& a) {
  torch::Tensor sym = 0.5 * (a + a.transpose(0, 1));
  auto [evals, evecs] = torch::linalg_eigh(sym, "L");
  torch::Tensor root = evals.clamp_min(0).sqrt();
  return torch::matmul(evecs * root.unsqueeze(0), evecs.transpose(0, 1));
}

}  // namespace

absl::StatusOr<FeatureStats> ComputeFeatureStats(const torch::Tensor& features) {
  if (features.dim() != 2 || features.size(0) < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature statistics need [N >= 2, D] features, got ",
                     features.dim() == 2 ? absl::StrCat("N=", features.size(0))
                                         : absl::StrCat("rank ", features.dim())));
  }
  torch::Tensor f = features.to(torch::kFloat64).cpu();
  FeatureStats s;
  s.mean = f.mean(0);
  torch::Tensor c = f - s.mean.unsqueeze(0);
  s.cov = torch::matmul(c.transpose(0, 1), c) / static_cast<double>(f.size(0) - 1);
  return s;
}

double TraceSqrtProduct(const torch::Tensor& a, const torch::Tensor& b) {
  torch::Tensor ra = SqrtPsd(a.to(torch::kFloat64));
  torch::Tensor m = torch::matmul(torch::matmul(ra, b.to(torch::kFloat64)), ra);
  m = 0.5 * (m + m.transpose(0, 1));
  torch::Tensor evals = torch::linalg_eigvalsh(m, "L");
  return evals.clamp_min(0).sqrt().sum().item<double>();
}

absl::StatusOr<double> FrechetDistance(const FeatureStats& a, const FeatureStats& b) {
  if (a.mean.sizes() != b.mean.sizes() || a.cov.sizes() != b.cov.sizes()) {
    return absl::InvalidArgumentError(absl::StrCat("FID: feature dimensions differ (",
                                                   a.mean.size(0), " vs ", b.mean.size(0), ")"));
  }
  double diff = (a.mean - b.mean).pow(2).sum().item<double>();
  double tr = a.cov.trace().item<double>() + b.cov.trace().item<double>();
  double fid = diff + tr - 2.0 * TraceSqrtProduct(a.cov, b.cov);
  if (!std::isfinite(fid))
    return absl::InternalError("FID is not finite (features contain NaN/Inf?)");
  return std::max(fid, 0.0);
}

absl::StatusOr<KidResult> KernelInceptionDistance(const torch::Tensor& a, const torch::Tensor& b,
                                                  int64_t subset_size, int64_t num_subsets,
                                                  uint64_t seed) {
  if (a.dim() != 2 || b.dim() != 2 || a.size(1) != b.size(1)) {
    return absl::InvalidArgumentError("KID: features must be [N, D] with the same D");
  }
  const int64_t m = std::min({subset_size, a.size(0), b.size(0)});
  if (m < 2)
    return absl::InvalidArgumentError(
        absl::StrCat("KID needs at least 2 samples per set, got ", m));
  torch::Tensor x = a.to(torch::kFloat64).cpu(), y = b.to(torch::kFloat64).cpu();
  const double d = static_cast<double>(a.size(1));
  std::mt19937_64 rng(seed);
  std::vector<double> values;
  auto subset = [&](int64_t n) {
    std::vector<int64_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::shuffle(idx.begin(), idx.end(), rng);
    idx.resize(m);
    return torch::tensor(idx, torch::kInt64);
  };
  for (int64_t s = 0; s < num_subsets; ++s) {
    torch::Tensor xs = x.index_select(0, subset(x.size(0)));
    torch::Tensor ys = y.index_select(0, subset(y.size(0)));
    torch::Tensor kxx = (torch::matmul(xs, xs.t()) / d + 1).pow(3);
    torch::Tensor kyy = (torch::matmul(ys, ys.t()) / d + 1).pow(3);
    torch::Tensor kxy = (torch::matmul(xs, ys.t()) / d + 1).pow(3);
    double sxx = (kxx.sum() - kxx.diagonal().sum()).item<double>() / (m * (m - 1));
    double syy = (kyy.sum() - kyy.diagonal().sum()).item<double>() / (m * (m - 1));
    double sxy = kxy.sum().item<double>() / (m * m);
    values.push_back(sxx + syy - 2 * sxy);
  }
  KidResult r;
  for (double v : values) r.mean += v;
  r.mean /= values.size();
  for (double v : values) r.std += (v - r.mean) * (v - r.mean);
  r.std = std::sqrt(r.std / values.size());
  return r;
}

}  // namespace cellflux
