#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/io/safetensors.h"
#include "tests/fuzz/safetensors_fuzz.h"

namespace cellflux::fuzz {

absl::Status FuzzSafetensors(absl::string_view bytes) {
  absl::StatusOr<io::SafetensorsFile> file = io::SafetensorsFile::Parse(std::string(bytes), "fuzz");
  if (!file.ok()) {
    if (file.status().code() != absl::StatusCode::kInvalidArgument) {
      return absl::InternalError(
          absl::StrCat("unexpected status code: ", file.status().ToString()));
    }
    return file.status();
  }
  // Touch every byte so ASan sees any out-of-bounds Data() view.
  uint64_t checksum = 0;
  std::vector<io::TensorToWrite> rewrite;
  for (const io::TensorInfo& t : file->tensors()) {
    absl::string_view data = file->Data(t);
    for (char c : data) checksum = checksum * 31 + static_cast<uint8_t>(c);
    if (data.size() != static_cast<uint64_t>(t.numel()) * io::DTypeSize(t.dtype)) {
      return absl::InternalError(
          absl::StrCat("tensor '", t.name, "': ", data.size(),
                       " bytes but numel × dtype size = ", t.numel() * io::DTypeSize(t.dtype)));
    }
    if (file->Find(t.name) != &t)
      return absl::InternalError(absl::StrCat("Find('", t.name, "') failed"));
    if (!file->Expect(t.name, t.dtype, t.shape).ok()) {
      return absl::InternalError(absl::StrCat("Expect('", t.name, "') failed"));
    }
    rewrite.push_back({t.name, t.dtype, t.shape, data});
  }
  // Round trip: what we accept, we can write, and it reads back the same.
  absl::StatusOr<std::string> again = io::SerializeSafetensors(rewrite, file->metadata());
  if (!again.ok())
    return absl::InternalError(absl::StrCat("re-serialize failed: ", again.status().ToString()));
  absl::StatusOr<io::SafetensorsFile> reread = io::SafetensorsFile::Parse(*again, "fuzz-rewrite");
  if (!reread.ok())
    return absl::InternalError(absl::StrCat("re-parse failed: ", reread.status().ToString()));
  if (reread->tensors().size() != file->tensors().size() ||
      reread->metadata() != file->metadata()) {
    return absl::InternalError("round trip changed the tensor list or the metadata");
  }
  for (const io::TensorInfo& t : reread->tensors()) {
    const io::TensorInfo* orig = file->Find(t.name);
    if (orig == nullptr || orig->dtype != t.dtype || orig->shape != t.shape ||
        file->Data(*orig) != reread->Data(t)) {
      return absl::InternalError(absl::StrCat("round trip changed tensor '", t.name, "'"));
    }
  }
  // Keep the reads from being optimized away.
  static volatile uint64_t sink = 0;
  sink = sink + checksum;
  return absl::OkStatus();
}

}  // namespace cellflux::fuzz
