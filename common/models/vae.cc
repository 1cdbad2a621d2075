#include "common/models/vae.h"

#include <torch/torch.h>

#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace cellflux {
namespace {

// Older diffusers files (before the Attention refactor) name the mid-block attention maps
// query/key/value/proj_attn; the SD conversion scripts may also keep them as 1×1 convolutions.
constexpr std::pair<const char*, const char*> kOldAttentionNames[] = {
    {".query.", ".to_q."},
    {".key.", ".to_k."},
    {".value.", ".to_v."},
    {".proj_attn.", ".to_out.0."},
};

bool IsAttentionProjection(const std::string& name) {
  if (!absl::StrContains(name, ".attentions.") || !absl::EndsWith(name, ".weight")) return false;
  for (const char* p : {".to_q.", ".to_k.", ".to_v.", ".to_out.0."}) {
    if (absl::StrContains(name, p)) return true;
  }
  return false;
}

// Runs `fn` over [0, total) in slices of at most max_batch rows (all at once when max_batch <= 0)
// and concatenates the results on dim 0.
template <typename Fn>
torch::Tensor Chunked(const torch::Tensor& x, int64_t max_batch, Fn fn) {
  const int64_t total = x.size(0);
  if (max_batch <= 0 || max_batch >= total) return fn(x);
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < total; start += max_batch) {
    parts.push_back(fn(x.slice(0, start, std::min(total, start + max_batch))));
  }
  return torch::cat(parts, 0);
}

}  // namespace

int64_t WholeSampleChunk(int64_t max_batch, int64_t channels) {
  if (max_batch <= 0) return 0;
  return std::max<int64_t>(1, max_batch / channels) * channels;
}

torch::Tensor VaePosterior::Sample(at::Generator generator) const {
  torch::Tensor eps =
      torch::randn(mean.sizes(), generator,
                   torch::TensorOptions().dtype(mean.scalar_type()).device(generator.device()));
  return mean + torch::exp(0.5 * logvar) * eps.to(mean.device());
}

torch::Tensor KlDivergence(const torch::Tensor& mean, const torch::Tensor& logvar) {
  torch::Tensor per_element = mean.pow(2) + logvar.exp() - 1.0 - logvar;  // [N, ...]
  return 0.5 * per_element.flatten(1).sum(1);                             // [N]
}

torch::Tensor VaeTrainingLoss(const torch::Tensor& rec, const torch::Tensor& x,
                              const torch::Tensor& mean, const torch::Tensor& logvar,
                              double kl_weight, bool l1) {
  const torch::Tensor err = l1 ? (rec - x).abs() : (rec - x).pow(2);
  const double pixels = static_cast<double>(err[0].numel());
  const torch::Tensor per_sample = err.flatten(1).sum(1) + kl_weight * KlDivergence(mean, logvar);
  return per_sample.mean() / pixels;
}

AutoencoderKLImpl::AutoencoderKLImpl(const VaeConfig& config)
    : config_(config),
      encoder_(register_module("encoder", VaeEncoder(config))),
      decoder_(register_module("decoder", VaeDecoder(config))),
      quant_conv_(register_module("quant_conv",
                                  torch::nn::Conv2d(torch::nn::Conv2dOptions(
                                      2 * config.latent_channels, 2 * config.latent_channels, 1)))),
      post_quant_conv_(register_module("post_quant_conv",
                                       torch::nn::Conv2d(torch::nn::Conv2dOptions(
                                           config.latent_channels, config.latent_channels, 1)))) {}

VaePosterior AutoencoderKLImpl::Encode(const torch::Tensor& x) {
  const int64_t f = config_.downsample_factor();
  TORCH_CHECK(x.dim() == 4 && x.size(1) == config_.in_channels,
              "AutoencoderKL::Encode: expected [N, ", config_.in_channels, ", H, W], got ",
              x.sizes());
  TORCH_CHECK(x.size(2) % f == 0 && x.size(3) % f == 0,
              "AutoencoderKL::Encode: H and W must be divisible by ", f, ", got ", x.sizes());
  torch::Tensor moments = quant_conv_->forward(encoder_->forward(x.to(compute_dtype())))
                              .to(x.scalar_type());  // [N, 2L, H/f, W/f]
  std::vector<torch::Tensor> halves = moments.chunk(2, /*dim=*/1);
  return VaePosterior{halves[0], torch::clamp(halves[1], -30.0, 20.0)};
}

