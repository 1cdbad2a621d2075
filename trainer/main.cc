// cellflux-train: the offline trainer. One YAML config drives every stage (trainer/train_config.h);
// flags override single keys. Stages (trainer/stages.h):
//   prepare   match CDRP-BBBC047 images + plate maps with the L1000 table into a prepared data dir
//   gene-ae   pretrain the gene autoencoder
//   vae       import pretrained diffusers VAE weights (--pretrained) or train the configured VAE
//   encode    cache image/gene latents of the dataset with the frozen encoders
//   flow      train the SiT flow model (EMA, checkpoints, validation; --resume)
//   eval      FID/KID, gene MAE and baselines on the test pairs with the EMA weights
//   all       gene-ae → vae → encode → flow → eval, skipping stages that are up to date
// Multi-process: python3 -m torch.distributed.run --no_python --nproc_per_node=N cellflux-train
// flow ...
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "common/data/prepare.h"
#ifdef CELLFLUX_WITH_RDKIT
#include "common/chem/chem.h"
#endif
#include "common/torch/runtime.h"
#include "common/util/logging.h"
#include "common/util/progress.h"
#include "common/util/status_macros.h"
#include "trainer/distributed.h"
#include "trainer/stages.h"
#include "trainer/train_config.h"

namespace {

using cellflux::trainer::TrainConfig;

int Report(const std::string& stage, const absl::Status& s) {
  if (s.ok()) return 0;
  std::cerr << "cellflux-train " << stage << ": " << s.message() << "\n";
  return s.code() == absl::StatusCode::kInvalidArgument ||
                 s.code() == absl::StatusCode::kNotFound ||
                 s.code() == absl::StatusCode::kFailedPrecondition
             ? 2
             : 1;
}

struct CommonFlags {
  std::string config;
  std::vector<std::string> sets;
  std::string data_dir, work_dir, device, model_config;
  int threads = -1;
  int64_t seed = -1;
  bool force = false;
};

void AddCommon(CLI::App* app, CommonFlags& f) {
  app->add_option("--config", f.config, "trainer YAML config (README: Configuration)");
  app->add_option("--set", f.sets,
                  "override one config key, e.g. --set flow.steps=200 (repeatable)");
  app->add_option("--data-dir", f.data_dir, "prepared data dir (config key data_dir)");
  app->add_option("--work-dir", f.work_dir, "stage outputs (config key work_dir)");
  app->add_option("--model-config", f.model_config, "model JSON (config key model_config)");
  app->add_option("--device", f.device, "cpu | cuda | cuda:N | auto (config key device)");
  app->add_option("--threads", f.threads, "intra-op threads, 0 = default (config key threads)");
  app->add_option("--seed", f.seed, "random seed (config key seed)");
  app->add_flag("--force", f.force, "redo stages even when their inputs are unchanged");
}

absl::StatusOr<TrainConfig> BuildConfig(const CommonFlags& f) {
  TrainConfig c;
  if (!f.config.empty()) {
    absl::StatusOr<TrainConfig> loaded = TrainConfig::Load(f.config);
    if (!loaded.ok()) return loaded.status();
    c = *loaded;
  }
  for (const std::string& s : f.sets) {
    absl::Status st = c.Set(s);
    if (!st.ok()) return st;
  }
  if (!f.data_dir.empty()) c.data_dir = f.data_dir;
  if (!f.work_dir.empty()) c.work_dir = f.work_dir;
  if (!f.model_config.empty()) c.model_config = f.model_config;
  if (!f.device.empty()) c.device = f.device;
  if (f.threads >= 0) c.threads = f.threads;
  if (f.seed >= 0) c.seed = static_cast<uint64_t>(f.seed);
  absl::Status v = c.Validate();
  if (!v.ok()) return v;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "cellflux-train: prepare data, pretrain autoencoders, cache latents, train and evaluate "
      "CellFluxMM"};
  app.require_subcommand(1);

  // prepare has its own flags (it runs before any config makes sense).
  cellflux::data::PrepareOptions prep;
  CLI::App* prepare =
      app.add_subcommand("prepare", "match images, plate maps and L1000 into a prepared data dir");
  prepare->add_option("--images", prep.images_dir, "BBBC047 images dir (one folder per plate)")
      ->required();
  prepare
      ->add_option("--platemaps", prep.platemaps_dir, "dir with barcode_platemap.csv and platemap/")
      ->required();
  prepare->add_option("--l1000", prep.l1000_path, "replicate_level_l1k.csv(.gz)")->required();
  prepare->add_option("--out", prep.out_dir, "prepared data dir to write")->required();
  prepare
      ->add_option("--test-perturbations", prep.test_perturbations, "held-out test perturbations")
      ->capture_default_str();
  prepare->add_option("--val-fraction", prep.val_fraction, "validation fraction of the rest")
      ->capture_default_str();
  prepare->add_option("--seed", prep.seed, "split/pairing seed")->capture_default_str();
  prepare
      ->add_option("--split-level", prep.split_level,
                   "perturbation (hold out whole compounds) | pair (paper: one held-out pair per "
                   "test compound) | compound-scaffold (hold out whole Bemis-Murcko scaffolds)")
      ->check(CLI::IsMember({"perturbation", "pair", "compound-scaffold"}))
      ->capture_default_str();
  prepare->add_option("--compounds", prep.compounds_csv,
                      "compound metadata CSV (broad_sample|pert_id, CPD_SMILES|smiles) for "
                      "structures the L1000 CSV lacks");
#ifdef CELLFLUX_WITH_RDKIT
  prep.parse_structure = [](const std::string& smiles)
      -> absl::StatusOr<cellflux::data::PrepareOptions::StructureInfo> {
    CF_ASSIGN_OR_RETURN(cellflux::chem::Structure s, cellflux::chem::ParseStructure(smiles));
    return cellflux::data::PrepareOptions::StructureInfo{s.canonical_smiles, s.scaffold};
  };
#endif

