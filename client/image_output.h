// Turning response images into files: per-channel 16-bit TIFFs and an RGB composite PNG.
//
// The composite maps DNA → red, RNA → green, ER → blue (DESIGN.md §5). Each channel is
// contrast-stretched independently to 8 bits between its 0.5th and 99.5th percentile, so dim
// 12-bit Cell Painting images are visible; a constant channel becomes black.
#ifndef CELLFLUX_CLIENT_IMAGE_OUTPUT_H_
#define CELLFLUX_CLIENT_IMAGE_OUTPUT_H_

#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cellflux/v1/cellflux.pb.h"

namespace cellflux::client {

struct NamedChannel {
  std::string name;  // e.g. "DNA"
  cv::Mat pixels;    // CV_16UC1, 12-bit values
};

// Decodes every channel of a response image (RAW_U16_LE, PNG or TIFF). INVALID_ARGUMENT naming
// `label` and the channel when bytes do not match height × width or do not decode.
absl::StatusOr<std::vector<NamedChannel>> DecodeImage(const cellflux::v1::Image& image,
                                                      absl::string_view label);

// 8-bit 3-channel composite (OpenCV BGR order, so it writes as R=DNA, G=RNA, B=ER). Channels are
// found by name, case-insensitively; INVALID_ARGUMENT when DNA, RNA or ER is missing.
absl::StatusOr<cv::Mat> MakeComposite(const std::vector<NamedChannel>& channels);

// 8-bit stretch of one 16-bit channel between its 0.5 % and 99.5 % percentiles.
cv::Mat StretchTo8Bit(const cv::Mat& channel16);

// Writes `<dir>/<prefix>_<channel>.tif` for each channel and `<dir>/<prefix>_composite.png`;
// returns the composite's path. Each file is written atomically.
absl::StatusOr<std::string> WriteImageSet(const std::string& dir, const std::string& prefix,
                                          const std::vector<NamedChannel>& channels);

}  // namespace cellflux::client

#endif  // CELLFLUX_CLIENT_IMAGE_OUTPUT_H_
