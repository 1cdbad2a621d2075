// The flow stage's optimisation loop: AdamW on the SiT (VAE and gene autoencoder frozen), global
// batch with gradient accumulation across micro-batches and ranks, gradient-norm clipping,
// per-sample condition drop, β-weighted rectified-flow loss, EMA, NaN/Inf guard. Checkpointing and
// validation are hooks, so this loop knows nothing about bundles or metrics files.
//
// Determinism: the batch of step s is a pure function of (seed, s) (flow_examples.h) and the whole
// optimiser state is in State(), so Restore(State()) at step s continues bit-identically on CPU.
#ifndef CELLFLUX_TRAINER_FLOW_TRAINER_H_
#define CELLFLUX_TRAINER_FLOW_TRAINER_H_

#include <torch/optim/adamw.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/flow/ema.h"
#include "common/models/cellflux_model.h"
#include "common/models/precision.h"
#include "common/torch/tensors.h"
#include "trainer/distributed.h"
#include "trainer/flow_examples.h"
#include "trainer/train_config.h"

namespace cellflux::trainer {

struct FlowTrainerOptions {
  FlowStageConfig config;
  double beta = 1.0;
  double ema_decay = 0.9999;
  uint64_t seed = 0;
  bool show_progress = true;
  // Resolved (not kAuto). kBf16: each micro-batch's forward and loss run under bfloat16 autocast
  // (AutocastGuard); parameters, gradients, AdamW state and EMA stay float32. The TF32 switches
  // are the caller's (SetMatmulPrecision), as they are process-wide.
  Precision precision = Precision::kFp32;
};

// Everything needed to resume: raw SiT weights, EMA shadows, AdamW moments, counters.
struct FlowTrainerState {
  int64_t step = 0;
  TensorMap raw;
  TensorMap ema;
  TensorMap optimizer;
  double best_metric = 0;
  bool has_best = false;
};

struct StepStats {
  int64_t step = 0;
  double loss = 0, image_loss = 0, gene_loss = 0;
  double grad_norm = 0;
  // Training pairs per second since Run started, over the time spent in training steps only
  // (validation and checkpoint hooks excluded), summed over ranks.
  double samples_per_second = 0;
};

struct FlowHooks {
  // After optimizer step `step` (1-based) when step % checkpoint_every == 0, at the end, or when
  // the validation just run is the best so far (is_best).
  std::function<absl::Status(int64_t step, bool is_best)> checkpoint;
  // When step % val_every == 0 or at the end; returns the metric (lower is better). Runs before
  // the checkpoint hook of the same step.
  std::function<absl::StatusOr<double>(int64_t step)> validate;
  // Every log_every steps.
  std::function<void(const StepStats&)> log;
};

class FlowTrainer {
 public:
  FlowTrainer(CellFluxModel model, const LatentCache* cache, Distributed* dist,
              FlowTrainerOptions options);

  absl::Status Restore(const FlowTrainerState& state);
  FlowTrainerState State();

  // Trains from step() to config.steps. Stops with an error naming the step when the loss is
  // not finite (the last checkpoint written by the hook stays the good one).
  absl::Status Run(const FlowHooks& hooks);

  int64_t step() const { return step_; }
  // Loads the EMA weights into a copy of the SiT (for sampling / checkpoints).
  void CopyEmaTo(SiT& sit) const { ema_->CopyTo(*sit); }
  CellFluxModel& model() { return model_; }
  const std::vector<StepStats>& history() const { return history_; }
  bool has_best() const { return has_best_; }
  double best_metric() const { return best_metric_; }

 private:
  absl::StatusOr<StepStats> TrainStep();

  CellFluxModel model_;
  const LatentCache* cache_;
  Distributed* dist_;
  FlowTrainerOptions options_;
  FlowExamples examples_;
  std::vector<torch::Tensor> params_;
  std::vector<std::string> param_names_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<Ema> ema_;
  int64_t step_ = 0;
  double best_metric_ = 0;
  bool has_best_ = false;
  std::vector<StepStats> history_;
};

}  // namespace cellflux::trainer

#endif  // CELLFLUX_TRAINER_FLOW_TRAINER_H_
