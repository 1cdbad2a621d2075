#include "trainer/validation.h"

#include <torch/torch.h>

#include "absl/strings/str_format.h"
#include "common/flow/sampler.h"
#include "common/metrics/fid.h"
#include "common/torch/tensors.h"
#include "common/util/status_macros.h"

namespace cellflux::trainer {
namespace {

std::string ValidationSplit(const LatentCache* cache) {
  for (const auto& p : cache->index().pairs) {
    if (p.split == "val") return "val";
  }
  return "train";
}

}  // namespace

std::string ValidationMetrics::Summary() const {
  return absl::StrFormat(
      "latent FD %.4f (control baseline %.4f), gene MAE %.4f (control baseline %.4f) over %d "
      "samples of %d pairs",
      metric, metric_control, gene_mae, gene_mae_control, samples, pairs);
}

torch::Tensor LatentSummaryFeatures(const torch::Tensor& latents) {
  torch::Tensor flat = latents.flatten(2);  // [N, C, h·w]
  return torch::cat({flat.mean(2), flat.std(2)}, 1);
}

Validator::Validator(const LatentCache* cache, const StageContext& ctx)
    : cache_(cache),
      ctx_(ctx),
      examples_(cache,
                FlowExampleOptions{ValidationSplit(cache), ctx.config.seed, /*condition_drop=*/0.0,
                                   ctx.model.sit.num_classes, ctx.model.flow.sample_posterior,
                                   /*centre_crop_only=*/true, ctx.model.flow.source_noise_sigma}) {}

absl::StatusOr<ValidationMetrics> Validator::Run(CellFluxModel& model, int64_t step) {
  (void)step;
  ValidationMetrics m;
  // val_pairs draws spread evenly over the split; a split smaller than that is cycled (each
  // repeat with another control and seed), so a handful of pairs still gives a usable FD.
  const int64_t n = ctx_.config.flow.val_pairs;
  if (examples_.size() < 1 || n < 2) {
    return absl::FailedPreconditionError(
        absl::StrCat("validation needs at least 2 draws from a non-empty split, got ", n,
                     " draws from ", examples_.size(), " pairs"));
  }
  std::vector<int64_t> positions(n);
  for (int64_t i = 0; i < n; ++i) positions[i] = i * examples_.size() / n;
  CF_RETURN_IF_ERROR(TorchCall("validation", [&] {
    c10::InferenceMode guard;
    model->eval();
    FlowBatch b = examples_.PairsBatch(positions, /*salt=*/0x5A11DA7EULL, model->device());
    SamplerOptions so;
    so.num_steps = static_cast<int>(ctx_.config.flow.val_num_steps);
    so.guidance_scale = ctx_.model.sampling.guidance_scale;
    JointLatent gen = SampleEuler(model->velocity_fn(), b.z0, b.y, model->null_label(), so);
    auto fake = ComputeFeatureStats(LatentSummaryFeatures(gen.image));
    auto real = ComputeFeatureStats(LatentSummaryFeatures(b.z1.image));
    auto control = ComputeFeatureStats(LatentSummaryFeatures(b.control.image));
    auto fd_to_real = [&](const absl::StatusOr<FeatureStats>& s) {
      if (!s.ok() || !real.ok()) return std::numeric_limits<double>::infinity();
      auto fd = FrechetDistance(*s, *real);
      return fd.ok() ? *fd : std::numeric_limits<double>::infinity();
    };
    m.metric = fd_to_real(fake);
    m.metric_control = fd_to_real(control);
    if (gen.gene.defined()) {
      const torch::Tensor& expr = cache_->expression();
      torch::Tensor real_expr =
          expr.index_select(0, torch::tensor(b.target_gene_rows, torch::kInt64));
      torch::Tensor control_expr =
          expr.index_select(0, torch::tensor(b.control_gene_rows, torch::kInt64));
      torch::Tensor gen_expr = model->gene_ae()->DecodeStandardized(gen.gene).to(torch::kCPU);
      m.gene_mae = (gen_expr - real_expr).abs().mean().item<double>();
      m.gene_mae_control = (control_expr - real_expr).abs().mean().item<double>();
    }
  }));
  m.samples = n;
  m.pairs = std::min<int64_t>(n, examples_.size());
  return m;
}

}  // namespace cellflux::trainer
