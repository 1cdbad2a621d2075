#include "common/models/normalization.h"

#include <torch/torch.h>

namespace cellflux {
namespace {

// Per-channel (low, high) as [1, C, 1, 1] tensors on x's device.
std::pair<torch::Tensor, torch::Tensor> Range(const torch::Tensor& x,
                                              const ImageNormalization& norm) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(x.device());
  const int64_t c = x.size(1);
  if (norm.method == "percentile") {
    torch::Tensor lo = torch::tensor(std::vector<float>(norm.low.begin(), norm.low.end()), opts);
    torch::Tensor hi = torch::tensor(std::vector<float>(norm.high.begin(), norm.high.end()), opts);
    return {lo.view({1, c, 1, 1}), hi.view({1, c, 1, 1})};
  }
  return {torch::zeros({1, c, 1, 1}, opts), torch::full({1, c, 1, 1}, norm.scale, opts)};
}

}  // namespace

torch::Tensor NormalizeImages(const torch::Tensor& raw, const ImageNormalization& norm) {
  torch::Tensor x = raw.to(torch::kFloat32);
  auto [lo, hi] = Range(x, norm);
  // x: [N, C, H, W] → (x - lo) / (hi - lo) ∈ [0, 1] → [-1, 1]
  return ((x - lo) / (hi - lo)).clamp(0.0, 1.0) * 2.0 - 1.0;
}

torch::Tensor DenormalizeImages(const torch::Tensor& x, const ImageNormalization& norm) {
  torch::Tensor y = x.to(torch::kFloat32);
  auto [lo, hi] = Range(y, norm);
  torch::Tensor raw = (y.clamp(-1.0, 1.0) + 1.0) * 0.5 * (hi - lo) + lo;
  return raw.round();
}

torch::Tensor CenterCrop(const torch::Tensor& x, int64_t size) {
  const int64_t h = x.size(-2), w = x.size(-1);
  if (h == size && w == size) return x;
  const int64_t top = (h - size) / 2, left = (w - size) / 2;
  return x.narrow(-2, top, size).narrow(-1, left, size);
}

}  // namespace cellflux
