// Periodic validation of the flow stage on held-out pairs of the latent cache (val split, or
// train when the data has no val pairs): EMA weights, Euler sampling with the model's guidance,
// centre crops, seeded per draw. flow.val_pairs draws spread over the split; a smaller split is
// cycled, every repeat of a pair with another control well, L1000 control and seed.
//
// metric (selects `best`, lower is better): the Fréchet distance between generated and real
// perturbed image latents, each summarised by the per-channel spatial mean and std (2·C features).
// It is a fast latent-space stand-in; FID on decoded images is the eval stage's job. The same
// distance for the controls themselves (z0, what an untrained model returns) is the baseline.
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
  double metric = 0;            // latent Fréchet distance, generated vs real
  double metric_control = 0;    // the same for the controls (z0) vs real: the do-nothing baseline
  double gene_mae = 0;          // generated vs real, standardized units
  double gene_mae_control = 0;  // control expression as the prediction
  int64_t samples = 0;          // draws (flow.val_pairs)
  int64_t pairs = 0;            // distinct pairs among them
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
