// A control supplied as a folder of channel images (`--control-dir`, plan column control_dir).
//
// A folder holds one 16-bit TIFF (or PNG) per Cell Painting channel, recognised by either naming
// scheme (file names are matched case-insensitively; other files are ignored):
//   * BBBC047 acquisition names: "_w1" … "_w5" in the name (w1 = DNA, w2 = ER, w3 = RNA,
//     w4 = AGP, w5 = Mito), e.g. "cdp2bioactives_a01_s1_w1<uuid>.tif";
//   * stain or channel names as the whole file stem or its last "_"/"-" separated part:
//     Hoechst | DNA, ERSyto | ER, ERSytoBleed | RNA, Ph_golgi | AGP, Mito.
// Two files for one channel, or a missing channel, are INVALID_ARGUMENT naming the folder, the
// channel and the files found.
//
// Images are read with common/io/tiff.h (16-bit), must share one size, and are centre-cropped to
// `crop_size` when that is > 0 and smaller than the image (the crop the server would do, done here
// so requests stay small).
//
// Bit depth: the files are 16-bit (BitsPerSample 16; 8-bit files are rejected by the reader).
// Most Cell Painting cameras (BBBC047 among them) store 12-bit values in them, so the image is
// declared 12-bit (values sent unchanged) when no pixel of the full, uncropped site exceeds 4095,
// and 16-bit (the server rescales by 4095/65535) when one does. A true 16-bit camera whose site
// happens to stay ≤ 4095 would be misread as 12-bit: pass the bit depth explicitly then
// (`--control-bit-depth 16`, plan column control_bit_depth).
#ifndef CELLFLUX_CLIENT_CONTROL_DIR_H_
#define CELLFLUX_CLIENT_CONTROL_DIR_H_

#include <array>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cellflux/v1/cellflux.pb.h"

namespace cellflux::client {

// Canonical channel order of the model (DESIGN.md, proto): DNA, RNA, ER, AGP, Mito.
inline constexpr int kNumChannels = 5;
const std::array<std::string, kNumChannels>& CanonicalChannelNames();

// Canonical channel index (0..4) of a file name, or -1 when the name matches neither scheme.
int ChannelIndexForFileName(const std::string& file_name);

// Paths of the five channel files in canonical order.
absl::StatusOr<std::array<std::string, kNumChannels>> FindChannelFiles(const std::string& dir);

// The control's channels (CV_16UC1, canonical order) after the optional centre crop.
struct ControlImage {
  std::vector<cv::Mat> channels;
  int bit_depth = 12;  // 12 or 16: the scale of the values (see above); sent as Image.bit_depth
  int max_value = 0;   // largest pixel of the full sites (all channels), before the crop
};
// `bit_depth` 0 = from the files (see above), 12 or 16 = as given (12 with a pixel above 4095 is
// INVALID_ARGUMENT naming the file); anything else is INVALID_ARGUMENT.
absl::StatusOr<ControlImage> LoadControlImage(const std::string& dir, int crop_size,
                                              int bit_depth = 0);

// Centre crop to size × size (no-op when size ≤ 0 or the image is not larger).
cv::Mat CenterCrop(const cv::Mat& image, int size);

// The request Image: channels named and ordered as `channel_names` (the model's, from
// GetModelInfo; empty = canonical), RAW_U16_LE. INVALID_ARGUMENT when a model channel name is not
// one of the five canonical ones.
absl::StatusOr<cellflux::v1::Image> ToProtoImage(const ControlImage& image,
                                                 const std::vector<std::string>& channel_names);

}  // namespace cellflux::client

#endif  // CELLFLUX_CLIENT_CONTROL_DIR_H_
