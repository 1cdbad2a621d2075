#include "trainer/components.h"

#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/chem/chem.h"
#include "common/torch/tensors.h"
#include "common/util/logging.h"
#include "common/util/status_macros.h"

namespace cellflux::trainer {
namespace {

absl::StatusOr<TensorMap> StageWeights(const StageContext& ctx, const std::string& stage,
                                       const std::string& file) {
  const std::string path = absl::StrCat(StageDir(ctx, stage), "/", file);
  if (!std::filesystem::exists(path)) {
    return absl::FailedPreconditionError(
        absl::StrCat("'", path, "' does not exist: run `cellflux-train ", stage, "` first"));
  }
  return LoadSafetensors(path);
}

}  // namespace

absl::StatusOr<CellFluxModel> BuildModelWithComponents(const StageContext& ctx) {
  CellFluxModel model(nullptr);
  CF_RETURN_IF_ERROR(TorchCall("building the model", [&] {
    torch::manual_seed(ctx.config.seed);
    model = CellFluxModel(ctx.model);
  }));
  CF_ASSIGN_OR_RETURN(TensorMap gene, StageWeights(ctx, "gene_ae", "gene_autoencoder.safetensors"));
  CF_RETURN_IF_ERROR(LoadStateDict(*model->gene_ae(), gene,
                                   StageDir(ctx, "gene_ae") + "/gene_autoencoder.safetensors"));
  CF_ASSIGN_OR_RETURN(TensorMap vae, StageWeights(ctx, "vae", "image_vae.safetensors"));
  CF_RETURN_IF_ERROR(LoadVaeWeights(model->vae()->autoencoder(), vae,
                                    StageDir(ctx, "vae") + "/image_vae.safetensors"));
  CF_RETURN_IF_ERROR(TorchCall("moving the model", [&] { model->to(ctx.device); }));
  model->vae()->eval();
  model->gene_ae()->eval();
  return model;
}

std::vector<PerturbationEntry> VocabularyEntries(const data::Manifest& m) {
  std::vector<PerturbationEntry> out;
  for (const auto& v : m.vocabulary) {
    PerturbationEntry e;
    e.id = v.perturbation_id;
    char* end = nullptr;
    double dose = std::strtod(v.dose.c_str(), &end);
    if (end != v.dose.c_str()) e.dose = dose;
    e.smiles = v.smiles;
    e.name = v.name;
    out.push_back(std::move(e));
  }
  return out;
}

absl::StatusOr<int> ApplyVocabularyStructures(CellFluxModel& model,
                                              std::vector<PerturbationEntry>& vocab) {
  const SiTConfig& sit = model->config().sit;
  if (!sit.uses_structure()) return 0;
  if (static_cast<int>(vocab.size()) > sit.num_classes) {
    return absl::InvalidArgumentError(absl::StrCat("structure encoder: ", vocab.size(),
                                                   " vocabulary compounds but sit.num_classes ",
                                                   sit.num_classes));
  }
  std::vector<std::vector<int>> bits(sit.num_classes);
  std::vector<double> doses(sit.num_classes, std::numeric_limits<double>::quiet_NaN());
  int missing = 0;
  for (size_t r = 0; r < vocab.size(); ++r) {
    doses[r] = vocab[r].dose;
    absl::StatusOr<chem::Structure> st =
        vocab[r].smiles.empty()
            ? absl::InvalidArgumentError("no SMILES")
            : chem::ParseStructure(vocab[r].smiles, chem::kDefaultRadius, sit.fingerprint_bits);
    if (!st.ok()) {
      ++missing;
      CF_LOG(WARNING) << "structure encoder: vocabulary compound " << vocab[r].id
                      << " has no usable structure (" << st.status().message()
                      << "); it is conditioned on its dose only";
      continue;
    }
    vocab[r].smiles = st->canonical_smiles;
    bits[r] = st->bits;
  }
  CF_RETURN_IF_ERROR(model->sit()->structure_embedder->SetVocabularyStructures(bits, doses));
  CF_LOG(INFO) << "structure encoder: " << vocab.size() - missing << " of " << vocab.size()
               << " vocabulary compounds with a fingerprint (Morgan r" << chem::kDefaultRadius
               << ", " << sit.fingerprint_bits << " bits)";
  return missing;
}

std::vector<GeneEntry> GeneEntries(const data::Manifest& m) {
  std::vector<GeneEntry> out;
  for (size_t i = 0; i < m.gene_ids.size(); ++i) {
    out.push_back({m.gene_ids[i], i < m.gene_symbols.size() ? m.gene_symbols[i] : ""});
  }
  return out;
}

}  // namespace cellflux::trainer
