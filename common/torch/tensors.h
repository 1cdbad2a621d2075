// LibTorch ↔ safetensors, state-dict loading, and c10::Error → absl::Status at the boundary.
#ifndef CELLFLUX_COMMON_TORCH_TENSORS_H_
#define CELLFLUX_COMMON_TORCH_TENSORS_H_

#include <torch/nn/module.h>
#include <torch/types.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/io/safetensors.h"

namespace cellflux {

using TensorMap = std::map<std::string, torch::Tensor>;

// Runs `fn`, converting any c10::Error / std::exception into a Status: out-of-memory →
// RESOURCE_EXHAUSTED, anything else → INTERNAL, with `context` in front of the message.
absl::Status TorchCall(const std::string& context, const std::function<void()>& fn);

// dtype mapping; UNIMPLEMENTED for torch dtypes safetensors has no name for.
absl::StatusOr<io::DType> ToSafetensorsDType(torch::ScalarType type);
torch::ScalarType ToTorchDType(io::DType dtype);

// Copies one tensor out of a safetensors file into a fresh CPU tensor.
torch::Tensor TensorFromSafetensors(const io::SafetensorsFile& file, const io::TensorInfo& info);

// Reads every tensor of `path` (CPU, file dtypes).
absl::StatusOr<TensorMap> LoadSafetensors(const std::string& path);

// Writes tensors (moved to CPU, made contiguous) atomically.
absl::Status SaveSafetensors(const std::string& path, const TensorMap& tensors,
                             const std::map<std::string, std::string>& metadata = {});

// Parameters and buffers of `module` by their dotted names (what a checkpoint holds).
TensorMap StateDict(const torch::nn::Module& module);

struct LoadStateDictOptions {
  // Names in `tensors` that the module lacks are an error unless they start with one of these
  // prefixes (e.g. "loss." in diffusers files) or allow_extra is set.
  std::vector<std::string> ignore_prefixes;
  bool allow_extra = false;
  // Tensors whose shapes differ but may be adapted by the caller are listed here and skipped.
  std::vector<std::string> skip;
};

// Copies `tensors` into the module's parameters and buffers (converting dtype, keeping the
// module's device). Every missing name, every unexpected name and every shape mismatch is
// reported in one INVALID_ARGUMENT that starts with `label` (the file) and lists the names.
absl::Status LoadStateDict(torch::nn::Module& module, const TensorMap& tensors,
                           const std::string& label, const LoadStateDictOptions& options = {});

// "[2, 3, 4]" (the one shape-to-string of the tree, via io::ShapeString), "undefined" for an
// undefined tensor.
std::string ShapeOf(const torch::Tensor& t);

// s: [N] → [N, 1, ..., 1] with x's rank and dtype, so that s * x scales x row by row.
torch::Tensor RowScale(const torch::Tensor& s, const torch::Tensor& x);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_TORCH_TENSORS_H_
