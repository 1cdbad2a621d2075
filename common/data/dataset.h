// CellPaintingDataset: the (perturbed, control) training items of one split of a prepared dataset
// (manifest.h), as normalised image crops and standardised L1000 vectors. LibTorch, CPU only.
//
// Item i of a split is the i-th pair of that split in manifest order. Get(i, epoch) returns:
//   perturbed       [5, S, S] float32 in [-1, 1]  one site of the pair's well (DNA,RNA,ER,AGP,Mito)
//   perturbed_expr  [G] float32  (x - gene_mean) / max(gene_std, 1e-6), the pair's L1000 row
//   control         [5, S, S]    a DMSO well of the pair's CP plate
//   control_expr    [G]          a DMSO row of the pair's L1000 plate
//   label           vocabulary row of the perturbation, or kNotInVocabulary (-1) for
//                   perturbations outside the training vocabulary (val/test compounds)
//   ids             pair id, plates, wells, site numbers and L1000 rows actually used
//
// Sampling (DatasetOptions::training):
//   training = true   one random site of the well, a random S×S crop (uniform top-left offset),
//                     and a control well / site / crop and a control L1000 row drawn afresh from
//                     the same plates. Every draw comes from one generator seeded by
//                     (seed, epoch, pair_id), so an item is a pure function of (i, epoch, seed):
//                     independent of threads, of the order items are asked for and of the cache.
//   training = false  evaluation: the first available site (site_ids[0]) and a centre crop; the
//                     control is the manifest's pre-drawn one (control_well, its first site,
//                     control_l1000_row), so evaluation is identical in every epoch.
//
// Errors (Get): NOT_FOUND for a missing TIFF, INVALID_ARGUMENT for an unreadable image, a wrong
// bit depth, channels of different sizes, values above 4095 (check_12bit), a site smaller than
// S × S, or a NaN/Inf in an expression row. Messages name the file (with its size) or the row
// (expression.f32 row, its source row in the L1000 CSV and the gene). Each such error carries the
// payload kBadSampleReasonUrl with a short reason ("missing_file", "bad_image", "image_too_small",
// "bad_expression"), read with BadSampleReason(), so a loader can skip and count by reason
// (OnBadSample). Get never skips by itself.
//
// Threads: Get is const and may be called from any number of threads at once. The optional
// decoded-site cache (image_cache_bytes > 0) is an LRU of decoded 16-bit sites bounded in bytes,
// guarded by its own mutex; it changes speed only, never results.
//
// Ownership: the dataset shares ownership of the manifest (std::shared_ptr<const Manifest>).
#ifndef CELLFLUX_COMMON_DATA_DATASET_H_
#define CELLFLUX_COMMON_DATA_DATASET_H_

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/data/bbbc047.h"
#include "common/data/manifest.h"
#include "common/models/config.h"
#include "common/util/seed.h"

namespace cellflux::data {

inline constexpr int64_t kNotInVocabulary = -1;
// Standard deviations below this are clamped before dividing (constant genes).
inline constexpr double kMinGeneStd = 1e-6;
// Status payload key that carries the bad-sample reason of a Get error.
inline constexpr absl::string_view kBadSampleReasonUrl = "cellflux.data/bad_sample_reason";

// What the loader does with an item whose files or rows are bad.
enum class OnBadSample {
  kError,  // Next() returns the item's error (the default: bad data should stop a run)
  kSkip,   // the item is left out of its batch, counted by reason and logged
};

// The reason attached to a Get error ("missing_file", ...), or "" when the status has none.
std::string BadSampleReason(const absl::Status& status);

struct DatasetOptions {
  Split split = Split::kTrain;
  int64_t image_size = 256;          // S, pixels; every site must be at least S × S
  bool training = true;              // random site/crop/controls (see above) vs evaluation
  uint64_t seed = 0;                 // with (epoch, pair_id) seeds every draw of an item
  ImageNormalization normalization;  // raw → [-1, 1]; default value / 4095
  bool check_12bit = true;           // pixel values above 4095 are an error
  int64_t image_cache_bytes = 0;     // decoded-site LRU budget in bytes; 0 = no cache
  // (≈ 3.6 MB per 696×520 site; the whole of a small dataset fits in a few GB)

