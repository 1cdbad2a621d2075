// Stage flow: train the SiT on the latent cache, write checkpoint bundles (EMA weights) with the
// trainer state for resuming, validate periodically and keep `best`.
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/checkpoint/checkpoint.h"
#include "common/checkpoint/checkpoint_dir.h"
#include "common/checkpoint/model_bundle.h"
#include "common/data/manifest.h"
#include "common/flow/sampler.h"
#include "common/models/precision.h"
#include "common/util/files.h"
#include "common/util/logging.h"
#include "common/util/status_macros.h"
#include "trainer/components.h"
#include "trainer/flow_trainer.h"
#include "trainer/stages.h"
#include "trainer/validation.h"

namespace cellflux::trainer {
namespace {

TrainerState ToTrainerState(const FlowTrainerState& s) {
  TrainerState t;
  t.tensors["raw"] = s.raw;
  t.tensors["ema"] = s.ema;
  t.tensors["optimizer"] = s.optimizer;
  t.state = {{"step", s.step}, {"best_metric", s.best_metric}, {"has_best", s.has_best}};
  return t;
}

absl::StatusOr<FlowTrainerState> FromTrainerState(const TrainerState& t, const std::string& dir) {
  FlowTrainerState s;
  for (const char* stem : {"raw", "ema", "optimizer"}) {
    auto it = t.tensors.find(stem);
    if (it == t.tensors.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint '", dir, "': trainer_state/", stem,
                       ".safetensors is missing; cannot resume from it"));
    }
  }
  s.raw = t.tensors.at("raw");
  s.ema = t.tensors.at("ema");
  s.optimizer = t.tensors.at("optimizer");
  s.step = t.state.value("step", int64_t{0});
  s.best_metric = t.state.value("best_metric", 0.0);
  s.has_best = t.state.value("has_best", false);
  return s;
}

// The checkpoint directories under root (step-N or holding a config), sorted.
std::vector<std::string> ExistingCheckpoints(const std::string& root) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const std::filesystem::directory_entry& e : std::filesystem::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (!name.empty() && name[0] != '.' && e.is_directory() &&
        (StepFromCheckpointName(name) >= 0 ||
         std::filesystem::is_regular_file(e.path() / kConfigFile))) {
      found.push_back(name);
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

// A fresh run (no --resume) would overwrite the step directories of an earlier one: refuse.
absl::Status RefuseExistingCheckpoints(const std::string& root) {
  const std::vector<std::string> found = ExistingCheckpoints(root);
  if (found.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "flow: '", root, "' already holds checkpoints (", absl::StrJoin(found, ", "),
      ") that a fresh run would overwrite; pass --resume to continue from the newest, or move "
      "them away to start over"));
}

// checkpoints/latents/stamp.json names the latent cache the checkpoints were trained on. --resume over
// checkpoints of another cache is refused: after the VAE or encode stage re-ran (e.g. more VAE
// steps), resuming kept training — or, with the steps done, kept serving — a flow on latents the
// new VAE does not decode, and nothing said so.
absl::Status CheckCheckpointsMatchLatents(const std::string& root, const std::string& latents_dir,
                                          bool existing_checkpoints, bool write) {
  const std::string current = StampInputs(latents_dir);
  const std::string recorded = StampInputs(absl::StrCat(root, "/latents"));
  if (existing_checkpoints && !recorded.empty() && !current.empty() && recorded != current) {
    return absl::FailedPreconditionError(absl::StrCat(
        "flow --resume: the checkpoints under '", root, "' were trained on latent cache ", recorded,
        ", but '", latents_dir, "' is now ", current,
        " (the vae or encode stage ran again); move the checkpoints away to train on the new "
        "latents"));
  }
  if (current.empty() || !write) return absl::OkStatus();
  CF_RETURN_IF_ERROR(MakeDirs(absl::StrCat(root, "/latents")));
  return WriteStamp(absl::StrCat(root, "/latents"), current);
}

}  // namespace

