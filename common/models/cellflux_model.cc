#include "common/models/cellflux_model.h"

#include <torch/torch.h>

#include "common/torch/random.h"

namespace cellflux {

CellFluxModelImpl::CellFluxModelImpl(const ModelConfig& config) : config_(config) {
  sit_ = register_module("sit", SiT(config.sit));
  vae_ = register_module("vae", CellPaintingVae(config.vae));
  GeneAutoencoderConfig gene = config.gene_ae;
  gene_ae_ = register_module("gene_ae", GeneAutoencoder(gene));
}

torch::Device CellFluxModelImpl::device() const { return sit_->parameters().front().device(); }

Precision CellFluxModelImpl::SetPrecision(Precision precision) {
  precision_ = ResolvePrecision(precision, device());
  const torch::ScalarType dtype = ComputeDtype(precision_);
  sit_->SetComputeDtype(dtype);
  vae_->autoencoder()->SetComputeDtype(dtype);
  SetMatmulPrecision(precision_);
  return precision_;
}

LatentPosterior CellFluxModelImpl::EncodeImages(const torch::Tensor& images, int64_t max_batch) {
  // images: [N, C, S, S] → pseudo-RGB batch [N·C, 3, S, S]; latent channel c·L+l = image c, latent l.
  const int64_t n = images.size(0), c = images.size(1), s = images.size(2);
  torch::Tensor rgb =
      images.reshape({n * c, 1, s, images.size(3)}).expand({n * c, 3, s, images.size(3)});
  const int64_t chunk = max_batch > 0 ? WholeSampleChunk(max_batch, c) : n * c;
  std::vector<torch::Tensor> means, logvars;
  for (int64_t start = 0; start < n * c; start += chunk) {
    VaePosterior p =
        vae_->autoencoder()->Encode(rgb.narrow(0, start, std::min(chunk, n * c - start)));
    means.push_back(p.mean);
    logvars.push_back(p.logvar);
  }
  torch::Tensor mean = torch::cat(means, 0);      // [N·C, L, h, w]
  torch::Tensor logvar = torch::cat(logvars, 0);  // [N·C, L, h, w]
  const double sf = config_.vae.scaling_factor;
  const int64_t l = mean.size(1), h = mean.size(2), w = mean.size(3);
  LatentPosterior out;
  out.mean = (mean * sf).reshape({n, c * l, h, w});
  out.std = (torch::exp(0.5 * logvar) * sf).reshape({n, c * l, h, w});
  return out;
}

torch::Tensor CellFluxModelImpl::EncodeExpression(const torch::Tensor& expression) {
  return gene_ae_->Encode(expression);
}

JointLatent CellFluxModelImpl::DrawSource(const LatentPosterior& posterior,
                                          const torch::Tensor& gene_latent,
                                          const std::vector<uint64_t>& seeds) const {
  const int64_t n = static_cast<int64_t>(seeds.size());
  const double sigma = config_.flow.source_noise_sigma;
  auto cpu = torch::TensorOptions().dtype(torch::kFloat32);
  std::vector<int64_t> row_shape = posterior.mean.sizes().vec();  // [1 or N, C·L, h, w]
  row_shape[0] = 1;
  const int64_t gene_dim = gene_latent.defined() ? gene_latent.size(1) : 0;
  std::vector<torch::Tensor> eps_img, noise_img, noise_gene;
  for (uint64_t seed : seeds) {
    // One CPU generator per row, draws in a fixed order: a row's noise depends on its seed only
    // (all 64 bits of it), never on its batch position or the device.
    torch::Generator gen = MakeCpuGenerator(seed);
    eps_img.push_back(torch::randn(row_shape, gen, cpu));
    if (sigma > 0) {
      noise_img.push_back(torch::randn(row_shape, gen, cpu));
      if (gene_dim > 0) noise_gene.push_back(torch::randn({1, gene_dim}, gen, cpu));
    }
  }
  const torch::Device dev = posterior.mean.device();
  std::vector<int64_t> full_shape = row_shape;
  full_shape[0] = n;
  JointLatent z;
  // image: [N, C·L, h, w] = mean + std · ε, or the mean. ε is drawn either way, so the σ noise
  // of a seed is the same with and without posterior sampling.
  if (config_.flow.sample_posterior) {
    z.image = posterior.mean.expand(full_shape) +
              posterior.std.expand(full_shape) * torch::cat(eps_img, 0).to(dev);
  } else {
    z.image = posterior.mean.expand(full_shape).contiguous();
  }
  if (sigma > 0) z.image = z.image + sigma * torch::cat(noise_img, 0).to(dev);
  if (gene_dim > 0) {
    z.gene = gene_latent.expand({n, gene_dim}).clone();
    if (sigma > 0) z.gene = z.gene + sigma * torch::cat(noise_gene, 0).to(dev);
  }
  return z;
}

JointLatent CellFluxModelImpl::Velocity(const JointLatent& z, const torch::Tensor& t,
                                        const torch::Tensor& y) {
  SiTOutput out = sit_->forward(z.image, t, y, z.gene);
  return JointLatent{out.image, out.gene};
}

VelocityFn CellFluxModelImpl::velocity_fn() {
  return [this](const JointLatent& z, const torch::Tensor& t, const torch::Tensor& y) {
    return Velocity(z, t, y);
  };
}

DecodedSample CellFluxModelImpl::Decode(const JointLatent& z, int64_t max_batch) {
  DecodedSample out;
  out.images = vae_->Decode(z.image, max_batch).clamp(-1.0, 1.0);
  if (z.gene.defined()) out.expression = gene_ae_->Decode(z.gene);
  return out;
}

}  // namespace cellflux
