#include "trainer/flow_trainer.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/flow/rectified_flow.h"
#include "common/util/logging.h"
#include "common/util/progress.h"
#include "common/util/status_macros.h"

namespace cellflux::trainer {
namespace {

// The optimizer's per-parameter state key changed type between LibTorch 1.x (string) and 2.x
// (TensorImpl pointer).
#if TORCH_VERSION_MAJOR >= 2
void* StateKey(const torch::Tensor& p) { return p.unsafeGetTensorImpl(); }
#else
std::string StateKey(const torch::Tensor& p) {
  return c10::guts::to_string(p.unsafeGetTensorImpl());
}
#endif

}  // namespace

FlowTrainer::FlowTrainer(CellFluxModel model, const LatentCache* cache, Distributed* dist,
                         FlowTrainerOptions options)
    : model_(std::move(model)),
      cache_(cache),
      dist_(dist),
      options_(std::move(options)),
      examples_(cache, FlowExampleOptions{
                           "train", options_.seed, options_.config.condition_drop,
                           model_->null_label(), model_->config().flow.sample_posterior,
                           /*centre_crop_only=*/false, model_->config().flow.source_noise_sigma}) {
  // Only the SiT trains; the autoencoders are frozen (paper §3).
  for (auto& p : model_->vae()->parameters()) p.set_requires_grad(false);
  for (auto& p : model_->gene_ae()->parameters()) p.set_requires_grad(false);
  for (const auto& item : model_->sit()->named_parameters()) {
    if (!item.value().requires_grad()) continue;
    params_.push_back(item.value());
    param_names_.push_back(item.key());
  }
  torch::optim::AdamWOptions adam(options_.config.lr);
  adam.weight_decay(options_.config.weight_decay);
  optimizer_ = std::make_unique<torch::optim::AdamW>(params_, adam);
  ema_ = std::make_unique<Ema>(*model_->sit(), options_.ema_decay);
}

FlowTrainerState FlowTrainer::State() {
  FlowTrainerState s;
  s.step = step_;
  s.best_metric = best_metric_;
  s.has_best = has_best_;
  for (const auto& item : model_->sit()->named_parameters())
    s.raw[item.key()] = item.value().detach().clone();
  s.ema = ema_->state();
  auto& state = optimizer_->state();
  for (size_t i = 0; i < params_.size(); ++i) {
    auto it = state.find(StateKey(params_[i]));
    if (it == state.end()) continue;
    const auto& a = static_cast<const torch::optim::AdamWParamState&>(*it->second);
    s.optimizer[absl::StrCat(param_names_[i], ".exp_avg")] = a.exp_avg().detach().clone();
    s.optimizer[absl::StrCat(param_names_[i], ".exp_avg_sq")] = a.exp_avg_sq().detach().clone();
    s.optimizer[absl::StrCat(param_names_[i], ".step")] = torch::tensor({a.step()}, torch::kInt64);
  }
  return s;
}

absl::Status FlowTrainer::Restore(const FlowTrainerState& s) {
  CF_RETURN_IF_ERROR(LoadStateDict(*model_->sit(), s.raw, "trainer_state raw weights"));
  CF_RETURN_IF_ERROR(ema_->LoadState(s.ema));
  auto& state = optimizer_->state();
  state.clear();
  for (size_t i = 0; i < params_.size(); ++i) {
    auto m = s.optimizer.find(absl::StrCat(param_names_[i], ".exp_avg"));
    auto v = s.optimizer.find(absl::StrCat(param_names_[i], ".exp_avg_sq"));
    auto k = s.optimizer.find(absl::StrCat(param_names_[i], ".step"));
    if (m == s.optimizer.end() && v == s.optimizer.end() && k == s.optimizer.end()) continue;
    if (m == s.optimizer.end() || v == s.optimizer.end() || k == s.optimizer.end() ||
        m->second.sizes() != params_[i].sizes() || v->second.sizes() != params_[i].sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "trainer_state optimizer: incomplete or mis-shaped state for '", param_names_[i], "'"));
    }
    auto a = std::make_unique<torch::optim::AdamWParamState>();
    a->step(k->second.item<int64_t>());
    a->exp_avg(m->second.to(params_[i].device()).clone());
    a->exp_avg_sq(v->second.to(params_[i].device()).clone());
    state[StateKey(params_[i])] = std::move(a);
  }
  step_ = s.step;
  best_metric_ = s.best_metric;
  has_best_ = s.has_best;
  ema_->set_num_updates(s.step);
  return absl::OkStatus();
}

