// CellFluxModel ↔ checkpoint bundle: what the trainer writes, what the server and tools load.
#ifndef CELLFLUX_COMMON_CHECKPOINT_MODEL_BUNDLE_H_
#define CELLFLUX_COMMON_CHECKPOINT_MODEL_BUNDLE_H_

#include <torch/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/checkpoint/checkpoint.h"
#include "common/models/cellflux_model.h"

namespace cellflux {

// Builds the model of bundle.config on `device` and loads all three weight files, checking every
// name and shape (errors name the checkpoint file and the tensors). Eval mode, in `precision`
// (CellFluxModelImpl::SetPrecision; kAuto = bf16 on CUDA, fp32 elsewhere; this also sets the
// process-wide TF32 switches).
absl::StatusOr<CellFluxModel> ModelFromBundle(const CheckpointBundle& bundle,
                                              const torch::Device& device,
                                              Precision precision = Precision::kAuto);

// The bundle of a model's current weights (copied to CPU). `sit_weights` replaces the SiT's own
// parameters when given (the trainer passes the EMA weights).
CheckpointBundle BundleFromModel(CellFluxModel& model, std::vector<PerturbationEntry> perturbations,
                                 std::vector<GeneEntry> genes, int64_t step,
                                 const TensorMap* sit_weights = nullptr);

struct LoadedModel {
  std::string dir;            // the resolved checkpoint directory
  CheckpointBundle metadata;  // config, vocabularies, step, model id (weight maps emptied)
  CellFluxModel model{nullptr};
};

// Resolves `path` (a checkpoint dir or a root with `latest`), reads, validates and loads it
// (ModelFromBundle, same `precision`).
absl::StatusOr<LoadedModel> LoadCheckpointModel(const std::string& path,
                                                const torch::Device& device,
                                                Precision precision = Precision::kAuto);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_CHECKPOINT_MODEL_BUNDLE_H_
