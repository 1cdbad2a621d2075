// Periodic validation of the flow stage on held-out pairs of the latent cache (val split, or
// train when the data has no val pairs): EMA weights, Euler sampling with the model's guidance,
// centre crops, seeded per pair.
//
// metric (selects `best`, lower is better): the Fréchet distance between generated and real
// perturbed image latents, each summarised by the per-channel spatial mean and std (2·C features).
// It is a fast latent-space stand-in; FID on decoded images is the eval stage's job.
// Also reported: gene MAE (standardized units) of the generated expression against the real
// perturbed expression, and the control-as-prediction baseline on the same pairs.
#ifndef CELLFLUX_TRAINER_VALIDATION_H_
#define CELLFLUX_TRAINER_VALIDATION_H_

#include <string>

#include "absl/status/statusor.h"
#include "common/models/cellflux_model.h"
#include "trainer/flow_examples.h"
#include "trainer/latent_cache.h"
#include "trainer/stages.h"

namespace cellflux::trainer {

struct ValidationMetrics {
  double metric = 0;         // latent Fréchet distance
  double gene_mae = 0;       // generated vs real, standardized units
  double gene_mae_control = 0;  // control expression as the prediction
  int64_t pairs = 0;
  std::string Summary() const;
};

class Validator {
 public:
  Validator(const LatentCache* cache, const StageContext& ctx);
  absl::StatusOr<ValidationMetrics> Run(CellFluxModel& model, int64_t step);

 private:
  const LatentCache* cache_;
  const StageContext& ctx_;
  FlowExamples examples_;
};

// [N, C, h, w] → [N, 2C]: per-channel spatial mean and std.
torch::Tensor LatentSummaryFeatures(const torch::Tensor& latents);

}  // namespace cellflux::trainer

#endif  // CELLFLUX_TRAINER_VALIDATION_H_
