#include "common/checkpoint/model_bundle.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "common/checkpoint/checkpoint_dir.h"
#include "common/util/status_macros.h"

namespace cellflux {

absl::StatusOr<CellFluxModel> ModelFromBundle(const CheckpointBundle& bundle,
                                              const torch::Device& device, Precision precision) {
  CF_RETURN_IF_ERROR(bundle.config.Validate());
  CellFluxModel model(nullptr);
  CF_RETURN_IF_ERROR(
      TorchCall("building the model", [&] { model = CellFluxModel(bundle.config); }));
  CF_RETURN_IF_ERROR(LoadSiTWeights(model->sit(), bundle.model, kModelFile));
  CF_RETURN_IF_ERROR(LoadVaeWeights(model->vae()->autoencoder(), bundle.image_vae, kImageVaeFile));
  CF_RETURN_IF_ERROR(
      LoadStateDict(*model->gene_ae(), bundle.gene_autoencoder, kGeneAutoencoderFile));
  CF_RETURN_IF_ERROR(TorchCall("moving the model to the device", [&] {
    model->to(device);
    model->eval();
    model->SetPrecision(precision);
  }));
  return model;
}

CheckpointBundle BundleFromModel(CellFluxModel& model, std::vector<PerturbationEntry> perturbations,
                                 std::vector<GeneEntry> genes, int64_t step,
                                 const TensorMap* sit_weights) {
  auto to_cpu = [](const TensorMap& m) {
    TensorMap out;
    for (const auto& [k, v] : m) out[k] = v.detach().to(torch::kCPU).clone();
    return out;
  };
  CheckpointBundle b;
  b.config = model->config();
  b.model = to_cpu(sit_weights != nullptr ? *sit_weights : StateDict(*model->sit()));
  b.image_vae = to_cpu(StateDict(*model->vae()->autoencoder()));
  b.gene_autoencoder = to_cpu(StateDict(*model->gene_ae()));
  b.perturbations = std::move(perturbations);
  b.genes = std::move(genes);
  b.step = step;
  return b;
}

absl::StatusOr<LoadedModel> LoadCheckpointModel(const std::string& path,
                                                const torch::Device& device, Precision precision) {
  LoadedModel out;
  CF_ASSIGN_OR_RETURN(out.dir, ResolveCheckpointDir(path));
  CF_ASSIGN_OR_RETURN(CheckpointBundle bundle, ReadCheckpoint(out.dir));
  absl::StatusOr<CellFluxModel> model = ModelFromBundle(bundle, device, precision);
  if (!model.ok()) {
    return absl::Status(model.status().code(),
                        absl::StrCat("checkpoint '", out.dir, "': ", model.status().message()));
  }
  out.model = *model;
  bundle.model.clear();
  bundle.image_vae.clear();
  bundle.gene_autoencoder.clear();
  out.metadata = std::move(bundle);
  return out;
}

}  // namespace cellflux
