#include "common/models/vae_blocks.h"

#include <torch/torch.h>

namespace cellflux {
namespace {

namespace F = torch::nn::functional;

torch::nn::GroupNorm Norm(int groups, int channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(kVaeNormEps));
}

torch::nn::Conv2d Conv(int in, int out, int kernel, int stride = 1, int padding = 0) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding));
}

// norm(x). A bfloat16/half x on the CPU is normalised in float32: LibTorch 1.13's CPU kernel
// accumulates the statistics in the input's dtype (a bf16 decode of the untrained tiny VAE was off
// by 0.34 on average, 0.005 this way). CUDA's kernels accumulate in float32 already, and float32
// goes straight through the module's own forward.
torch::Tensor Normalize(torch::nn::GroupNorm& norm, const torch::Tensor& x) {
  if (x.is_cuda() || (x.scalar_type() != torch::kBFloat16 && x.scalar_type() != torch::kHalf)) {
    return norm->forward(x);
  }
  const auto& o = norm->options;
  return torch::group_norm(x.to(torch::kFloat32), o.num_groups(), norm->weight.to(torch::kFloat32),
                           norm->bias.to(torch::kFloat32), o.eps())
      .to(x.scalar_type());
}

// Runs every module of `list` in order; they all map one tensor to one tensor.
template <typename Impl>
torch::Tensor RunAll(const torch::nn::ModuleList& list, torch::Tensor x) {
  for (const auto& m : *list) x = m->as<Impl>()->forward(x);
  return x;
}

}  // namespace

VaeResnetBlockImpl::VaeResnetBlockImpl(int in_channels, int out_channels, int groups)
    : norm1_(register_module("norm1", Norm(groups, in_channels))),
      conv1_(register_module("conv1", Conv(in_channels, out_channels, 3, 1, 1))),
      norm2_(register_module("norm2", Norm(groups, out_channels))),
      conv2_(register_module("conv2", Conv(out_channels, out_channels, 3, 1, 1))) {
  if (in_channels != out_channels) {
    conv_shortcut_ = register_module("conv_shortcut", Conv(in_channels, out_channels, 1));
  }
}

torch::Tensor VaeResnetBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = conv1_->forward(torch::silu(Normalize(norm1_, x)));  // h: [N, Cout, H, W]
  h = conv2_->forward(torch::silu(Normalize(norm2_, h)));
  torch::Tensor shortcut = conv_shortcut_ ? conv_shortcut_->forward(x) : x;
  return shortcut + h;
}

VaeDownsampleImpl::VaeDownsampleImpl(int channels)
    : conv_(register_module("conv", Conv(channels, channels, 3, /*stride=*/2, /*padding=*/0))) {}

torch::Tensor VaeDownsampleImpl::forward(const torch::Tensor& x) {
  // Right/bottom only, so the stride-2 windows start at pixel 0 (the SD VAE's convention).
  torch::Tensor padded = F::pad(x, F::PadFuncOptions({0, 1, 0, 1}).mode(torch::kConstant).value(0));
  return conv_->forward(padded);  // [N, C, H/2, W/2]
}

VaeUpsampleImpl::VaeUpsampleImpl(int channels)
    : conv_(register_module("conv", Conv(channels, channels, 3, 1, 1))) {}

torch::Tensor VaeUpsampleImpl::forward(const torch::Tensor& x) {
  torch::Tensor up = F::interpolate(x, F::InterpolateFuncOptions()
                                           .scale_factor(std::vector<double>{2.0, 2.0})
                                           .mode(torch::kNearest));
  return conv_->forward(up);  // [N, C, 2H, 2W]
}

VaeAttentionImpl::VaeAttentionImpl(int channels, int groups)
    : group_norm_(register_module("group_norm", Norm(groups, channels))),
      to_q_(register_module("to_q", torch::nn::Linear(channels, channels))),
      to_k_(register_module("to_k", torch::nn::Linear(channels, channels))),
      to_v_(register_module("to_v", torch::nn::Linear(channels, channels))),
      to_out_(register_module("to_out",
                              torch::nn::ModuleList(torch::nn::Linear(channels, channels)))) {}

torch::Tensor VaeAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  torch::Tensor t = Normalize(group_norm_, x).reshape({n, c, h * w}).transpose(1, 2);  // [N, L, C]
  torch::Tensor q = to_q_->forward(t);                                                 // [N, L, C]
  torch::Tensor k = to_k_->forward(t);
  torch::Tensor v = to_v_->forward(t);
  // One head of width C: [N, 1, L, C] each; the scale is the default 1/√C.
  torch::Tensor out = ScaledDotProductAttention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1),
                                                attention_kernel())
                          .squeeze(1);  // [N, L, C]
  out = to_out_[0]->as<torch::nn::LinearImpl>()->forward(out);
  out = out.transpose(1, 2).reshape({n, c, h, w});  // [N, C, H, W]
  return out + x;
}

