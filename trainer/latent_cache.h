// The latent cache: what `cellflux-train encode` writes and `flow` reads, so flow training never
// touches a TIFF. Directory layout (work_dir/latents/):
//   image_latents-00000.safetensors ...  `mean`, `std` [rows, C·L, h, w] float16 posterior of
//                                        scaled image latents, `rows` per shard (memory-mapped)
//   gene_latents.safetensors             `latent` [R, Lg] float32, one row per L1000 row used, and
//                                        `expression` [R, G] the same rows standardized (for MAE)
//   index.json                           wells (plate, well, crop rows), pairs, controls, split
//
// A pair is one perturbed treatment replicate: perturbation row y, its CP well (image crops) and
// its L1000 row. Controls are DMSO wells / rows of the same plate, per modality.
#ifndef CELLFLUX_TRAINER_LATENT_CACHE_H_
#define CELLFLUX_TRAINER_LATENT_CACHE_H_

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/io/safetensors.h"

namespace cellflux::trainer {

struct CachedWell {
  std::string plate;
  std::string well;
  std::vector<int64_t> crop_rows;  // rows in the image-latent table; [0] = centre crop
};

struct CachedPair {
  int64_t y = 0;         // perturbation row (embedding index)
  int64_t well = 0;      // index into wells
  int64_t gene_row = 0;  // row of gene_latents (the perturbed L1000 replicate)
  std::string split;     // train | val | test
  std::string cp_plate;  // = wells[well].plate
  std::string l1000_plate;
};

struct LatentIndex {
  std::vector<CachedWell> wells;
  std::vector<CachedPair> pairs;
  std::map<std::string, std::vector<int64_t>> cp_controls;     // CP plate → DMSO well indices
  std::map<std::string, std::vector<int64_t>> l1000_controls;  // L1000 plate → DMSO gene rows
  int64_t image_rows = 0;
  int64_t rows_per_shard = 4096;
  std::vector<int64_t> latent_shape;  // [C·L, h, w]
  int64_t gene_latent_dim = 0;
};

// Write side, used by the encode stage: append rows, then Finish() writes index + last shard.
class LatentCacheWriter {
 public:
  LatentCacheWriter(std::string dir, int64_t rows_per_shard);
  // mean/std: [n, C·L, h, w]; returns the first row id.
  absl::StatusOr<int64_t> AppendImages(const torch::Tensor& mean, const torch::Tensor& std);
  absl::Status Finish(LatentIndex index, const torch::Tensor& gene_latents,
                      const torch::Tensor& expression);

 private:
  absl::Status FlushShard();
  std::string dir_;
  int64_t rows_per_shard_;
  int64_t rows_ = 0;
  int shard_ = 0;
  std::vector<torch::Tensor> pending_mean_, pending_std_;
  int64_t pending_rows_ = 0;
  std::vector<int64_t> latent_shape_;
};

// Read side: memory-maps the shards; Gather() copies selected rows into float32 tensors.
class LatentCache {
 public:
  static absl::StatusOr<std::unique_ptr<LatentCache>> Open(const std::string& dir);

  const LatentIndex& index() const { return index_; }
  // rows: image-latent row ids → mean/std [n, C·L, h, w] float32 (CPU).
  void GatherImages(const std::vector<int64_t>& rows, torch::Tensor* mean,
                    torch::Tensor* std) const;
  const torch::Tensor& gene_latents() const { return gene_latents_; }  // [R, Lg] float32
  const torch::Tensor& expression() const { return expression_; }      // [R, G] standardized

 private:
  LatentIndex index_;
  std::vector<io::SafetensorsFile> shards_;
  torch::Tensor gene_latents_;
  torch::Tensor expression_;
};

absl::Status WriteLatentIndex(const std::string& path, const LatentIndex& index);
absl::StatusOr<LatentIndex> ReadLatentIndex(const std::string& path);

}  // namespace cellflux::trainer

#endif  // CELLFLUX_TRAINER_LATENT_CACHE_H_