  absl::Status Validate() const;
};

// Where an item came from (for bookkeeping and evaluation outputs).
struct SampleIds {
  int64_t pair_id = 0;
  std::string perturbation;
  std::string plate;  // CP plate of both images
  std::string well;
  int site = 0;  // 1-based site number used
  std::string control_well;
  int control_site = 0;
  std::string l1000_plate;  // L1000 plate of both expression rows
  int64_t l1000_row = -1;   // rows of expression.f32
  int64_t control_l1000_row = -1;
};

struct Sample {
  torch::Tensor perturbed;       // [5, S, S] float32 in [-1, 1]
  torch::Tensor perturbed_expr;  // [G] float32, standardised
  torch::Tensor control;         // [5, S, S] float32 in [-1, 1]
  torch::Tensor control_expr;    // [G] float32, standardised
  int64_t label = kNotInVocabulary;
  SampleIds ids;
};

// Reads a site's five TIFFs (canonical order) → raw intensities, float32 [5, H, W] (not
// normalised). check_12bit rejects values above 4095. Errors as for Get, with the reason payload.
absl::StatusOr<torch::Tensor> LoadSiteImage(const SiteFiles& site, bool check_12bit);

// Top-left offset of a size × size crop of an h × w image: uniform over all positions when
// `random` (one draw from *rng per axis, rows first), the centre otherwise (rng unused, may be
// null). Requires h, w ≥ size.
std::pair<int64_t, int64_t> CropOffset(int64_t h, int64_t w, int64_t size, bool random,
                                       std::mt19937_64* rng);

// img: [..., H, W] → [..., size, size] view at CropOffset(H, W, size, random, rng). The caller
// checks H, W ≥ size. Uses the same draws as the dataset, so the trainer's encode stage crops a
// site exactly as Get does given the same generator state.
torch::Tensor CropImage(const torch::Tensor& img, int64_t size, bool random, std::mt19937_64* rng);

// Seeds are combined with MixSeeds (common/util/seed.h).
using ::cellflux::MixSeeds;

// Uniform integer in [0, n) from *rng (rejection sampling: identical on every platform, unlike
// std::uniform_int_distribution).
uint64_t UniformIndex(std::mt19937_64* rng, uint64_t n);

class DecodedSiteCache;

class CellPaintingDataset {
 public:
  // INVALID_ARGUMENT for bad options or a manifest without expression/gene stats; FAILED_PRECONDITION
  // when the split has no pairs or a pair's plate has no controls (naming the plate).
  static absl::StatusOr<std::unique_ptr<CellPaintingDataset>> Create(
      std::shared_ptr<const Manifest> manifest, const DatasetOptions& options);
  ~CellPaintingDataset();
  CellPaintingDataset(const CellPaintingDataset&) = delete;
  CellPaintingDataset& operator=(const CellPaintingDataset&) = delete;

  int64_t size() const { return static_cast<int64_t>(pair_index_.size()); }
  int64_t num_genes() const { return static_cast<int64_t>(manifest_->gene_ids.size()); }
  const DatasetOptions& options() const { return options_; }
  const Manifest& manifest() const { return *manifest_; }
  // Manifest pair of item i (0 ≤ i < size()).
  const ManifestPair& pair(int64_t i) const { return manifest_->pairs[pair_index_[i]]; }

  // Item i of `epoch` (see the header comment). Thread-safe.
  absl::StatusOr<Sample> Get(int64_t i, int64_t epoch) const;

  // Get() writing into caller memory (e.g. rows of a batch): images as [5, S, S] and expressions
  // as [G] contiguous float32. Same values as Get(); on error the destinations hold garbage.
  struct Destination {
    float* perturbed = nullptr;
    float* control = nullptr;
    float* perturbed_expr = nullptr;
    float* control_expr = nullptr;
  };
  absl::Status GetInto(int64_t i, int64_t epoch, const Destination& dst, int64_t* label,
                       SampleIds* ids) const;

  // Standardised expression row `row` of expression.f32 → [G]; INVALID_ARGUMENT on NaN/Inf.
  absl::StatusOr<torch::Tensor> Expression(int64_t row) const;

  // Decoded-site cache statistics (all zero without a cache).
  struct CacheStats {
    int64_t hits = 0, misses = 0, bytes = 0, entries = 0;
  };
  CacheStats cache_stats() const;

 private:
  CellPaintingDataset(std::shared_ptr<const Manifest> manifest, const DatasetOptions& options);
  absl::Status Index();
  // Reads (or fetches from the cache) site `site_id`, crops and normalises it into dst [5, S, S].
  absl::Status CropSite(int site_id, bool random, std::mt19937_64* rng, float* dst) const;
  absl::Status ExpressionInto(int64_t row, float* dst) const;  // dst: [G]

  std::shared_ptr<const Manifest> manifest_;
  DatasetOptions options_;
  std::vector<int64_t> pair_index_;                          // item → manifest pair
  std::vector<int64_t> labels_;                              // item → vocabulary row
  std::map<std::string, std::vector<int64_t>> cp_controls_;  // CP plate → cp_controls indices
  std::unique_ptr<DecodedSiteCache> cache_;                  // null without a cache
};

}  // namespace cellflux::data

#endif  // CELLFLUX_COMMON_DATA_DATASET_H_
