#include "common/metrics/image_folder.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"
#include "common/util/status_macros.h"

namespace cellflux {

absl::StatusOr<std::vector<std::string>> ListPngs(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    return absl::NotFoundError(absl::StrCat("image folder '", dir, "' does not exist"));
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".png" || e.path().extension() == ".PNG")
      files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  if (files.empty())
    return absl::NotFoundError(absl::StrCat("image folder '", dir, "' holds no .png files"));
  return files;
}

absl::StatusOr<torch::Tensor> FolderFeatures(const std::vector<std::string>& files,
                                             FeatureExtractor& extractor, int64_t batch) {
  std::vector<torch::Tensor> feats;
  int width = -1, height = -1;
  for (size_t start = 0; start < files.size(); start += batch) {
    std::vector<torch::Tensor> imgs;
    for (size_t i = start; i < std::min(files.size(), start + batch); ++i) {
      cv::Mat bgr = cv::imread(files[i], cv::IMREAD_COLOR);
      if (bgr.empty())
        return absl::InvalidArgumentError(absl::StrCat("'", files[i], "' is not a readable image"));
      if (width < 0) {
        width = bgr.cols;
        height = bgr.rows;
      } else if (bgr.cols != width || bgr.rows != height) {
        return absl::InvalidArgumentError(absl::StrCat("'", files[i], "' is ", bgr.cols, "x",
                                                       bgr.rows, ", the folder's images are ",
                                                       width, "x", height));
      }
      cv::Mat rgb;
      cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
      torch::Tensor t = torch::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, torch::kUInt8)
                            .permute({2, 0, 1})
                            .clone();
      imgs.push_back(t);
    }
    CF_ASSIGN_OR_RETURN(torch::Tensor f, extractor.Features(torch::stack(imgs)));
    feats.push_back(f);
  }
  return torch::cat(feats, 0);
}

absl::StatusOr<FolderScores> ScoreFeatures(const torch::Tensor& real, const torch::Tensor& fake,
                                           int64_t kid_subset_size, bool inception,
                                           const std::string& extractor) {
  FolderScores s;
  s.real = real.size(0);
  s.fake = fake.size(0);
  s.inception = inception;
  s.extractor = extractor;
  CF_ASSIGN_OR_RETURN(FeatureStats a, ComputeFeatureStats(real));
  CF_ASSIGN_OR_RETURN(FeatureStats b, ComputeFeatureStats(fake));
  CF_ASSIGN_OR_RETURN(s.fid, FrechetDistance(a, b));
  CF_ASSIGN_OR_RETURN(KidResult kid, KernelInceptionDistance(real, fake, kid_subset_size));
  s.kid = kid.mean * 100;
  s.kid_std = kid.std * 100;
  return s;
}

}  // namespace cellflux
