#include "trainer/latent_cache.h"

#include <torch/torch.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/torch/tensors.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace cellflux::trainer {
namespace {

using json = nlohmann::json;

std::string ShardPath(const std::string& dir, int shard) {
  return absl::StrFormat("%s/image_latents-%05d.safetensors", dir, shard);
}

}  // namespace

absl::Status WriteLatentIndex(const std::string& path, const LatentIndex& index) {
  json j;
  j["image_rows"] = index.image_rows;
  j["rows_per_shard"] = index.rows_per_shard;
  j["latent_shape"] = index.latent_shape;
  j["gene_latent_dim"] = index.gene_latent_dim;
  json wells = json::array();
  for (const auto& w : index.wells)
    wells.push_back({{"plate", w.plate}, {"well", w.well}, {"crops", w.crop_rows}});
  j["wells"] = wells;
  json pairs = json::array();
  for (const auto& p : index.pairs) {
    pairs.push_back({{"y", p.y},
                     {"well", p.well},
                     {"gene_row", p.gene_row},
                     {"split", p.split},
                     {"cp_plate", p.cp_plate},
                     {"l1000_plate", p.l1000_plate}});
  }
  j["pairs"] = pairs;
  j["cp_controls"] = index.cp_controls;
  j["l1000_controls"] = index.l1000_controls;
  return WriteFileAtomic(path, j.dump());
}

absl::StatusOr<LatentIndex> ReadLatentIndex(const std::string& path) {
  CF_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("latent index '", path, "': not a JSON object"));
  }
  LatentIndex index;
  try {
    index.image_rows = j.at("image_rows").get<int64_t>();
    index.rows_per_shard = j.at("rows_per_shard").get<int64_t>();
    index.latent_shape = j.at("latent_shape").get<std::vector<int64_t>>();
    index.gene_latent_dim = j.at("gene_latent_dim").get<int64_t>();
    for (const auto& w : j.at("wells")) {
      index.wells.push_back({w.at("plate").get<std::string>(), w.at("well").get<std::string>(),
                             w.at("crops").get<std::vector<int64_t>>()});
    }
    for (const auto& p : j.at("pairs")) {
      CachedPair pair;
      pair.y = p.at("y").get<int64_t>();
      pair.well = p.at("well").get<int64_t>();
      pair.gene_row = p.at("gene_row").get<int64_t>();
      pair.split = p.at("split").get<std::string>();
      pair.cp_plate = p.at("cp_plate").get<std::string>();
      pair.l1000_plate = p.at("l1000_plate").get<std::string>();
      index.pairs.push_back(std::move(pair));
    }
    index.cp_controls = j.at("cp_controls").get<std::map<std::string, std::vector<int64_t>>>();
    index.l1000_controls =
        j.at("l1000_controls").get<std::map<std::string, std::vector<int64_t>>>();
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("latent index '", path, "': ", e.what()));
  }
  // Cross-check references so a corrupt index fails here, not as an out-of-range gather later.
  for (size_t i = 0; i < index.wells.size(); ++i) {
    for (int64_t r : index.wells[i].crop_rows) {
      if (r < 0 || r >= index.image_rows) {
        return absl::InvalidArgumentError(absl::StrCat("latent index '", path, "': well ", i,
                                                       " crop row ", r, " outside [0, ",
                                                       index.image_rows, ")"));
      }
    }
    if (index.wells[i].crop_rows.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("latent index '", path, "': well ", i, " has no crops"));
    }
  }
  for (size_t i = 0; i < index.pairs.size(); ++i) {
    const auto& p = index.pairs[i];
    if (p.well < 0 || p.well >= static_cast<int64_t>(index.wells.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("latent index '", path, "': pair ", i, " well ", p.well, " out of range"));
    }
    if (!index.cp_controls.count(p.cp_plate) || !index.l1000_controls.count(p.l1000_plate)) {
      return absl::InvalidArgumentError(absl::StrCat("latent index '", path, "': pair ", i,
                                                     " has no controls on plate ", p.cp_plate,
                                                     " / ", p.l1000_plate));
    }
  }
  return index;
}

LatentCacheWriter::LatentCacheWriter(std::string dir, int64_t rows_per_shard)
    : dir_(std::move(dir)), rows_per_shard_(rows_per_shard) {}

absl::StatusOr<int64_t> LatentCacheWriter::AppendImages(const torch::Tensor& mean,
                                                        const torch::Tensor& std) {
  if (latent_shape_.empty()) latent_shape_ = mean.sizes().slice(1).vec();
  const int64_t first = rows_;
  int64_t offset = 0;
  const int64_t n = mean.size(0);
  while (offset < n) {
    int64_t take = std::min(n - offset, rows_per_shard_ - pending_rows_);
    pending_mean_.push_back(mean.narrow(0, offset, take).to(torch::kCPU, torch::kFloat16));
    pending_std_.push_back(std.narrow(0, offset, take).to(torch::kCPU, torch::kFloat16));
    pending_rows_ += take;
    offset += take;
    rows_ += take;
    if (pending_rows_ == rows_per_shard_) CF_RETURN_IF_ERROR(FlushShard());
  }
  return first;
}

