// cellflux-tool init-checkpoint: a valid checkpoint with randomly initialised weights, for tests,
// demos and load tests of the server.
//
//   cellflux-tool init-checkpoint --config configs/tiny.json --out DIR [--perturbations N]
//                                 [--genes N] [--seed S]
//
// Perturbation ids are synthetic Broad-style ids (BRD-K000000NN-001-01-1); genes are the first N
// real L1000 landmark probes. --perturbations/--genes override the config's sizes.
#include <torch/torch.h>

#include <iostream>
#include <memory>

#include "absl/strings/str_format.h"
#include "common/checkpoint/checkpoint.h"
#include "common/checkpoint/model_bundle.h"
#include "common/data/landmark_genes.h"
#include "common/tools/command.h"
#include "common/util/status_macros.h"

namespace cellflux::tool {
namespace {

struct InitOptions {
  std::string config = "configs/tiny.json";
  std::string out;
  int perturbations = 0;
  int genes = 0;
  uint64_t seed = 0;
};

absl::Status InitCheckpoint(const InitOptions& o) {
  CF_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::Load(o.config));
  if (o.perturbations > 0) config.sit.num_classes = o.perturbations;
  if (o.genes > 0) config.gene_ae.num_genes = o.genes;
  const auto& landmarks = LandmarkGenes();
  if (config.gene_ae.num_genes > static_cast<int>(landmarks.size())) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--genes %d exceeds the %d L1000 landmark genes", config.gene_ae.num_genes,
                        landmarks.size()));
  }
  CF_RETURN_IF_ERROR(config.Validate());
  torch::manual_seed(o.seed);
  CellFluxModel model(nullptr);
  CF_RETURN_IF_ERROR(TorchCall("building the model", [&] { model = CellFluxModel(config); }));
  std::vector<PerturbationEntry> vocab;
  for (int i = 0; i < config.sit.num_classes; ++i) {
    PerturbationEntry e;
    e.id = absl::StrFormat("BRD-K%08d-001-01-1", i);
    e.dose = 10.0;
    e.name = absl::StrFormat("random-%d", i);
    vocab.push_back(e);
  }
  std::vector<GeneEntry> genes;
  for (int i = 0; i < config.gene_ae.num_genes; ++i)
    genes.push_back({landmarks[i].probe_id, landmarks[i].symbol});
  CheckpointBundle bundle = BundleFromModel(model, vocab, genes, /*step=*/0);
  CF_RETURN_IF_ERROR(WriteCheckpoint(o.out, bundle));
  std::cout << "wrote " << o.out << ": " << config.name << ", " << config.sit.num_classes
            << " perturbations, " << config.gene_ae.num_genes << " genes, random weights (seed "
            << o.seed << ")\n";
  return absl::OkStatus();
}

RunFn SetupInitCheckpoint(CLI::App* app) {
  auto o = std::make_shared<InitOptions>();
  app->add_option("--config", o->config, "model config JSON")->capture_default_str();
  app->add_option("--out", o->out, "checkpoint directory to write")->required();
  app->add_option("--perturbations", o->perturbations,
                  "vocabulary size (default: the config's sit.num_classes)");
  app->add_option("--genes", o->genes, "number of genes (default: the config's gene_ae.num_genes)");
  app->add_option("--seed", o->seed, "weight initialisation seed")->capture_default_str();
  return [o]() -> int { return ReportStatus("init-checkpoint", InitCheckpoint(*o)); };
}

}  // namespace

// Registered by hand: the verb name has a dash, which CF_TOOL_COMMAND's identifier can't hold.
static Registrar cf_tool_registrar_init_checkpoint(
    "init-checkpoint", "Write a checkpoint with randomly initialised weights", SetupInitCheckpoint);

}  // namespace cellflux::tool