absl::Status RunFlowStage(const StageContext& ctx, bool resume) {
  const std::string root = CheckpointsRoot(ctx);
  CF_ASSIGN_OR_RETURN(CellFluxModel model, BuildModelWithComponents(ctx));
  CF_ASSIGN_OR_RETURN(std::unique_ptr<LatentCache> cache,
                      LatentCache::Open(StageDir(ctx, "latents")));
  CF_ASSIGN_OR_RETURN(data::Manifest manifest,
                      data::LoadManifest(ctx.config.data_dir, /*load_expression=*/false));

  FlowTrainerOptions options;
  options.config = ctx.config.flow;
  options.beta = ctx.config.flow.beta >= 0 ? ctx.config.flow.beta : ctx.model.flow.beta;
  options.ema_decay =
      ctx.config.flow.ema_decay >= 0 ? ctx.config.flow.ema_decay : ctx.model.flow.ema_decay;
  options.seed = ctx.config.seed;
  CF_ASSIGN_OR_RETURN(Precision precision, ParsePrecision(ctx.config.flow.precision));
  options.precision = ResolvePrecision(precision, ctx.device);
  SetMatmulPrecision(options.precision);  // process-wide: TF32 on for tf32 only
  if (ctx.dist->is_main()) {
    CF_LOG(INFO) << "flow: precision " << PrecisionName(options.precision)
                 << (options.precision == Precision::kBf16
                         ? " (bfloat16 autocast, float32 master weights and EMA)"
                         : "");
  }
  std::vector<PerturbationEntry> vocab = VocabularyEntries(manifest);
  // Before the trainer copies the weights into its EMA: the fingerprints are frozen parameters.
  CF_RETURN_IF_ERROR(ApplyVocabularyStructures(model, vocab).status());
  // Identical initial weights on every rank: same seed, then rank 0's copy wins.
  CF_RETURN_IF_ERROR(ctx.dist->Broadcast(model->sit()->parameters()));
  FlowTrainer trainer(model, cache.get(), ctx.dist, options);

  if (resume) {
    CF_RETURN_IF_ERROR(CleanupCheckpointLeftovers(root).status());
    // The newest checkpoint whose trainer state restores, whatever `latest` says; never a silent
    // start from step 0 over existing checkpoints (checkpoint_dir.h).
    auto restore = [&](const std::string& dir) -> absl::Status {
      CF_ASSIGN_OR_RETURN(TrainerState ts, ReadTrainerState(dir));
      CF_ASSIGN_OR_RETURN(FlowTrainerState fs, FromTrainerState(ts, dir));
      return trainer.Restore(fs);
    };
    CF_RETURN_IF_ERROR(CheckCheckpointsMatchLatents(
        root, StageDir(ctx, "latents"), !ExistingCheckpoints(root).empty(), ctx.dist->is_main()));
    CF_ASSIGN_OR_RETURN(ResumeChoice from, ChooseResumeCheckpoint(root, restore));
    for (const std::string& note : from.notes) CF_LOG(WARNING) << "flow --resume: " << note;
    if (from.dir.empty()) {
      CF_LOG(INFO) << "flow --resume: no checkpoint under " << root << " yet; starting from step 0";
    } else {
      CF_LOG(INFO) << "flow: resumed from " << from.dir << " at step " << trainer.step();
    }
  } else {
    CF_RETURN_IF_ERROR(RefuseExistingCheckpoints(root));
    CF_RETURN_IF_ERROR(
        CheckCheckpointsMatchLatents(root, StageDir(ctx, "latents"), false, ctx.dist->is_main()));
  }

  std::vector<GeneEntry> genes = GeneEntries(manifest);
  Validator validator(cache.get(), ctx);

  FlowHooks hooks;
  hooks.log = [&](const StepStats& s) {
    if (!ctx.dist->is_main()) return;
    CF_LOG(INFO) << absl::StrFormat(
        "flow step %d: loss %.5f (image %.5f, gene %.5f) grad-norm %.3f %.1f items/s", s.step,
        s.loss, s.image_loss, s.gene_loss, s.grad_norm, s.samples_per_second);
  };
  hooks.validate = [&](int64_t step) -> absl::StatusOr<double> {
    // EMA weights into the live SiT for sampling, raw weights back afterwards.
    TensorMap raw = StateDict(*model->sit());
    TensorMap saved;
    for (const auto& [k, v] : raw) saved[k] = v.detach().clone();
    trainer.CopyEmaTo(model->sit());
    absl::StatusOr<ValidationMetrics> m = validator.Run(model, step);
    CF_RETURN_IF_ERROR(LoadStateDict(*model->sit(), saved, "raw weights"));
    if (!m.ok()) return m.status();
    if (ctx.dist->is_main()) CF_LOG(INFO) << "validation step " << step << ": " << m->Summary();
    return m->metric;
  };
  hooks.checkpoint = [&](int64_t step, bool is_best) -> absl::Status {
    if (!ctx.dist->is_main()) return absl::OkStatus();
    SiT ema_sit(ctx.model.sit);
    trainer.CopyEmaTo(ema_sit);
    TensorMap ema_weights = StateDict(*ema_sit);
    CheckpointBundle bundle = BundleFromModel(model, vocab, genes, step, &ema_weights);
    TrainerState ts = ToTrainerState(trainer.State());
    const std::string name = absl::StrFormat("step-%07d", step);
    if (std::filesystem::exists(absl::StrCat(root, "/", name))) {
      // Resuming chose the newest loadable checkpoint and refused newer unloadable ones, so this
      // is another run's directory: never replace it with other contents.
      return absl::FailedPreconditionError(absl::StrCat("flow: refusing to overwrite '", root, "/",
                                                        name, "', written by another run"));
    }
    CF_RETURN_IF_ERROR(WriteCheckpoint(absl::StrCat(root, "/", name), bundle, &ts));
    CF_RETURN_IF_ERROR(UpdateLatestPointer(root, name));
    if (is_best) CF_RETURN_IF_ERROR(UpdateCheckpointPointer(root, kBestPointer, name));
    CF_RETURN_IF_ERROR(
        PruneCheckpoints(root, static_cast<int>(ctx.config.flow.keep_last)).status());
    CF_LOG(INFO) << "flow: checkpoint " << root << "/" << name << (is_best ? " (best)" : "");
    return absl::OkStatus();
  };
  CF_RETURN_IF_ERROR(trainer.Run(hooks));
  return ctx.dist->Barrier();
}

}  // namespace cellflux::trainer
