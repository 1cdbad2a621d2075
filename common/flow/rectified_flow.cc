#include "common/flow/rectified_flow.h"

#include <torch/torch.h>

#include "common/torch/tensors.h"

namespace cellflux {
namespace {

bool HasGene(const JointLatent& z) { return z.gene.defined() && z.gene.numel() > 0; }

torch::Tensor Lerp(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& t) {
  TORCH_CHECK(a.sizes() == b.sizes(), "Interpolate: z0 ", a.sizes(), " and z1 ", b.sizes(),
              " differ in shape");
  TORCH_CHECK(t.dim() == 1 && t.size(0) == a.size(0), "Interpolate: expected t of shape [",
              a.size(0), "], got ", t.sizes());
  torch::Tensor s = RowScale(t, a);  // [N, 1, ...]
  return (1 - s) * a + s * b;
}

// Gaussian noise shaped like x, drawn on the generator's device, returned on x's device.
torch::Tensor NoiseLike(const torch::Tensor& x, torch::Generator& gen) {
  torch::Tensor eps =
      torch::randn(x.sizes(), gen, x.options().device(gen.device()).requires_grad(false));
  return eps.to(x.device());
}

}  // namespace

torch::Tensor SampleTimes(int64_t n, torch::Generator gen, const torch::TensorOptions& options) {
  torch::Tensor t = torch::rand({n}, gen, options.device(gen.device()));  // t: [n]
  return t.to(options.device());
}

JointLatent Interpolate(const JointLatent& z0, const JointLatent& z1, const torch::Tensor& t) {
  JointLatent zt;
  zt.image = Lerp(z0.image, z1.image, t);  // [N, C, h, w]
  TORCH_CHECK(HasGene(z0) == HasGene(z1), "Interpolate: gene latent defined in only one of z0, z1");
  if (HasGene(z0)) zt.gene = Lerp(z0.gene, z1.gene, t);  // [N, G]
  return zt;
}

FlowLoss RectifiedFlowLoss(const VelocityFn& v, const JointLatent& z0, const JointLatent& z1,
                           const torch::Tensor& y, const torch::Tensor& t, double beta) {
  const JointLatent zt = Interpolate(z0, z1, t);
  const JointLatent pred = v(zt, t, y);
  TORCH_CHECK(pred.image.sizes() == z0.image.sizes(), "RectifiedFlowLoss: velocity image ",
              pred.image.sizes(), " != latent ", z0.image.sizes());
  FlowLoss loss;
  loss.image = torch::mse_loss(pred.image, z1.image - z0.image);
  if (HasGene(z0)) {
    TORCH_CHECK(pred.gene.defined() && pred.gene.sizes() == z0.gene.sizes(),
                "RectifiedFlowLoss: velocity gene ",
                pred.gene.defined() ? pred.gene.sizes() : torch::IntArrayRef{}, " != latent ",
                z0.gene.sizes());
    loss.gene = torch::mse_loss(pred.gene, z1.gene - z0.gene);
  } else {
    loss.gene = torch::zeros({}, loss.image.options());
  }
  loss.total = loss.image + beta * loss.gene;
  return loss;
}

JointLatent AddSourceNoise(const JointLatent& z0, double sigma, torch::Generator gen) {
  if (sigma <= 0) return z0;
  JointLatent out;
  out.image = z0.image + sigma * NoiseLike(z0.image, gen);
  if (z0.gene.defined()) out.gene = z0.gene + sigma * NoiseLike(z0.gene, gen);
  return out;
}

}  // namespace cellflux
