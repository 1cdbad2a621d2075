// Folders of RGB PNG images as uint8 tensors, for FID/KID between folders.
#ifndef CELLFLUX_COMMON_METRICS_IMAGE_FOLDER_H_
#define CELLFLUX_COMMON_METRICS_IMAGE_FOLDER_H_

#include <torch/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/metrics/feature_extractor.h"
#include "common/metrics/fid.h"

namespace cellflux {

// The *.png files of `dir`, sorted by name. NOT_FOUND when the folder is missing or has none.
absl::StatusOr<std::vector<std::string>> ListPngs(const std::string& dir);

// Features of the listed images, in batches of `batch` (images must share one size; the error
// names the first that does not).
absl::StatusOr<torch::Tensor> FolderFeatures(const std::vector<std::string>& files,
                                             FeatureExtractor& extractor, int64_t batch = 64);

struct FolderScores {
  int64_t real = 0, fake = 0;
  double fid = 0;      // Fréchet distance (FID when the extractor is Inception)
  double kid = 0;      // MMD² ×100 (KID ×100 as in the paper's table)
  double kid_std = 0;  // ×100
  bool inception = false;
  std::string extractor;
};

absl::StatusOr<FolderScores> ScoreFeatures(const torch::Tensor& real, const torch::Tensor& fake,
                                           int64_t kid_subset_size, bool inception,
                                           const std::string& extractor);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_METRICS_IMAGE_FOLDER_H_
