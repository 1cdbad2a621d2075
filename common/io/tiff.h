// 16-bit grayscale image I/O (TIFF and PNG) on OpenCV, LibTorch-free.
//
// Cell Painting channels are single-channel 16-bit images holding 12-bit values (≤ 4095). The
// readers return a CV_16UC1 cv::Mat and check, in this order: the file exists (NOT_FOUND), it
// decodes (INVALID_ARGUMENT), it has one channel, its depth is 16-bit unsigned, its size matches
// `expected_width`/`expected_height` when those are > 0, and its maximum is ≤ `max_value` when
// that is > 0. Every message names the file (or the `label` given for in-memory bytes) and the
// expected vs actual value. An 8-bit single-channel image is NOT silently widened: the caller
// asked for 16-bit data, and an 8-bit file in a 16-bit pipeline is almost always a mistake.
//
// Writers: WriteTiff16 (CV_16UC1 only, uncompressed TIFF), WritePng (CV_8U or CV_16U, 1 or 3
// channels; 3-channel Mats are in OpenCV's BGR order). File writes are atomic (temp + rename).
#ifndef CELLFLUX_COMMON_IO_TIFF_H_
#define CELLFLUX_COMMON_IO_TIFF_H_

#include <opencv2/core.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cellflux::io {

// Largest value of a 12-bit Cell Painting pixel.
inline constexpr int kMax12Bit = 4095;

struct ImageCheck {
  int expected_width = 0;   // pixels; 0 = any
  int expected_height = 0;  // pixels; 0 = any
  int max_value = 0;        // largest allowed pixel value; 0 = no check (kMax12Bit for raw data)
};

absl::StatusOr<cv::Mat> ReadImage16(const std::string& path, const ImageCheck& check = {});
// Decodes TIFF or PNG bytes. `label` names the source in messages (e.g. "request channel DNA").
absl::StatusOr<cv::Mat> DecodeImage16(absl::string_view bytes, absl::string_view label,
                                      const ImageCheck& check = {});

// Applies the checks of ImageCheck to an already decoded image (also used by the readers).
absl::Status CheckImage16(const cv::Mat& image, absl::string_view label, const ImageCheck& check);

absl::Status WriteTiff16(const std::string& path, const cv::Mat& image);
absl::StatusOr<std::string> EncodeTiff16(const cv::Mat& image);
absl::Status WritePng(const std::string& path, const cv::Mat& image);
absl::StatusOr<std::string> EncodePng(const cv::Mat& image);

}  // namespace cellflux::io

#endif  // CELLFLUX_COMMON_IO_TIFF_H_
