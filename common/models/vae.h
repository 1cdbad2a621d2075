// The Stable-Diffusion KL image autoencoder (E_I / D_I) and the Cell Painting pseudo-RGB wrapper.
//
// AutoencoderKL mirrors diffusers' AutoencoderKL: registered names are the diffusers safetensors
// keys (`encoder.down_blocks.0.resnets.0.norm1.weight`, `quant_conv.weight`,
// `decoder.up_blocks.0.upsamplers.0.conv.weight`, ...), so `stabilityai/sd-vae-ft-mse` loads
// unchanged with LoadVaeWeights (default VaeConfig: 83.65M parameters).
//
//   AutoencoderKL vae(config);
//   CF_RETURN_IF_ERROR(LoadVaeWeights(vae, tensors, "image_vae.safetensors"));
//   VaePosterior p = vae->Encode(x);       // x: [N, 3, H, W] in [-1, 1]
//   torch::Tensor y = vae->Decode(p.mean); // unscaled latent -> [N, 3, H, W]
//
// CellPaintingVae wraps it for 5-channel Cell Painting images (DESIGN.md §1): every channel is
// repeated into pseudo-RGB and encoded on its own; latents are stacked on the channel axis and
// multiplied by scaling_factor. The checkpoint's image_vae.safetensors holds the *inner*
// autoencoder's state dict (plain diffusers names): save StateDict(*wrapper->autoencoder()) and
// load with LoadVaeWeights(wrapper->autoencoder(), ...).
//
// Forward functions throw c10::Error on bad shapes (TORCH_CHECK); call them through TorchCall at
// a Status boundary. All tensors are placed on the module's device.
#ifndef CELLFLUX_COMMON_MODELS_VAE_H_
#define CELLFLUX_COMMON_MODELS_VAE_H_

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/types.h>

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "common/models/config.h"
#include "common/models/vae_blocks.h"
#include "common/torch/tensors.h"

namespace cellflux {

// Diagonal Gaussian posterior q(z|x); logvar is clamped to [-30, 20] like diffusers'
// DiagonalGaussianDistribution.
struct VaePosterior {
  torch::Tensor mean;    // [N, L, h, w]
  torch::Tensor logvar;  // [N, L, h, w]

  // mean + exp(0.5·logvar)·ε with ε ~ N(0, I) drawn from `generator` (its own device; the result
  // is moved to mean's device, so a CPU generator gives the same noise on every device).
  torch::Tensor Sample(at::Generator generator) const;
};

// Per-sample KL(q || N(0, I)) = 0.5 · Σ (mean² + exp(logvar) − 1 − logvar) over all non-batch
// dims. mean, logvar: [N, ...] -> [N].
torch::Tensor KlDivergence(const torch::Tensor& mean, const torch::Tensor& logvar);

// The VAE's training objective with the latent-diffusion weighting (LDM's LPIPSWithDiscriminator
// without its perceptual and GAN terms): per sample, the reconstruction error summed over every
// pixel plus kl_weight · KL summed over every latent, averaged over the batch, and divided by the
// pixels per sample so that it reads as a per-pixel error. `l1` chooses |rec − x| over (rec − x)².
// A per-pixel mean error beside a per-sample KL sum instead weights the KL ~C·H·W times more than
// LDM does (12,288× at 3×64×64): the posterior stays near the prior and the decoder blurs.
// rec, x: [N, C, H, W]; mean, logvar: [N, ...] -> scalar.
torch::Tensor VaeTrainingLoss(const torch::Tensor& rec, const torch::Tensor& x,
                              const torch::Tensor& mean, const torch::Tensor& logvar,
                              double kl_weight, bool l1);

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  explicit AutoencoderKLImpl(const VaeConfig& config);

  // x: [N, in_channels, H, W] (H, W divisible by downsample_factor) -> posterior [N, L, H/f, W/f].
  VaePosterior Encode(const torch::Tensor& x);
  // z: [N, L, h, w] unscaled latent -> [N, out_channels, h·f, w·f].
  torch::Tensor Decode(const torch::Tensor& z);

  // Converts every parameter to `dtype` (kFloat32 or kBFloat16). Encode and Decode run in the
  // parameters' dtype and return the dtype of their input, so a bfloat16 VAE takes and gives
  // float32 (its posterior's clamp and the pseudo-RGB mean run in float32). Call before forwards
  // start (not synchronised with them).
  void SetComputeDtype(torch::ScalarType dtype);
  torch::ScalarType compute_dtype() const;

  const VaeConfig& config() const { return config_; }

 private:
  VaeConfig config_;
  VaeEncoder encoder_{nullptr};
  VaeDecoder decoder_{nullptr};
  torch::nn::Conv2d quant_conv_{nullptr};       // 1×1, 2L -> 2L
  torch::nn::Conv2d post_quant_conv_{nullptr};  // 1×1, L -> L
};
TORCH_MODULE(AutoencoderKL);

// Loads diffusers AutoencoderKL weights into `vae`. Accepts the current attention names
// (to_q/to_k/to_v/to_out.0) and the older ones (query/key/value/proj_attn), and attention weights
// stored as 1×1 convolutions [C, C, 1, 1]. Any missing, unexpected or mis-shaped name is listed
// in one INVALID_ARGUMENT that starts with `label`.
absl::Status LoadVaeWeights(AutoencoderKL& vae, const TensorMap& tensors, const std::string& label);

// Rewrites old attention names to the new ones and squeezes 1×1-conv attention weights; other
// tensors pass through. Exposed for tools that convert files.
TensorMap NormalizeVaeWeightNames(const TensorMap& tensors);

// Pseudo-RGB images per autoencoder call for a bound of max_batch: the largest multiple of
// `channels` (whole samples) not above it, at least one sample; 0 (one call) when max_batch <= 0.
// Whole samples keep an image's bits independent of its batchmates: LibTorch 1.13's CPU conv at
// 16x16 gives different last bits for a batch of one image than for two or more (the server
// promises bit-identical samples whatever they are batched with), and a sample of C >= 2
// channels never lands alone in a call.
int64_t WholeSampleChunk(int64_t max_batch, int64_t channels);

// Cell Painting images through a 3-channel AutoencoderKL, one channel at a time (pseudo-RGB).
// Needs config.in_channels == config.out_channels == 3.
class CellPaintingVaeImpl : public torch::nn::Module {
 public:
  explicit CellPaintingVaeImpl(const VaeConfig& config);

  // x: [N, C, S, S] in [-1, 1] -> latent [N, C·L, S/f, S/f], scaled by scaling_factor; image
  // channel c becomes latent channels c·L .. c·L+L−1. With a generator the posterior is sampled,
  // otherwise its mean is used. max_batch > 0 bounds the pseudo-RGB batch (N·C images) per
  // autoencoder call (rounded to whole samples, WholeSampleChunk); 0 = one call.
  torch::Tensor Encode(const torch::Tensor& x,
                       std::optional<at::Generator> generator = std::nullopt,
                       int64_t max_batch = 0);
  // z: [N, C·L, h, w] scaled latent -> [N, C, h·f, w·f], each channel the mean of the three
  // pseudo-RGB outputs.
  torch::Tensor Decode(const torch::Tensor& z, int64_t max_batch = 0);

  AutoencoderKL& autoencoder() { return autoencoder_; }
  const VaeConfig& config() const { return autoencoder_->config(); }

 private:
  AutoencoderKL autoencoder_{nullptr};
};
TORCH_MODULE(CellPaintingVae);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_MODELS_VAE_H_
