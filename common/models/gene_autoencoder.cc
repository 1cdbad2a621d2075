#include "common/models/gene_autoencoder.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "common/torch/tensors.h"

namespace cellflux {
namespace {

// Linear(widths[0], widths[1]), SiLU, …, Linear(widths[k−1], widths[k]) — no activation after
// the last Linear, so the latent and the standardized output are unbounded.
torch::nn::Sequential MlpStack(const std::vector<int>& widths) {
  torch::nn::Sequential seq;
  for (size_t i = 0; i + 1 < widths.size(); ++i) {
    seq->push_back(torch::nn::Linear(widths[i], widths[i + 1]));
    if (i + 2 < widths.size()) seq->push_back(torch::nn::SiLU());
  }
  return seq;
}

absl::Status CheckStatistic(const char* name, const torch::Tensor& x, int64_t genes) {
  if (!x.defined() || x.dim() != 1 || x.size(0) != genes) {
    return absl::InvalidArgumentError(absl::StrCat("gene autoencoder ", name, ": expected shape [",
                                                   genes, "], got ",
                                                   x.defined() ? ShapeOf(x) : "undefined"));
  }
  if (!x.is_floating_point() || !torch::isfinite(x).all().item<bool>()) {
    return absl::InvalidArgumentError(
        absl::StrCat("gene autoencoder ", name, ": expected finite floating-point values"));
  }
  return absl::OkStatus();
}

}  // namespace

GeneAutoencoderImpl::GeneAutoencoderImpl(const GeneAutoencoderConfig& config) : config_(config) {
  std::vector<int> widths = {config.num_genes};
  widths.insert(widths.end(), config.hidden_dims.begin(), config.hidden_dims.end());
  widths.push_back(config.latent_dim);
  encoder_ = register_module("encoder", MlpStack(widths));
  decoder_ = register_module("decoder", MlpStack(std::vector<int>(widths.rbegin(), widths.rend())));
  gene_mean_ = register_buffer("gene_mean", torch::zeros({config.num_genes}));
  gene_std_ = register_buffer("gene_std", torch::ones({config.num_genes}));
}

absl::Status GeneAutoencoderImpl::SetStatistics(const torch::Tensor& mean,
                                                const torch::Tensor& std) {
  const int64_t g = num_genes();
  absl::Status s = CheckStatistic("gene_mean", mean, g);
  if (s.ok()) s = CheckStatistic("gene_std", std, g);
  if (!s.ok()) return s;
  return TorchCall("gene autoencoder statistics", [&] {
    torch::NoGradGuard no_grad;
    gene_mean_.copy_(mean);
    gene_std_.copy_(std.clamp_min(kMinGeneStd));
  });
}

absl::Status GeneAutoencoderImpl::CheckExpression(const torch::Tensor& raw) const {
  const int64_t g = num_genes();
  if (!raw.defined() || raw.dim() != 2 || raw.size(1) != g) {
    return absl::InvalidArgumentError(absl::StrCat("gene expression: expected shape [N, ", g,
                                                   "], got ",
                                                   raw.defined() ? ShapeOf(raw) : "undefined"));
  }
  if (!raw.is_floating_point()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gene expression: expected floating-point values, got ", c10::toString(raw.scalar_type())));
  }
  torch::Tensor bad = torch::nonzero(~torch::isfinite(raw));  // [K, 2] (row, gene)
  if (bad.size(0) > 0) {
    torch::Tensor first = bad[0].cpu();
    return absl::InvalidArgumentError(
        absl::StrCat("gene expression: ", bad.size(0), " non-finite value",
                     bad.size(0) == 1 ? "" : "s", " (NaN/Inf), first at row ",
                     first[0].item<int64_t>(), ", gene ", first[1].item<int64_t>()));
  }
  return absl::OkStatus();
}

torch::Tensor GeneAutoencoderImpl::Standardize(const torch::Tensor& raw) const {
  return (raw - gene_mean_) / gene_std_;  // [N, G]
}

torch::Tensor GeneAutoencoderImpl::Unstandardize(const torch::Tensor& z) const {
  return z * gene_std_ + gene_mean_;  // [N, G]
}

torch::Tensor GeneAutoencoderImpl::Encode(const torch::Tensor& raw) {
  return encoder_->forward(Standardize(raw));  // [N, L]
}

torch::Tensor GeneAutoencoderImpl::DecodeStandardized(const torch::Tensor& latent) {
  return decoder_->forward(latent);  // [N, G]
}

torch::Tensor GeneAutoencoderImpl::Decode(const torch::Tensor& latent) {
  return Unstandardize(DecodeStandardized(latent));  // [N, G]
}

torch::Tensor GeneAutoencoderImpl::ReconstructionLoss(const torch::Tensor& raw) {
  torch::Tensor target = Standardize(raw);  // [N, G]
  return torch::mse_loss(decoder_->forward(encoder_->forward(target)), target);
}

torch::Tensor GeneAutoencoderImpl::forward(const torch::Tensor& raw) { return Decode(Encode(raw)); }

}  // namespace cellflux