absl::StatusOr<StepStats> FlowTrainer::TrainStep() {
  const FlowStageConfig& c = options_.config;
  const int world = dist_->world_size();
  if (c.global_batch % world != 0) {
    return absl::InvalidArgumentError(absl::StrCat("flow.global_batch ", c.global_batch,
                                                   " is not divisible by WORLD_SIZE ", world));
  }
  const int64_t per_rank = c.global_batch / world;
  const int64_t micro = std::min(c.micro_batch, per_rank);
  const torch::Device device = model_->device();

  if (c.warmup_steps > 0) {
    double lr = c.lr * std::min(1.0, static_cast<double>(step_ + 1) / c.warmup_steps);
    for (auto& group : optimizer_->param_groups()) {
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    }
  }
  optimizer_->zero_grad();
  model_->sit()->train();
  torch::Tensor sums = torch::zeros({3}, torch::kFloat64);  // total, image, gene (weighted means)
  const int64_t rank_begin = step_ * c.global_batch + dist_->rank() * per_rank;
  for (int64_t off = 0; off < per_rank; off += micro) {
    const int64_t n = std::min(micro, per_rank - off);
    FlowBatch b = examples_.Batch(rank_begin + off, rank_begin + off + n, device);
    FlowLoss loss;
    {
      // Forward and loss only: backward replays the dtypes the forward recorded.
      AutocastGuard autocast(device, options_.precision);
      loss = RectifiedFlowLoss(model_->velocity_fn(), b.z0, b.z1, b.y, b.t, options_.beta);
    }
    const double w = static_cast<double>(n) / per_rank;
    (loss.total * w).backward();
    sums[0] += loss.total.item<double>() * w;
    sums[1] += loss.image.item<double>() * w;
    sums[2] += loss.gene.defined() ? loss.gene.item<double>() * w : 0.0;
  }
  CF_RETURN_IF_ERROR(dist_->AverageGradients(params_));
  CF_RETURN_IF_ERROR(dist_->AllReduceSum(sums));
  sums.div_(world);
  StepStats stats;
  stats.step = step_ + 1;
  stats.loss = sums[0].item<double>();
  stats.image_loss = sums[1].item<double>();
  stats.gene_loss = sums[2].item<double>();
  if (!std::isfinite(stats.loss)) {
    return absl::DataLossError(
        absl::StrFormat("non-finite loss at step %d (image %g, gene %g); training stopped, the "
                        "last checkpoint is kept",
                        stats.step, stats.image_loss, stats.gene_loss));
  }
  stats.grad_norm = torch::nn::utils::clip_grad_norm_(params_, c.grad_clip);
  optimizer_->step();
  ema_->Update(*model_->sit());
  ++step_;
  return stats;
}

absl::Status FlowTrainer::Run(const FlowHooks& hooks) {
  const FlowStageConfig& c = options_.config;
  if (examples_.size() == 0) {
    return absl::FailedPreconditionError("flow: the latent cache has no training pairs");
  }
  ProgressOptions po;
  po.label = "flow";
  po.unit = "step";
  po.enabled = options_.show_progress && dist_->is_main();
  ProgressBar bar(c.steps, po);
  bar.Update(step_);
  double train_seconds = 0;  // in TrainStep only: the hooks' validation and checkpoints excluded
  const int64_t first = step_;
  while (step_ < c.steps) {
    absl::StatusOr<StepStats> stats = absl::InternalError("flow step did not run");
    const auto start = std::chrono::steady_clock::now();
    CF_RETURN_IF_ERROR(
        TorchCall(absl::StrCat("flow step ", step_ + 1), [&] { stats = TrainStep(); }));
    if (!stats.ok()) return stats.status();
    // Each step reads its losses on the host (.item) after the previous step's optimizer and
    // EMA work, so over a few steps this is the device's rate too.
    train_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    stats->samples_per_second =
        train_seconds > 0 ? (step_ - first) * c.global_batch / train_seconds : 0;
    history_.push_back(*stats);
    bar.Update(step_,
               absl::StrFormat("loss=%.4f img=%.4f gene=%.4f %.1f samples/s", stats->loss,
                               stats->image_loss, stats->gene_loss, stats->samples_per_second));
    if (hooks.log && (step_ % c.log_every == 0 || step_ == c.steps)) hooks.log(*stats);
    const bool last = step_ == c.steps;
    bool is_best = false;
    if (hooks.validate && (step_ % c.val_every == 0 || last)) {
      CF_ASSIGN_OR_RETURN(double metric, hooks.validate(step_));
      if (!has_best_ || metric < best_metric_) {
        best_metric_ = metric;
        has_best_ = true;
        is_best = true;
      }
    }
    if (hooks.checkpoint && (step_ % c.checkpoint_every == 0 || last || is_best)) {
      CF_RETURN_IF_ERROR(hooks.checkpoint(step_, is_best));
    }
  }
  bar.Finish();
  return absl::OkStatus();
}

}  // namespace cellflux::trainer
