// CellFluxMM: the SiT velocity network over the joint latent of the Cell Painting VAE (image) and
// the gene autoencoder (L1000), as one module. This is what the trainer optimises, what
// checkpoints hold (one weights file per part) and what the server samples from.
//
//   CellFluxModel model(config);
//   LatentPosterior p = model->EncodeImages(images);            // [N,5,S,S] in [-1,1]
//   torch::Tensor g = model->EncodeExpression(expression);      // [N,G] raw → [N,Lg]
//   JointLatent z0 = model->DrawSource(p, g, seeds);            // one seed per row
//   JointLatent z1 = SampleEuler(model->velocity_fn(), z0, y, model->null_label(), options);
//   DecodedSample out = model->Decode(z1);                      // images [-1,1], expression raw
//
// Randomness only enters through DrawSource's per-row seeds (posterior sample of the control's
// image latent + optional source noise), drawn on the CPU and moved to the model's device, so a
// row's result depends on its seed, never on its batch position or the device's RNG. All 64 bits
// of a seed count (common/torch/random.h): seeds s and s + 2³² draw different noise.
#ifndef CELLFLUX_COMMON_MODELS_CELLFLUX_MODEL_H_
#define CELLFLUX_COMMON_MODELS_CELLFLUX_MODEL_H_

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "common/flow/joint_latent.h"
#include "common/models/config.h"
#include "common/models/gene_autoencoder.h"
#include "common/models/precision.h"
#include "common/models/sit.h"
#include "common/models/vae.h"

namespace cellflux {

// Diagonal Gaussian over scaled image latents: [N, C·L, h, w] each.
struct LatentPosterior {
  torch::Tensor mean;
  torch::Tensor std;
};

struct DecodedSample {
  torch::Tensor images;      // [N, C, S, S] float in [-1, 1]
  torch::Tensor expression;  // [N, G] raw (un-standardized) expression; undefined if image-only
};

class CellFluxModelImpl : public torch::nn::Module {
 public:
  // Builds randomly initialised parts from a validated config.
  explicit CellFluxModelImpl(const ModelConfig& config);

  const ModelConfig& config() const { return config_; }
  SiT& sit() { return sit_; }
  CellPaintingVae& vae() { return vae_; }
  GeneAutoencoder& gene_ae() { return gene_ae_; }
  int64_t null_label() const { return config_.sit.num_classes; }
  bool has_genes() const { return config_.sit.gene_latent_dim > 0; }

  // images: [N, C, S, S] in [-1, 1] → posterior of the scaled latents. max_batch bounds the
  // pseudo-RGB batch per VAE call (0 = all at once).
  LatentPosterior EncodeImages(const torch::Tensor& images, int64_t max_batch = 0);
  // expression: [N, G] raw → gene latent [N, Lg] (deterministic).
  torch::Tensor EncodeExpression(const torch::Tensor& expression);

  // Source latents z_0, one row per seed: image = mean + std·ε (ε from seed; just the mean when
  // config.flow.sample_posterior is false) + σ·ε' when config.flow.source_noise_sigma > 0; gene = gene_latent (+ σ·ε''). posterior/gene_latent may
  // have one row (shared by all seeds) or one row per seed.
  JointLatent DrawSource(const LatentPosterior& posterior, const torch::Tensor& gene_latent,
                         const std::vector<uint64_t>& seeds) const;

  // v(z, t, y) of the SiT; t: [N] float, y: [N] int64.
  JointLatent Velocity(const JointLatent& z, const torch::Tensor& t, const torch::Tensor& y);
  VelocityFn velocity_fn();

  DecodedSample Decode(const JointLatent& z, int64_t max_batch = 0);

  torch::Device device() const;

  // Runs the SiT and the VAE in `precision` (common/models/precision.h), resolved against
  // device() (kAuto: bf16 on CUDA, fp32 elsewhere): bf16 converts their parameters to bfloat16,
  // except the SiT's gene head; the gene autoencoder always stays float32. EncodeImages,
  // Velocity and Decode keep taking and returning float32, so samplers need no change. Also sets
  // the process-wide TF32 switches (SetMatmulPrecision). Call once after loading the weights and
  // moving to the device, before forwards start; going back to fp32 keeps bf16-rounded weights.
  // Returns the resolved precision.
  Precision SetPrecision(Precision precision);
  // The resolved precision last set (kFp32 for a new model).
  Precision precision() const { return precision_; }

 private:
  ModelConfig config_;
  Precision precision_ = Precision::kFp32;
  SiT sit_{nullptr};
  CellPaintingVae vae_{nullptr};
  GeneAutoencoder gene_ae_{nullptr};
};
TORCH_MODULE(CellFluxModel);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_MODELS_CELLFLUX_MODEL_H_
