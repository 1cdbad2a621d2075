// Image features for FID/KID (DESIGN.md §7). Input: uint8 RGB images [N, 3, H, W] (for Cell
// Painting: DNA, RNA, ER as R, G, B).
//
// - TorchScript extractor (the standard one is NVlabs' inception-2015-12-05.pt, 2048-d pool
//   features): called as forward(images, return_features=True) when its forward takes a second
//   argument, else forward(images). Its scores are FID and KID.
// - Fallback, used only when no extractor file is given: a fixed, seeded random convolutional
//   network (3 stride-2 3×3 conv + ReLU layers on 64×64 resized inputs, mean and std pooled:
//   256-d). Deterministic and cheap, it tracks distribution shifts but is not Inception: its scores
//   are reported as "fd_fallback"/"kd_fallback", never as FID/KID.
#ifndef CELLFLUX_COMMON_METRICS_FEATURE_EXTRACTOR_H_
#define CELLFLUX_COMMON_METRICS_FEATURE_EXTRACTOR_H_

#include <torch/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace cellflux {

class FeatureExtractor {
 public:
  virtual ~FeatureExtractor() = default;
  // images: [N, 3, H, W] uint8 → [N, D] float32 (CPU).
  virtual absl::StatusOr<torch::Tensor> Features(const torch::Tensor& images) = 0;
  virtual bool is_inception() const = 0;  // true: scores may be called FID/KID
  virtual std::string name() const = 0;
};

// `path` empty → the fallback; otherwise the TorchScript file (NOT_FOUND / INVALID_ARGUMENT name it).
absl::StatusOr<std::unique_ptr<FeatureExtractor>> MakeFeatureExtractor(const std::string& path,
                                                                       const torch::Device& device);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_METRICS_FEATURE_EXTRACTOR_H_