torch::Tensor AutoencoderKLImpl::Decode(const torch::Tensor& z) {
  TORCH_CHECK(z.dim() == 4 && z.size(1) == config_.latent_channels,
              "AutoencoderKL::Decode: expected [N, ", config_.latent_channels, ", h, w], got ",
              z.sizes());
  return decoder_->forward(post_quant_conv_->forward(z.to(compute_dtype())))
      .to(z.scalar_type());  // [N, out_channels, h·f, w·f]
}

void AutoencoderKLImpl::SetComputeDtype(torch::ScalarType dtype) {
  TORCH_CHECK(dtype == torch::kFloat32 || dtype == torch::kBFloat16,
              "AutoencoderKL::SetComputeDtype: expected float32 or bfloat16, got ",
              c10::toString(dtype));
  to(dtype);
}

torch::ScalarType AutoencoderKLImpl::compute_dtype() const {
  return quant_conv_->weight.scalar_type();
}

TensorMap NormalizeVaeWeightNames(const TensorMap& tensors) {
  TensorMap out;
  for (const auto& [name, tensor] : tensors) {
    std::string renamed = name;
    if (absl::StrContains(name, ".attentions.")) {
      for (const auto& [old_part, new_part] : kOldAttentionNames) {
        const size_t pos = renamed.find(old_part);
        if (pos != std::string::npos) {
          renamed.replace(pos, std::string(old_part).size(), new_part);
          break;
        }
      }
    }
    torch::Tensor t = tensor;
    if (IsAttentionProjection(renamed) && t.dim() == 4 && t.size(2) == 1 && t.size(3) == 1) {
      t = t.flatten(1);  // [C, C, 1, 1] -> [C, C]
    }
    out[renamed] = t;
  }
  return out;
}

absl::Status LoadVaeWeights(AutoencoderKL& vae, const TensorMap& tensors,
                            const std::string& label) {
  return LoadStateDict(*vae, NormalizeVaeWeightNames(tensors), label);
}

CellPaintingVaeImpl::CellPaintingVaeImpl(const VaeConfig& config)
    : autoencoder_(register_module("autoencoder", AutoencoderKL(config))) {
  TORCH_CHECK(config.in_channels == 3 && config.out_channels == 3,
              "CellPaintingVae needs a 3-channel (RGB) AutoencoderKL, got in_channels ",
              config.in_channels, ", out_channels ", config.out_channels);
}

torch::Tensor CellPaintingVaeImpl::Encode(const torch::Tensor& x,
                                          std::optional<at::Generator> generator,
                                          int64_t max_batch) {
  TORCH_CHECK(x.dim() == 4, "CellPaintingVae::Encode: expected [N, C, S, S], got ", x.sizes());
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  // Row n·C + c of the pseudo-RGB batch is image n, channel c, repeated into R, G and B.
  torch::Tensor rgb = x.reshape({n * c, 1, h, w}).expand({n * c, 3, h, w});  // [N·C, 3, S, S]
  torch::Tensor latents =
      Chunked(rgb, WholeSampleChunk(max_batch, c), [&](const torch::Tensor& part) {
        VaePosterior posterior = autoencoder_->Encode(part.contiguous());
        return generator ? posterior.Sample(*generator) : posterior.mean;  // [B, L, S/f, S/f]
      });
  const int64_t l = latents.size(1);
  return latents.reshape({n, c * l, latents.size(2), latents.size(3)}) *
         config().scaling_factor;  // [N, C·L, S/f, S/f]
}

torch::Tensor CellPaintingVaeImpl::Decode(const torch::Tensor& z, int64_t max_batch) {
  const int64_t l = config().latent_channels;
  TORCH_CHECK(z.dim() == 4 && z.size(1) % l == 0, "CellPaintingVae::Decode: expected [N, C·", l,
              ", h, w], got ", z.sizes());
  const int64_t n = z.size(0), c = z.size(1) / l;
  torch::Tensor per_channel =
      (z / config().scaling_factor).reshape({n * c, l, z.size(2), z.size(3)});
  torch::Tensor rgb =
      Chunked(per_channel, WholeSampleChunk(max_batch, c), [&](const torch::Tensor& part) {
        return autoencoder_->Decode(part);  // [B, 3, S, S]
      });
  torch::Tensor gray = rgb.mean(/*dim=*/1);                 // [N·C, S, S]
  return gray.reshape({n, c, gray.size(1), gray.size(2)});  // [N, C, S, S]
}

}  // namespace cellflux
