// softmax(q·kᵀ/√d)·v for the SiT's attention and the VAE's mid-block attention, through one of
// two kernels (issue 17):
//
//   kMath   the hand-written path: scores = q·kᵀ/√d materialised by one baddbmm, softmax, bmm.
//           Softmax runs in float32 when the inputs are bfloat16/half. Bit-identical to what the
//           SiT and the VAE ran before the switch existed (the fp32 reference-parity tests).
//   kFused  at::scaled_dot_product_attention on LibTorch >= 2.0: ATen picks a flash,
//           memory-efficient or cuDNN kernel on CUDA when the shapes and dtypes allow it (the
//           scores are never materialised), else its math fallback. On LibTorch 1.13, which has
//           no public SDPA, the private at::_scaled_dot_product_attention (its math composite) —
//           there only so that the switch and its parity test run on this CPU build.
//   kDefault  kFused where LibTorch >= 2.0 (kFusedIsDefault), kMath on 1.13.
//
// Both use the default scale 1/√d (d = the last dim of q), which is what the SiT (timm Attention)
// and the VAE (one head of width C) use.
#ifndef CELLFLUX_COMMON_MODELS_ATTENTION_H_
#define CELLFLUX_COMMON_MODELS_ATTENTION_H_

#include <torch/nn/module.h>
#include <torch/types.h>

#include <string>

#include "absl/status/statusor.h"

namespace cellflux {

enum class AttentionKernel { kDefault, kMath, kFused };

// Whether kDefault means kFused in this build (LibTorch >= 2.0).
bool FusedAttentionIsDefault();

// "default", "math" or "fused"; INVALID_ARGUMENT naming the value otherwise.
absl::StatusOr<AttentionKernel> ParseAttentionKernel(const std::string& name);
std::string AttentionKernelName(AttentionKernel kernel);

// q, k, v: [B, H, L, d] (any strides, one dtype and device) → [B, H, L, d].
torch::Tensor ScaledDotProductAttention(const torch::Tensor& q, const torch::Tensor& k,
                                        const torch::Tensor& v, AttentionKernel kernel);

// Held by every module that runs attention (the SiT's Attention, the VAE's VaeAttention), so one
// call switches a whole model. Not synchronised: set it before concurrent forwards start.
class AttentionKernelSetting {
 public:
  virtual ~AttentionKernelSetting() = default;
  void set_attention_kernel(AttentionKernel kernel) { attention_kernel_ = kernel; }
  AttentionKernel attention_kernel() const { return attention_kernel_; }

 private:
  AttentionKernel attention_kernel_ = AttentionKernel::kDefault;
};

// Sets `kernel` on `root` and every submodule holding an AttentionKernelSetting; returns how many.
int SetAttentionKernel(torch::nn::Module& root, AttentionKernel kernel);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_MODELS_ATTENTION_H_
