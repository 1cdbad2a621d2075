#include "common/io/tiff.h"

#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"

namespace cellflux::io {
namespace {

const char* DepthName(int depth) {
  switch (depth) {
    case CV_8U:
      return "8-bit unsigned";
    case CV_8S:
      return "8-bit signed";
    case CV_16U:
      return "16-bit unsigned";
    case CV_16S:
      return "16-bit signed";
    case CV_32S:
      return "32-bit signed";
    case CV_32F:
      return "32-bit float";
    case CV_64F:
      return "64-bit float";
    default:
      return "unknown depth";
  }
}

// OpenCV reports failures both as empty Mats and as cv::Exception; map both to a Status.
absl::StatusOr<std::string> Encode(const cv::Mat& image, const char* ext,
                                   const std::vector<int>& params) {
  std::vector<uchar> buf;
  try {
    if (!cv::imencode(ext, image, buf, params)) {
      return absl::InternalError(absl::StrCat("OpenCV could not encode a ", image.cols, "x",
                                              image.rows, " ", DepthName(image.depth()),
                                              " image as ", ext));
    }
  } catch (const cv::Exception& e) {
    return absl::InternalError(absl::StrCat("OpenCV could not encode as ", ext, ": ", e.what()));
  }
  return std::string(buf.begin(), buf.end());
}

}  // namespace

absl::Status CheckImage16(const cv::Mat& image, absl::string_view label, const ImageCheck& check) {
  if (image.channels() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": expected a single-channel (grayscale) image, found ",
                     image.channels(), " channels"));
  }
  if (image.depth() != CV_16U) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": expected 16-bit unsigned pixels, found ", DepthName(image.depth())));
  }
  if ((check.expected_width > 0 && image.cols != check.expected_width) ||
      (check.expected_height > 0 && image.rows != check.expected_height)) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": expected size ", check.expected_width, "x", check.expected_height,
                     " (width x height), found ", image.cols, "x", image.rows));
  }
  if (check.max_value > 0) {
    double max_value = 0;
    cv::Point where;
    cv::minMaxLoc(image, nullptr, &max_value, nullptr, &where);
    if (max_value > check.max_value) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": pixel (x=", where.x, ", y=", where.y, ") is ", max_value,
                       ", above the allowed maximum ", check.max_value));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<cv::Mat> ReadImage16(const std::string& path, const ImageCheck& check) {
  // imread gives no reason on failure; read the bytes ourselves to tell "missing" from "corrupt".
  CF_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return DecodeImage16(bytes, path, check);
}

absl::StatusOr<cv::Mat> DecodeImage16(absl::string_view bytes, absl::string_view label,
                                      const ImageCheck& check) {
  if (bytes.empty()) return absl::InvalidArgumentError(absl::StrCat(label, ": empty image data"));
  cv::Mat image;
  try {
    cv::Mat raw(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data()));
    image = cv::imdecode(raw, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": cannot decode image: ", e.what()));
  }
  if (image.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": cannot decode image (", bytes.size(),
                                                   " bytes; not a readable TIFF or PNG)"));
  }
  CF_RETURN_IF_ERROR(CheckImage16(image, label, check));
  return image;
}

absl::StatusOr<std::string> EncodeTiff16(const cv::Mat& image) {
  CF_RETURN_IF_ERROR(CheckImage16(image, "image to encode as TIFF", {}));
  // Uncompressed (TIFFTAG_COMPRESSION = 1, COMPRESSION_NONE) like the BBBC047 files.
  return Encode(image, ".tif", {cv::IMWRITE_TIFF_COMPRESSION, 1});
}

absl::Status WriteTiff16(const std::string& path, const cv::Mat& image) {
  auto bytes = EncodeTiff16(image);
  if (!bytes.ok())
    return absl::Status(bytes.status().code(), absl::StrCat(path, ": ", bytes.status().message()));
  return WriteFileAtomic(path, *bytes);
}

absl::StatusOr<std::string> EncodePng(const cv::Mat& image) {
  if (image.empty()) return absl::InvalidArgumentError("image to encode as PNG is empty");
  if (image.depth() != CV_8U && image.depth() != CV_16U) {
    return absl::InvalidArgumentError(
        absl::StrCat("PNG needs 8- or 16-bit unsigned pixels, found ", DepthName(image.depth())));
  }
  if (image.channels() != 1 && image.channels() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("PNG needs 1 or 3 channels, found ", image.channels()));
  }
  return Encode(image, ".png", {cv::IMWRITE_PNG_COMPRESSION, 3});
}

absl::Status WritePng(const std::string& path, const cv::Mat& image) {
  auto bytes = EncodePng(image);
  if (!bytes.ok())
    return absl::Status(bytes.status().code(), absl::StrCat(path, ": ", bytes.status().message()));
  return WriteFileAtomic(path, *bytes);
}

}  // namespace cellflux::io
