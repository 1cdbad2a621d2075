// cellflux-tool init-checkpoint: a valid checkpoint with randomly initialised weights, for tests,
// demos and load tests of the server.
//
//   cellflux-tool init-checkpoint --config configs/tiny.json --out DIR [--perturbations N]
//                                 [--genes N] [--seed S] [--smiles-file FILE]
//
// Perturbation ids are synthetic Broad-style ids (BRD-K000000NN-001-01-1); genes are the first N
// real L1000 landmark probes. --perturbations/--genes override the config's sizes.
// --smiles-file (one SMILES per line, '#' comments and blank lines skipped): vocabulary row i gets
// line i's compound (rows past the file have none). With a structure config
// (sit.condition "structure" / "id+structure") each row's canonical SMILES and Morgan bits go
// into the checkpoint (perturbations.tsv, structure_embedder.fingerprints), as training writes
// them; without the file the fingerprints stay zero. An unparsable SMILES is INVALID_ARGUMENT
// naming the line.
#include <torch/torch.h>

#include <fstream>
#include <iostream>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/checkpoint/checkpoint.h"
#include "common/checkpoint/model_bundle.h"
#include "common/chem/chem.h"
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
  std::string smiles_file;
};

// Fills vocab[i].smiles from the file's line i (canonical) and, for structure configs, the
// structure encoder's vocabulary fingerprints.
absl::Status AddStructures(const std::string& path, CellFluxModel& model,
                           std::vector<PerturbationEntry>& vocab) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--smiles-file ", path, ": cannot open"));
  const SiTConfig& sit = model->config().sit;
  std::vector<std::vector<int>> bits(vocab.size());
  std::vector<double> doses;
  for (const PerturbationEntry& e : vocab) doses.push_back(e.dose);
  std::string line;
  size_t row = 0;
  for (int64_t n = 1; std::getline(in, line) && row < vocab.size(); ++n) {
    const std::string smiles(absl::StripAsciiWhitespace(line));
    if (smiles.empty() || smiles[0] == '#') continue;
    absl::StatusOr<chem::Structure> s =
        chem::ParseStructure(smiles, chem::kDefaultRadius, sit.fingerprint_bits);
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--smiles-file ", path, " line ", n, ": ", s.status().message()));
    }
    vocab[row].smiles = s->canonical_smiles;
    bits[row] = s->bits;
    ++row;
  }
  if (!sit.uses_structure()) return absl::OkStatus();
  return model->sit()->structure_embedder->SetVocabularyStructures(bits, doses);
}

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
  if (!o.smiles_file.empty()) CF_RETURN_IF_ERROR(AddStructures(o.smiles_file, model, vocab));
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
  app->add_option("--smiles-file", o->smiles_file,
                  "one SMILES per line: vocabulary row i's compound (structure configs also get "
                  "its fingerprint)");
  return [o]() -> int { return ReportStatus("init-checkpoint", InitCheckpoint(*o)); };
}

}  // namespace

// Registered by hand: the verb name has a dash, which CF_TOOL_COMMAND's identifier can't hold.
static Registrar cf_tool_registrar_init_checkpoint(
    "init-checkpoint", "Write a checkpoint with randomly initialised weights", SetupInitCheckpoint);

}  // namespace cellflux::tool