absl::Status LatentCacheWriter::FlushShard() {
  if (pending_rows_ == 0) return absl::OkStatus();
  CF_RETURN_IF_ERROR(MakeDirs(dir_));
  TensorMap t = {{"mean", torch::cat(pending_mean_, 0)}, {"std", torch::cat(pending_std_, 0)}};
  CF_RETURN_IF_ERROR(SaveSafetensors(ShardPath(dir_, shard_), t));
  ++shard_;
  pending_mean_.clear();
  pending_std_.clear();
  pending_rows_ = 0;
  return absl::OkStatus();
}

absl::Status LatentCacheWriter::Finish(LatentIndex index, const torch::Tensor& gene_latents,
                                       const torch::Tensor& expression) {
  CF_RETURN_IF_ERROR(FlushShard());
  CF_RETURN_IF_ERROR(MakeDirs(dir_));
  index.image_rows = rows_;
  index.rows_per_shard = rows_per_shard_;
  index.latent_shape = latent_shape_;
  index.gene_latent_dim = gene_latents.defined() ? gene_latents.size(1) : 0;
  if (gene_latents.defined()) {
    CF_RETURN_IF_ERROR(SaveSafetensors(
        absl::StrCat(dir_, "/gene_latents.safetensors"),
        {{"latent", gene_latents.to(torch::kCPU, torch::kFloat32).contiguous()},
         {"expression", expression.to(torch::kCPU, torch::kFloat32).contiguous()}}));
  }
  // The index goes last: a cache without index.json is incomplete and is rebuilt.
  return WriteLatentIndex(absl::StrCat(dir_, "/index.json"), index);
}

absl::StatusOr<std::unique_ptr<LatentCache>> LatentCache::Open(const std::string& dir) {
  auto cache = std::make_unique<LatentCache>();
  CF_ASSIGN_OR_RETURN(cache->index_, ReadLatentIndex(absl::StrCat(dir, "/index.json")));
  const LatentIndex& ix = cache->index_;
  const int64_t shards = (ix.image_rows + ix.rows_per_shard - 1) / ix.rows_per_shard;
  std::vector<int64_t> row_shape = ix.latent_shape;
  for (int64_t s = 0; s < shards; ++s) {
    CF_ASSIGN_OR_RETURN(io::SafetensorsFile f,
                        io::SafetensorsFile::Read(ShardPath(dir, static_cast<int>(s))));
    const int64_t rows = std::min(ix.rows_per_shard, ix.image_rows - s * ix.rows_per_shard);
    std::vector<int64_t> shape = {rows};
    shape.insert(shape.end(), row_shape.begin(), row_shape.end());
    CF_RETURN_IF_ERROR(f.Expect("mean", io::DType::kF16, shape).status());
    CF_RETURN_IF_ERROR(f.Expect("std", io::DType::kF16, shape).status());
    cache->shards_.push_back(std::move(f));
  }
  if (ix.gene_latent_dim > 0) {
    CF_ASSIGN_OR_RETURN(TensorMap g,
                        LoadSafetensors(absl::StrCat(dir, "/gene_latents.safetensors")));
    auto it = g.find("latent");
    auto ex = g.find("expression");
    if (it == g.end() || it->second.dim() != 2 || it->second.size(1) != ix.gene_latent_dim ||
        ex == g.end() || ex->second.dim() != 2 || ex->second.size(0) != it->second.size(0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("latent cache '", dir, "': gene_latents.safetensors needs `latent` [R, ",
                       ix.gene_latent_dim, "] and `expression` [R, G]"));
    }
    cache->gene_latents_ = it->second;
    cache->expression_ = ex->second;
    for (const auto& p : ix.pairs) {
      if (p.gene_row < 0 || p.gene_row >= cache->gene_latents_.size(0)) {
        return absl::InvalidArgumentError(
            absl::StrCat("latent cache '", dir, "': gene row ", p.gene_row, " out of range"));
      }
    }
  }
  return cache;
}

void LatentCache::GatherImages(const std::vector<int64_t>& rows, torch::Tensor* mean,
                               torch::Tensor* std) const {
  std::vector<int64_t> shape = {static_cast<int64_t>(rows.size())};
  shape.insert(shape.end(), index_.latent_shape.begin(), index_.latent_shape.end());
  torch::Tensor m = torch::empty(shape, torch::kFloat16);
  torch::Tensor s = torch::empty(shape, torch::kFloat16);
  const int64_t row_bytes = m.numel() > 0 ? m.nbytes() / static_cast<int64_t>(rows.size()) : 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t shard = rows[i] / index_.rows_per_shard, local = rows[i] % index_.rows_per_shard;
    const io::SafetensorsFile& f = shards_[shard];
    absl::string_view md = f.Data(*f.Find("mean")), sd = f.Data(*f.Find("std"));
    std::memcpy(static_cast<char*>(m.data_ptr()) + i * row_bytes, md.data() + local * row_bytes,
                row_bytes);
    std::memcpy(static_cast<char*>(s.data_ptr()) + i * row_bytes, sd.data() + local * row_bytes,
                row_bytes);
  }
  *mean = m.to(torch::kFloat32);
  *std = s.to(torch::kFloat32);
}

}  // namespace cellflux::trainer
