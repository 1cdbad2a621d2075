// The checkpoint bundle of DESIGN.md §3: one directory, written atomically, validated on read.
//
//   <dir>/config.json                    ModelConfig JSON + "step", "model_id", "checkpoint_format"
//   <dir>/model.safetensors              EMA SiT weights, reference SiT names
//   <dir>/gene_autoencoder.safetensors   gene autoencoder weights
//   <dir>/image_vae.safetensors          AutoencoderKL weights, diffusers names
//   <dir>/perturbations.tsv              row_index broad_id dose smiles name (row = embedding row)
//   <dir>/genes.tsv                      order probe_id symbol
//   <dir>/trainer_state/                 optional, for resuming: <stem>.safetensors + state.json
//
// Writing (single writer per checkpoint root, e.g. rank 0): everything goes into a hidden temp
// directory next to <dir> (".<name>.tmp-<pid>-<rand>"), every file and the directory are
// fsync()ed, then the temp directory is renamed to <dir>. An existing <dir> is first renamed
// away (".<name>.old-<pid>-<rand>"), the new one renamed in, the parent fsync()ed and the old one
// deleted; a crash at any point leaves either the old or the new complete checkpoint under
// <dir>, or (between the two renames) the old one under its ".old" name, which
// CleanupCheckpointLeftovers (checkpoint_dir.h) renames back. Hidden leftovers never affect
// ReadCheckpoint.
//
// Reading validates everything and fails with INVALID_ARGUMENT (NOT_FOUND for a missing file)
// whose message names the file and, where relevant, the tensor, row or field. Weight tensors
// must be floating point with finite values; checking their names and shapes against the modules
// is left to LoadStateDict when the model loads them.
#ifndef CELLFLUX_COMMON_CHECKPOINT_CHECKPOINT_H_
#define CELLFLUX_COMMON_CHECKPOINT_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/checkpoint/vocab_tsv.h"
#include "common/models/config.h"
#include "common/torch/tensors.h"
#include "nlohmann/json.hpp"

namespace cellflux {

// File names inside a checkpoint directory.
inline constexpr char kConfigFile[] = "config.json";
inline constexpr char kModelFile[] = "model.safetensors";
inline constexpr char kGeneAutoencoderFile[] = "gene_autoencoder.safetensors";
inline constexpr char kImageVaeFile[] = "image_vae.safetensors";
inline constexpr char kPerturbationsFile[] = "perturbations.tsv";
inline constexpr char kGenesFile[] = "genes.tsv";
inline constexpr char kTrainerStateDir[] = "trainer_state";
inline constexpr char kTrainerStateJson[] = "state.json";

struct CheckpointBundle {
  ModelConfig config;
  TensorMap model;                               // EMA SiT weights, reference SiT names
  TensorMap gene_autoencoder;                    // gene autoencoder weights
  TensorMap image_vae;                           // AutoencoderKL weights, diffusers names
  std::vector<PerturbationEntry> perturbations;  // size config.sit.num_classes; row = embedding row
  std::vector<GeneEntry> genes;                  // size config.gene_ae.num_genes
  int64_t step = 0;                              // optimizer step the weights come from (≥ 0)
  std::string model_id;                          // empty on write → DefaultModelId(bundle)
};

// Resume-only state: raw (non-EMA) weights, optimizer tensors, RNG, data position.
struct TrainerState {
  // trainer_state/<stem>.safetensors for each entry; stems are [A-Za-z0-9_.-]+ (e.g. "model",
  // "optimizer"). Any dtype is allowed (optimizer step counters are integers).
  std::map<std::string, TensorMap> tensors;
  nlohmann::json state = nlohmann::json::object();  // trainer_state/state.json (an object)
};

// "<config.name>@step<step>-<first 8 hex digits of a 64-bit FNV-1a hash over the config JSON,
// the vocabularies and every tensor's name, dtype, shape and bytes>". Deterministic.
std::string DefaultModelId(const CheckpointBundle& bundle);

// Checks the bundle is self-consistent (config valid; vocabulary sizes match the config; ids
// unique; weights floating point and finite; step ≥ 0). `dir` prefixes the messages, which name
// the file each problem would be in.
absl::Status ValidateCheckpointBundle(const CheckpointBundle& bundle, const std::string& dir);

// Validates, then writes `dir` atomically as described above (replacing an existing `dir`).
// `trainer_state` may be null. The parent directory is created if needed.
absl::Status WriteCheckpoint(const std::string& dir, const CheckpointBundle& bundle,
                             const TrainerState* trainer_state = nullptr);

// Reads and validates a checkpoint directory (not a root: see ResolveCheckpointDir). Does not
// read trainer_state/.
absl::StatusOr<CheckpointBundle> ReadCheckpoint(const std::string& dir);

// Reads <dir>/trainer_state/. NOT_FOUND if the checkpoint has none.
absl::StatusOr<TrainerState> ReadTrainerState(const std::string& dir);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_CHECKPOINT_CHECKPOINT_H_
