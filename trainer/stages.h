// The stages of cellflux-train. Each reads its inputs from the prepared data dir and the work dir,
// writes its outputs under work_dir/<stage>/ and, last, a stamp file (<stage>/stamp.json) holding
// a hash of everything it depended on; `all` skips a stage whose stamp matches (re-running after a
// config change redoes only what changed).
//
//   work_dir/gene_ae/gene_autoencoder.safetensors   (+ metrics.json, stamp.json)
//   work_dir/vae/image_vae.safetensors              (+ metrics.json, stamp.json)
//   work_dir/latents/                               (latent_cache.h)
//   work_dir/checkpoints/step-NNNNNNN/, latest, best (checkpoint bundles; best/latest = pointer files)
//   work_dir/eval/metrics.json, figure.png, real/, fake/
#ifndef CELLFLUX_TRAINER_STAGES_H_
#define CELLFLUX_TRAINER_STAGES_H_

#include <torch/types.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/models/config.h"
#include "common/models/gene_autoencoder.h"
#include "trainer/distributed.h"
#include "trainer/train_config.h"

namespace cellflux::trainer {

struct StageContext {
  TrainConfig config;
  ModelConfig model;  // loaded from config.model_config, sizes fitted to the data
  torch::Device device = torch::kCPU;
  Distributed* dist = nullptr;
  bool force = false;  // redo even when the stamp matches
};

// Loads the model config and fits its data-dependent sizes (vocabulary, genes) to the prepared
// data dir.
absl::StatusOr<StageContext> MakeStageContext(const TrainConfig& config,
                                              const torch::Device& device, Distributed* dist);

absl::Status RunGeneAeStage(const StageContext& ctx);
absl::Status RunVaeStage(const StageContext& ctx);
absl::Status RunEncodeStage(const StageContext& ctx);
absl::Status RunFlowStage(const StageContext& ctx, bool resume);
absl::Status RunEvalStage(const StageContext& ctx, const std::string& checkpoint);

// Mean absolute reconstruction error of `raw` expression rows [N, G], in standardized units (the
// paper's gene-MAE space); what the gene-ae stage selects its weights by.
double StandardizedMae(GeneAutoencoder& ae, const torch::Tensor& raw);

// Paths.
std::string StageDir(const StageContext& ctx, const std::string& stage);
std::string CheckpointsRoot(const StageContext& ctx);

// Stamps: a stage is fresh when <stage>/stamp.json holds `hash`. A stage that redoes its work
// calls RemoveStamp before touching any output and WriteStamp after the last one, so an
// interrupted redo never leaves an old stamp beside half-new outputs (which a later run with the
// old inputs would take as up to date). StampInputs: the hash a stamp holds, "" when there is
// none (or it is unreadable).
std::string StampInputs(const std::string& stage_dir);
bool StampMatches(const std::string& stage_dir, const std::string& hash);
absl::Status WriteStamp(const std::string& stage_dir, const std::string& hash);
absl::Status RemoveStamp(const std::string& stage_dir);
std::string HashStrings(std::initializer_list<std::string> parts);

}  // namespace cellflux::trainer

#endif  // CELLFLUX_TRAINER_STAGES_H_
