#include "common/flow/sampler.h"

#include <torch/torch.h>

#include <vector>

#include "common/torch/tensors.h"

namespace cellflux {
namespace {

// α·cond + (1 − α)·uncond per row. Written in this form (not uncond + α·(cond − uncond)) so that
// a row with α = 1 whose uncond is its own cond comes out bit-identical to cond.
torch::Tensor Mix(const torch::Tensor& cond, const torch::Tensor& uncond,
                  const torch::Tensor& alpha) {
  torch::Tensor a = RowScale(alpha, cond);  // [N, 1, ...]
  return a * cond + (1 - a) * uncond;
}

void CheckRows(const char* what, const torch::Tensor& x, int64_t n) {
  TORCH_CHECK(x.defined() && x.dim() == 1 && x.size(0) == n, what, ": expected shape [", n,
              "], got ", x.defined() ? x.sizes() : torch::IntArrayRef{});
}

// The velocity in z's dtypes: a reduced-precision model's output never reaches the guidance
// combination or the Euler state (no-op when the dtypes already agree).
JointLatent InDtypeOf(JointLatent v, const JointLatent& z) {
  v.image = v.image.to(z.image.scalar_type());
  if (z.gene.defined() && v.gene.defined()) v.gene = v.gene.to(z.gene.scalar_type());
  return v;
}

}  // namespace

JointLatent GuidedVelocity(const VelocityFn& v, const JointLatent& z, const torch::Tensor& t,
                           const torch::Tensor& y, const torch::Tensor& guidance,
                           int64_t null_label) {
  const int64_t n = z.image.size(0);
  CheckRows("GuidedVelocity t", t, n);
  CheckRows("GuidedVelocity y", y, n);
  torch::Tensor alpha = guidance.dim() == 0 ? guidance.expand({n}) : guidance;
  CheckRows("GuidedVelocity guidance", alpha, n);
  const bool has_gene = z.gene.defined();

  // Rows that need an unconditional forward: idx [M] (int64, on alpha's device).
  torch::Tensor idx = torch::nonzero(alpha != 1.0).view({-1});
  const int64_t m = idx.size(0);
  if (m == 0) return InDtypeOf(v(z, t, y), z);

  idx = idx.to(z.image.device());
  JointLatent batch;
  batch.image = torch::cat({z.image, z.image.index_select(0, idx)});             // [N + M, C, h, w]
  if (has_gene) batch.gene = torch::cat({z.gene, z.gene.index_select(0, idx)});  // [N + M, G]
  torch::Tensor tb = torch::cat({t, t.index_select(0, idx.to(t.device()))});     // [N + M]
  torch::Tensor yb = torch::cat({y, torch::full({m}, null_label, y.options())});  // [N + M]
  const JointLatent out = InDtypeOf(v(batch, tb, yb), z);
  TORCH_CHECK(out.image.size(0) == n + m, "GuidedVelocity: velocity returned ", out.image.size(0),
              " rows for ", n + m, " inputs");

  // Unconditional velocity per row: the computed one for rows with α ≠ 1, else the conditional
  // one (weighted by 1 − α = 0, so it only has to be finite).
  auto combine = [&](const torch::Tensor& both) {
    torch::Tensor cond = both.narrow(0, 0, n);                             // [N, ...]
    torch::Tensor uncond = cond.index_copy(0, idx, both.narrow(0, n, m));  // [N, ...]
    return Mix(cond, uncond, alpha.to(both.device()));
  };
  JointLatent guided;
  guided.image = combine(out.image);
  if (has_gene) guided.gene = combine(out.gene);
  return guided;
}

JointLatent EulerStep(const JointLatent& z, const JointLatent& vel, const torch::Tensor& dt) {
  CheckRows("EulerStep dt", dt, z.image.size(0));
  JointLatent next;
  next.image = z.image + RowScale(dt, z.image) * vel.image;                    // [N, C, h, w]
  if (z.gene.defined()) next.gene = z.gene + RowScale(dt, z.gene) * vel.gene;  // [N, G]
  return next;
}

JointLatent SampleEuler(const VelocityFn& v, JointLatent z0, const torch::Tensor& y,
                        int64_t null_label, const SamplerOptions& options) {
  TORCH_CHECK(options.num_steps >= 1, "SampleEuler: num_steps must be >= 1, got ",
              options.num_steps);
  const int64_t n = z0.image.size(0);
  const int steps = options.num_steps;
  const torch::TensorOptions f32 = z0.image.options().dtype(torch::kFloat32);
  const torch::Tensor alpha = torch::full({n}, options.guidance_scale, f32);
  const torch::Tensor dt = torch::full({n}, 1.0 / steps, f32);
  JointLatent z = std::move(z0);
  for (int i = 0; i < steps; ++i) {
    const torch::Tensor t = torch::full({n}, static_cast<double>(i) / steps, f32);  // [N]
    z = EulerStep(z, GuidedVelocity(v, z, t, y, alpha, null_label), dt);
  }
  return z;
}

JointLatent HeunAverage(const JointLatent& z, const JointLatent& r) {
  JointLatent next;
  next.image = 0.5 * (z.image + r.image);                     // [N, C, h, w]
  if (z.gene.defined()) next.gene = 0.5 * (z.gene + r.gene);  // [N, G]
  return next;
}

const char* SamplerName(SamplerKind kind) { return kind == SamplerKind::kHeun ? "heun" : "euler"; }

JointLatent SampleHeun(const VelocityFn& v, JointLatent z0, const torch::Tensor& y,
                       int64_t null_label, const SamplerOptions& options) {
  TORCH_CHECK(options.num_steps >= 1, "SampleHeun: num_steps must be >= 1, got ",
              options.num_steps);
  const int64_t n = z0.image.size(0);
  const int steps = options.num_steps;
  const torch::TensorOptions f32 = z0.image.options().dtype(torch::kFloat32);
  const torch::Tensor alpha = torch::full({n}, options.guidance_scale, f32);
  const torch::Tensor dt = torch::full({n}, 1.0 / steps, f32);
  JointLatent z = std::move(z0);
  for (int i = 0; i < steps; ++i) {
    const torch::Tensor t0 = torch::full({n}, static_cast<double>(i) / steps, f32);      // [N]
    const torch::Tensor t1 = torch::full({n}, static_cast<double>(i + 1) / steps, f32);  // [N]
    JointLatent predicted = EulerStep(z, GuidedVelocity(v, z, t0, y, alpha, null_label), dt);
    JointLatent r =
        EulerStep(predicted, GuidedVelocity(v, predicted, t1, y, alpha, null_label), dt);
    z = HeunAverage(z, r);
  }
  return z;
}

JointLatent SampleFlow(const VelocityFn& v, JointLatent z0, const torch::Tensor& y,
                       int64_t null_label, const SamplerOptions& options) {
  return options.sampler == SamplerKind::kHeun
             ? SampleHeun(v, std::move(z0), y, null_label, options)
             : SampleEuler(v, std::move(z0), y, null_label, options);
}

}  // namespace cellflux
