#include "common/models/attention.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace cellflux {
namespace {

#if TORCH_VERSION_MAJOR >= 2
constexpr bool kFusedIsDefault = true;
#else
constexpr bool kFusedIsDefault = false;
#endif

torch::Tensor FusedAttention(const torch::Tensor& q, const torch::Tensor& k,
                             const torch::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v);
#else
  return std::get<0>(at::_scaled_dot_product_attention(q, k, v));
#endif
}

torch::Tensor MathAttention(const torch::Tensor& q, const torch::Tensor& k,
                            const torch::Tensor& v) {
  const int64_t b = q.size(0), h = q.size(1), l = q.size(2), d = q.size(3), lk = k.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  // Views when the heads are contiguous (the SiT makes them so); bmm reads kᵀ through strides.
  torch::Tensor q3 = q.reshape({b * h, l, d}), k3 = k.reshape({b * h, lk, d});
  torch::Tensor v3 = v.reshape({b * h, lk, v.size(3)});
  // scores = scale · q kᵀ in one BLAS call (beta = 0 ignores the uninitialised input).
  torch::Tensor scores = torch::baddbmm(torch::empty({b * h, l, lk}, q.options()), q3,
                                        k3.transpose(1, 2), /*beta=*/0.0, /*alpha=*/scale);
  const bool reduced = q.scalar_type() == torch::kBFloat16 || q.scalar_type() == torch::kHalf;
  torch::Tensor attn = reduced ? torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type())
                               : torch::softmax(scores, -1);  // [B·H, L, Lk]
  return torch::bmm(attn, v3).view({b, h, l, v.size(3)});     // [B, H, L, d]
}

}  // namespace

bool FusedAttentionIsDefault() { return kFusedIsDefault; }

absl::StatusOr<AttentionKernel> ParseAttentionKernel(const std::string& name) {
  if (name == "default") return AttentionKernel::kDefault;
  if (name == "math") return AttentionKernel::kMath;
  if (name == "fused") return AttentionKernel::kFused;
  return absl::InvalidArgumentError(
      absl::StrCat("attention kernel '", name, "': expected default, math or fused"));
}

std::string AttentionKernelName(AttentionKernel kernel) {
  switch (kernel) {
    case AttentionKernel::kDefault:
      return "default";
    case AttentionKernel::kMath:
      return "math";
    case AttentionKernel::kFused:
      return "fused";
  }
  return "unknown";
}

torch::Tensor ScaledDotProductAttention(const torch::Tensor& q, const torch::Tensor& k,
                                        const torch::Tensor& v, AttentionKernel kernel) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
              "ScaledDotProductAttention: q, k, v must be [B, H, L, d], got ", q.sizes(), ", ",
              k.sizes(), ", ", v.sizes());
  if (kernel == AttentionKernel::kDefault) {
    kernel = kFusedIsDefault ? AttentionKernel::kFused : AttentionKernel::kMath;
  }
  return kernel == AttentionKernel::kFused ? FusedAttention(q, k, v) : MathAttention(q, k, v);
}

int SetAttentionKernel(torch::nn::Module& root, AttentionKernel kernel) {
  int count = 0;
  for (const auto& m : root.modules(/*include_self=*/true)) {
    if (auto* setting = dynamic_cast<AttentionKernelSetting*>(m.get())) {
      setting->set_attention_kernel(kernel);
      ++count;
    }
  }
  return count;
}

}  // namespace cellflux
