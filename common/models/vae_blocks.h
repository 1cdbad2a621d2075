// Building blocks of the Stable-Diffusion AutoencoderKL, with diffusers' parameter names so a
// diffusers `vae/diffusion_pytorch_model.safetensors` loads by name (see vae.h for the whole model).
//
// Semantics follow diffusers (models/resnet.py, downsampling.py, upsampling.py,
// attention_processor.py, autoencoders/vae.py) for the configuration the SD VAE uses: no time
// embedding, GroupNorm eps 1e-6, SiLU, output scale 1, no dropout at inference.
//
//   VaeResnetBlock   norm1, conv1, norm2, conv2, [conv_shortcut when channels change]
//   VaeDownsample    conv            (zero pad right/bottom by 1, 3×3 stride 2, no padding)
//   VaeUpsample      conv            (nearest ×2, 3×3 padding 1)
//   VaeAttention     group_norm, to_q, to_k, to_v, to_out.0   (single head, residual)
//   VaeMidBlock      resnets.{0,1}, [attentions.0]
//   VaeEncoder       conv_in, down_blocks.i.{resnets.j, downsamplers.0}, mid_block,
//                    conv_norm_out, conv_out (2 × latent channels: mean and logvar)
//   VaeDecoder       conv_in, mid_block, up_blocks.i.{resnets.j, upsamplers.0},
//                    conv_norm_out, conv_out
//
// All blocks take and return NCHW float tensors on the module's device.
#ifndef CELLFLUX_COMMON_MODELS_VAE_BLOCKS_H_
#define CELLFLUX_COMMON_MODELS_VAE_BLOCKS_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include "common/models/attention.h"
#include "common/models/config.h"

namespace cellflux {

// GroupNorm eps used throughout the SD VAE.
inline constexpr double kVaeNormEps = 1e-6;

// Pre-activation residual block: x + conv2(silu(norm2(conv1(silu(norm1(x)))))), with a 1×1
// conv_shortcut on x when in_channels != out_channels.
class VaeResnetBlockImpl : public torch::nn::Module {
 public:
  VaeResnetBlockImpl(int in_channels, int out_channels, int groups);
  // x: [N, Cin, H, W] -> [N, Cout, H, W]
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::GroupNorm norm1_{nullptr};
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::GroupNorm norm2_{nullptr};
  torch::nn::Conv2d conv2_{nullptr};
  torch::nn::Conv2d conv_shortcut_{nullptr};  // null when channels are unchanged
};
TORCH_MODULE(VaeResnetBlock);

// Downsample2D(use_conv, padding=0): asymmetric zero pad (0,1,0,1), then 3×3 stride-2 conv.
class VaeDownsampleImpl : public torch::nn::Module {
 public:
  explicit VaeDownsampleImpl(int channels);
  // x: [N, C, H, W] -> [N, C, H/2, W/2]
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d conv_{nullptr};
};
TORCH_MODULE(VaeDownsample);

// Upsample2D(use_conv): nearest-neighbour ×2, then 3×3 conv (padding 1).
class VaeUpsampleImpl : public torch::nn::Module {
 public:
  explicit VaeUpsampleImpl(int channels);
  // x: [N, C, H, W] -> [N, C, 2H, 2W]
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d conv_{nullptr};
};
TORCH_MODULE(VaeUpsample);

// diffusers Attention with one head of width C over the H·W positions: GroupNorm, q/k/v linear
// maps, softmax(q kᵀ / √C) v, to_out.0, plus the residual (rescale factor 1). The softmax(q kᵀ) v
// runs through the kernel its AttentionKernelSetting names (common/models/attention.h).
class VaeAttentionImpl : public torch::nn::Module, public AttentionKernelSetting {
 public:
  VaeAttentionImpl(int channels, int groups);
  // x: [N, C, H, W] -> [N, C, H, W]
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::GroupNorm group_norm_{nullptr};
  torch::nn::Linear to_q_{nullptr};
  torch::nn::Linear to_k_{nullptr};
  torch::nn::Linear to_v_{nullptr};
  torch::nn::ModuleList to_out_{
      nullptr};  // [0] = Linear (diffusers' [1] is a parameterless Dropout)
};
TORCH_MODULE(VaeAttention);

// UNetMidBlock2D without time embedding: resnets.0, [attentions.0], resnets.1.
class VaeMidBlockImpl : public torch::nn::Module {
 public:
  VaeMidBlockImpl(int channels, int groups, bool attention);
  // x: [N, C, H, W] -> [N, C, H, W]
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::ModuleList resnets_{nullptr};
  torch::nn::ModuleList attentions_{nullptr};  // null without mid-block attention
};
TORCH_MODULE(VaeMidBlock);

// DownEncoderBlock2D / UpDecoderBlock2D: `layers` resnets, then an optional resampler registered
// as downsamplers.0 / upsamplers.0.
class VaeResampleBlockImpl : public torch::nn::Module {
 public:
  enum class Kind { kDown, kUp };
  VaeResampleBlockImpl(Kind kind, int in_channels, int out_channels, int layers, int groups,
                       bool resample);
  // x: [N, Cin, H, W] -> [N, Cout, H', W'] with H' = H/2 (down), 2H (up) or H (no resampler)
  torch::Tensor forward(torch::Tensor x);

 private:
  torch::nn::ModuleList resnets_{nullptr};
  torch::nn::ModuleList resamplers_{nullptr};  // null on the last block
};
TORCH_MODULE(VaeResampleBlock);

// Encoder: image [N, in_channels, H, W] -> moments [N, 2·latent_channels, H/f, W/f]
// (before quant_conv), f = config.downsample_factor().
class VaeEncoderImpl : public torch::nn::Module {
 public:
  explicit VaeEncoderImpl(const VaeConfig& config);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d conv_in_{nullptr};
  torch::nn::ModuleList down_blocks_{nullptr};
  VaeMidBlock mid_block_{nullptr};
  torch::nn::GroupNorm conv_norm_out_{nullptr};
  torch::nn::Conv2d conv_out_{nullptr};
};
TORCH_MODULE(VaeEncoder);

// Decoder: latent [N, latent_channels, h, w] (after post_quant_conv) -> image
// [N, out_channels, h·f, w·f]. Up blocks run over the reversed block_out_channels.
class VaeDecoderImpl : public torch::nn::Module {
 public:
  explicit VaeDecoderImpl(const VaeConfig& config);
  torch::Tensor forward(const torch::Tensor& z);

 private:
  torch::nn::Conv2d conv_in_{nullptr};
  VaeMidBlock mid_block_{nullptr};
  torch::nn::ModuleList up_blocks_{nullptr};
  torch::nn::GroupNorm conv_norm_out_{nullptr};
  torch::nn::Conv2d conv_out_{nullptr};
};
TORCH_MODULE(VaeDecoder);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_MODELS_VAE_BLOCKS_H_
