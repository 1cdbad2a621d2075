// Raw 12-bit Cell Painting pixels ↔ the model's [-1, 1] range, as configured by
// ImageNormalization (stored in the checkpoint so the server can invert it).
#ifndef CELLFLUX_COMMON_MODELS_NORMALIZATION_H_
#define CELLFLUX_COMMON_MODELS_NORMALIZATION_H_

#include <torch/types.h>

#include "common/models/config.h"

namespace cellflux {

// raw: [N, C, H, W] any numeric dtype (uint16 from TIFFs, or float) → float32 in [-1, 1]
// (values outside the configured range are clamped). Stays on raw's device.
torch::Tensor NormalizeImages(const torch::Tensor& raw, const ImageNormalization& norm);

// x: [N, C, H, W] float in [-1, 1] → float32 raw intensities, clamped to the configured range and
// rounded to integers (the 12-bit scale of the input).
torch::Tensor DenormalizeImages(const torch::Tensor& x, const ImageNormalization& norm);

// Centre crop of the last two dims to size × size (no-op when already that size). The caller checks
// that the image is at least size × size.
torch::Tensor CenterCrop(const torch::Tensor& x, int64_t size);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_MODELS_NORMALIZATION_H_
