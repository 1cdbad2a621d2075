// Shared stage plumbing: context, paths, stamps.
#include "trainer/stages.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/data/manifest.h"
#include "common/util/files.h"
#include "common/util/logging.h"
#include "common/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace cellflux::trainer {

std::string StageDir(const StageContext& ctx, const std::string& stage) {
  return absl::StrCat(ctx.config.work_dir, "/", stage);
}

std::string CheckpointsRoot(const StageContext& ctx) { return StageDir(ctx, "checkpoints"); }

std::string HashStrings(std::initializer_list<std::string> parts) {
  // FNV-1a 64 over the parts with separators: a content key for stamps, not a security hash.
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const std::string& p : parts) {
    for (unsigned char c : p) h = (h ^ c) * 0x100000001b3ULL;
    h = (h ^ 0xff) * 0x100000001b3ULL;
  }
  return absl::StrFormat("%016x", h);
}

std::string StampInputs(const std::string& stage_dir) {
  absl::StatusOr<std::string> text = ReadFile(absl::StrCat(stage_dir, "/stamp.json"));
  if (!text.ok()) return "";
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  return !j.is_discarded() && j.is_object() ? j.value("inputs", "") : "";
}

bool StampMatches(const std::string& stage_dir, const std::string& hash) {
  const std::string inputs = StampInputs(stage_dir);
  return !inputs.empty() && inputs == hash;
}

absl::Status WriteStamp(const std::string& stage_dir, const std::string& hash) {
  CF_RETURN_IF_ERROR(MakeDirs(stage_dir));
  nlohmann::json j = {{"inputs", hash}};
  return WriteFileAtomic(absl::StrCat(stage_dir, "/stamp.json"), j.dump());
}

absl::Status RemoveStamp(const std::string& stage_dir) {
  std::error_code ec;
  std::filesystem::remove(absl::StrCat(stage_dir, "/stamp.json"), ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot remove ", stage_dir, "/stamp.json: ", ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<StageContext> MakeStageContext(const TrainConfig& config,
                                              const torch::Device& device, Distributed* dist) {
  CF_RETURN_IF_ERROR(config.Validate());
  StageContext ctx;
  ctx.config = config;
  ctx.device = device;
  ctx.dist = dist;
  CF_ASSIGN_OR_RETURN(ctx.model, ModelConfig::Load(config.model_config));
  // The vocabulary and gene list come from the prepared data, not the JSON: fit them.
  CF_ASSIGN_OR_RETURN(data::Manifest m,
                      data::LoadManifest(config.data_dir, /*load_expression=*/false));
  if (m.vocabulary.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("prepared data '", config.data_dir, "' has an empty training vocabulary"));
  }
  ctx.model.sit.num_classes = static_cast<int>(m.vocabulary.size());
  ctx.model.gene_ae.num_genes = static_cast<int>(m.gene_ids.size());
  CF_RETURN_IF_ERROR(ctx.model.Validate());
  return ctx;
}

}  // namespace cellflux::trainer