  CommonFlags common;
  std::string pretrained, checkpoint;
  bool resume = false;
  std::string extractor;
  using cellflux::trainer::StageContext;
  // The stages by name: which flags each takes and what it runs.
  struct Stage {
    const char* name;
    const char* help;
    bool takes_pretrained, takes_resume, takes_checkpoint, takes_extractor;
    std::function<absl::Status(StageContext&)> run;
    CLI::App* app = nullptr;
  };
  auto run_all = [&](StageContext& ctx) {
    absl::Status st = RunGeneAeStage(ctx);
    if (st.ok()) st = RunVaeStage(ctx);
    if (st.ok()) st = RunEncodeStage(ctx);
    if (st.ok()) st = RunFlowStage(ctx, resume);
    if (st.ok()) st = RunEvalStage(ctx, checkpoint);
    return st;
  };
  std::vector<Stage> stages = {
      {"gene-ae", "pretrain the gene autoencoder", false, false, false, false,
       [](StageContext& ctx) { return RunGeneAeStage(ctx); }},
      {"vae", "import (--pretrained) or train the image VAE", true, false, false, false,
       [](StageContext& ctx) { return RunVaeStage(ctx); }},
      {"encode", "cache latents with the frozen encoders", false, false, false, false,
       [](StageContext& ctx) { return RunEncodeStage(ctx); }},
      {"flow", "train the SiT flow model", false, true, false, false,
       [&](StageContext& ctx) { return RunFlowStage(ctx, resume); }},
      {"eval", "evaluate the EMA checkpoint on the test pairs", false, false, true, true,
       [&](StageContext& ctx) { return RunEvalStage(ctx, checkpoint); }},
      {"all", "gene-ae, vae, encode, flow, eval (skipping up-to-date stages)", true, true, false,
       true, run_all},
  };
  for (Stage& s : stages) {
    s.app = app.add_subcommand(s.name, s.help);
    AddCommon(s.app, common);
    if (s.takes_pretrained) {
      s.app->add_option("--pretrained", pretrained,
                        "diffusers AutoencoderKL .safetensors (e.g. sd-vae-ft-mse)");
    }
    if (s.takes_resume) {
      s.app->add_flag("--resume", resume, "continue from the latest checkpoint's trainer state");
    }
    if (s.takes_checkpoint) {
      s.app->add_option("--checkpoint", checkpoint,
                        "checkpoint dir or root (default: work_dir/checkpoints best, else latest)");
    }
    if (s.takes_extractor) {
      s.app->add_option("--extractor", extractor,
                        "TorchScript Inception (NVlabs inception-2015-12-05.pt) for FID/KID "
                        "(config key eval.extractor)");
    }
  }

  CLI11_PARSE(app, argc, argv);

  if (prepare->parsed()) {
    cellflux::ProgressOptions po;
    po.label = "prepare";
    po.unit = "item";
    std::unique_ptr<cellflux::ProgressBar> bar;
    std::string phase;
    prep.progress = [&](const cellflux::data::PrepareProgress& p) {
      if (p.stage != phase) {
        if (bar) bar->Finish();
        phase = p.stage;
        po.label = absl::StrCat("prepare/", p.stage);
        bar = std::make_unique<cellflux::ProgressBar>(p.total > 0 ? p.total : 0, po);
      }
      bar->Update(p.done);
    };
    absl::StatusOr<cellflux::data::PrepareSummary> summary = cellflux::data::PrepareDataset(prep);
    if (bar) bar->Finish();
    if (!summary.ok()) return Report("prepare", summary.status());
    std::cout << summary->ToText();
    return 0;
  }

  for (const Stage& s : stages) {
    if (!s.app->parsed()) continue;
    absl::StatusOr<TrainConfig> config = BuildConfig(common);
    if (!config.ok()) return Report(s.name, config.status());
    if (!pretrained.empty()) config->vae.pretrained = pretrained;
    if (!extractor.empty()) config->eval.extractor = extractor;
    absl::StatusOr<c10::Device> device = cellflux::ParseDevice(config->device);
    if (!device.ok()) return Report(s.name, device.status());
    cellflux::ConfigureRuntime("cellflux-train", *device, config->threads);
    auto dist = cellflux::trainer::Distributed::FromEnv(*device);
    if (!dist.ok()) return Report(s.name, dist.status());
    if (!(*dist)->is_main()) cellflux::SetMinLogLevel(cellflux::LogLevel::kWARNING);
    absl::StatusOr<cellflux::trainer::StageContext> ctx =
        cellflux::trainer::MakeStageContext(*config, *device, dist->get());
    if (!ctx.ok()) return Report(s.name, ctx.status());
    ctx->force = common.force;
    const std::string name = s.name;
    const absl::Status st = s.run(*ctx);
    return Report(name, st);
  }
  return 1;
}