VaeMidBlockImpl::VaeMidBlockImpl(int channels, int groups, bool attention)
    : resnets_(register_module("resnets",
                               torch::nn::ModuleList(VaeResnetBlock(channels, channels, groups),
                                                     VaeResnetBlock(channels, channels, groups)))) {
  if (attention) {
    attentions_ =
        register_module("attentions", torch::nn::ModuleList(VaeAttention(channels, groups)));
  }
}

torch::Tensor VaeMidBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = resnets_[0]->as<VaeResnetBlockImpl>()->forward(x);
  if (attentions_) h = attentions_[0]->as<VaeAttentionImpl>()->forward(h);
  return resnets_[1]->as<VaeResnetBlockImpl>()->forward(h);
}

VaeResampleBlockImpl::VaeResampleBlockImpl(Kind kind, int in_channels, int out_channels, int layers,
                                           int groups, bool resample)
    : resnets_(register_module("resnets", torch::nn::ModuleList())) {
  for (int j = 0; j < layers; ++j) {
    resnets_->push_back(VaeResnetBlock(j == 0 ? in_channels : out_channels, out_channels, groups));
  }
  if (resample) {
    if (kind == Kind::kDown) {
      resamplers_ =
          register_module("downsamplers", torch::nn::ModuleList(VaeDownsample(out_channels)));
    } else {
      resamplers_ = register_module("upsamplers", torch::nn::ModuleList(VaeUpsample(out_channels)));
    }
  }
}

torch::Tensor VaeResampleBlockImpl::forward(torch::Tensor x) {
  x = RunAll<VaeResnetBlockImpl>(resnets_, x);  // [N, Cout, H, W]
  if (!resamplers_) return x;
  if (auto* down = resamplers_[0]->as<VaeDownsampleImpl>()) return down->forward(x);
  return resamplers_[0]->as<VaeUpsampleImpl>()->forward(x);
}

VaeEncoderImpl::VaeEncoderImpl(const VaeConfig& config) {
  const std::vector<int>& widths = config.block_out_channels;
  const int groups = config.norm_num_groups;
  conv_in_ = register_module("conv_in", Conv(config.in_channels, widths.front(), 3, 1, 1));
  down_blocks_ = register_module("down_blocks", torch::nn::ModuleList());
  int in = widths.front();
  for (size_t i = 0; i < widths.size(); ++i) {
    const bool last = i + 1 == widths.size();
    down_blocks_->push_back(VaeResampleBlock(VaeResampleBlockImpl::Kind::kDown, in, widths[i],
                                             config.layers_per_block, groups, /*resample=*/!last));
    in = widths[i];
  }
  mid_block_ =
      register_module("mid_block", VaeMidBlock(widths.back(), groups, config.mid_block_attention));
  conv_norm_out_ = register_module("conv_norm_out", Norm(groups, widths.back()));
  conv_out_ = register_module("conv_out", Conv(widths.back(), 2 * config.latent_channels, 3, 1, 1));
}

torch::Tensor VaeEncoderImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = conv_in_->forward(x);             // [N, C0, H, W]
  h = RunAll<VaeResampleBlockImpl>(down_blocks_, h);  // [N, C_last, H/f, W/f]
  h = mid_block_->forward(h);
  return conv_out_->forward(torch::silu(Normalize(conv_norm_out_, h)));  // [N, 2L, H/f, W/f]
}

VaeDecoderImpl::VaeDecoderImpl(const VaeConfig& config) {
  std::vector<int> widths(config.block_out_channels.rbegin(), config.block_out_channels.rend());
  const int groups = config.norm_num_groups;
  conv_in_ = register_module("conv_in", Conv(config.latent_channels, widths.front(), 3, 1, 1));
  mid_block_ =
      register_module("mid_block", VaeMidBlock(widths.front(), groups, config.mid_block_attention));
  up_blocks_ = register_module("up_blocks", torch::nn::ModuleList());
  int in = widths.front();
  for (size_t i = 0; i < widths.size(); ++i) {
    const bool last = i + 1 == widths.size();
    up_blocks_->push_back(VaeResampleBlock(VaeResampleBlockImpl::Kind::kUp, in, widths[i],
                                           config.layers_per_block + 1, groups,
                                           /*resample=*/!last));
    in = widths[i];
  }
  conv_norm_out_ = register_module("conv_norm_out", Norm(groups, widths.back()));
  conv_out_ = register_module("conv_out", Conv(widths.back(), config.out_channels, 3, 1, 1));
}

torch::Tensor VaeDecoderImpl::forward(const torch::Tensor& z) {
  torch::Tensor h = conv_in_->forward(z);  // [N, C_last, h, w]
  h = mid_block_->forward(h);
  h = RunAll<VaeResampleBlockImpl>(up_blocks_, h);  // [N, C0, h·f, w·f]
  return conv_out_->forward(
      torch::silu(Normalize(conv_norm_out_, h)));  // [N, out_channels, h·f, w·f]
}

}  // namespace cellflux
