// Gene autoencoder E_G / D_G (paper §3): an MLP over the L1000 landmark genes.
//
//   Encode(raw [N, G]) = encoder(Standardize(raw)) → latent [N, L]
//   Decode(latent)     = Unstandardize(decoder(latent)) → raw [N, G]
//   encoder = Linear(G, h1), SiLU, …, Linear(h_k−1, h_k), SiLU, Linear(h_k, L)
//   decoder = Linear(L, h_k), SiLU, …, Linear(h2, h1), SiLU, Linear(h1, G)   (mirrored)
//
// Checkpoint names (gene_autoencoder.safetensors): encoder.{0,2,4,…}.{weight,bias},
// decoder.{0,2,4,…}.{weight,bias} (the odd indices are the parameter-free SiLUs), and the
// buffers gene_mean [G] / gene_std [G]: the per-gene training-set statistics used to standardize,
// so a weights file alone is enough to encode raw expression and decode back to it.
//
// The module is pretrained with ReconstructionLoss (MSE in standardized space), then frozen.
// Methods are plain tensor math on the module's device and throw c10::Error on shape errors;
// validate untrusted input with CheckExpression first (it returns a Status instead).
#ifndef CELLFLUX_COMMON_MODELS_GENE_AUTOENCODER_H_
#define CELLFLUX_COMMON_MODELS_GENE_AUTOENCODER_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>

#include "absl/status/status.h"
#include "common/models/config.h"

namespace cellflux {

// Smallest per-gene standard deviation SetStatistics keeps (constant genes would divide by 0).
inline constexpr double kMinGeneStd = 1e-6;

class GeneAutoencoderImpl : public torch::nn::Module {
 public:
  explicit GeneAutoencoderImpl(const GeneAutoencoderConfig& config);

  // mean, std: [G] (any float dtype/device; copied into the buffers). std is floored at
  // kMinGeneStd. INVALID_ARGUMENT naming the tensor if a shape is wrong or a value non-finite.
  absl::Status SetStatistics(const torch::Tensor& mean, const torch::Tensor& std);

  // OK iff raw is a floating [N, G] tensor (G = num_genes) with only finite values; otherwise
  // INVALID_ARGUMENT such as "gene expression: expected shape [N, 978], got [2, 977]" or
  // "gene expression: 1 non-finite value (NaN/Inf), first at row 0, gene 5".
  absl::Status CheckExpression(const torch::Tensor& raw) const;

  torch::Tensor Standardize(const torch::Tensor& raw) const;  // (raw − mean) / std, [N, G]
  torch::Tensor Unstandardize(const torch::Tensor& z) const;  // z·std + mean, [N, G]

  torch::Tensor Encode(const torch::Tensor& raw);                 // [N, G] → [N, L]
  torch::Tensor DecodeStandardized(const torch::Tensor& latent);  // [N, L] → [N, G] standardized
  torch::Tensor Decode(const torch::Tensor& latent);              // [N, L] → [N, G] raw scale

  // MSE between DecodeStandardized(Encode(raw)) and Standardize(raw); scalar.
  torch::Tensor ReconstructionLoss(const torch::Tensor& raw);

  // Decode(Encode(raw)): the reconstruction in raw scale, [N, G].
  torch::Tensor forward(const torch::Tensor& raw);

  const GeneAutoencoderConfig& config() const { return config_; }
  int64_t num_genes() const { return config_.num_genes; }
  int64_t latent_dim() const { return config_.latent_dim; }
  const torch::Tensor& gene_mean() const { return gene_mean_; }
  const torch::Tensor& gene_std() const { return gene_std_; }

 private:
  GeneAutoencoderConfig config_;
  torch::nn::Sequential encoder_{nullptr};
  torch::nn::Sequential decoder_{nullptr};
  torch::Tensor gene_mean_;  // [G]
  torch::Tensor gene_std_;   // [G]
};
TORCH_MODULE(GeneAutoencoder);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_MODELS_GENE_AUTOENCODER_H_
