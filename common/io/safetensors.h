// safetensors reader and writer, LibTorch-free.
//
// Format (https://huggingface.co/docs/safetensors): 8-byte little-endian header length N, N bytes
// of JSON ({"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"k": "v"}}), then the raw little-endian data; offsets are relative to the
// start of the data section.
//
// Reading validates everything before any tensor is touched: the header length against the file
// size, the JSON, every dtype/shape/offset, that byte ranges match dtype × shape, lie inside the
// data section, do not overlap and leave no holes. Every error message names the file (the
// `label`) and, where there is one, the tensor. Reading never crashes or reads out of bounds on
// any input (fuzzed by tests/fuzz/safetensors_fuzz.cc).
#ifndef CELLFLUX_COMMON_IO_SAFETENSORS_H_
#define CELLFLUX_COMMON_IO_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cellflux::io {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32" → kF32 etc. INVALID_ARGUMENT for unknown names.
absl::StatusOr<DType> ParseDType(absl::string_view name);
const char* DTypeName(DType dtype);
size_t DTypeSize(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets in the data section
  uint64_t end = 0;

  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// A validated safetensors file. Owns (or maps) its bytes; cheap to move.
class SafetensorsFile {
 public:
  // Memory-maps and validates `path`. NOT_FOUND if missing, INVALID_ARGUMENT if malformed.
  static absl::StatusOr<SafetensorsFile> Read(const std::string& path);
  // Validates an in-memory blob; `label` names it in error messages.
  static absl::StatusOr<SafetensorsFile> Parse(std::string bytes, std::string label);

  const std::string& label() const { return label_; }
  // Tensors in data-offset order.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // nullptr when absent.
  const TensorInfo* Find(absl::string_view name) const;
  // The tensor's raw little-endian bytes (valid while this object lives).
  absl::string_view Data(const TensorInfo& info) const;

  // The tensor `name` with the expected dtype and shape; the error names file, tensor, expected
  // and actual values.
  absl::StatusOr<const TensorInfo*> Expect(absl::string_view name, DType dtype,
                                           const std::vector<int64_t>& shape) const;

 private:
  struct Backing;
  static absl::StatusOr<SafetensorsFile> Validate(std::shared_ptr<Backing> backing,
                                                  std::string label);

  std::shared_ptr<Backing> backing_;
  std::string label_;
  uint64_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write; `data` must hold exactly numel × DTypeSize(dtype) bytes.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  absl::string_view data;
};

// Serializes tensors (sorted by name, 8-byte aligned data) and metadata to the safetensors format.
absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<TensorToWrite>& tensors,
    const std::map<std::string, std::string>& metadata = {});

// Serializes and writes `path` atomically (temp file + fsync + rename).
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

std::string ShapeString(const std::vector<int64_t>& shape);

}  // namespace cellflux::io

#endif  // CELLFLUX_COMMON_IO_SAFETENSORS_H_
