#include "client/image_output.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/io/tiff.h"
#include "common/util/status_macros.h"

namespace cellflux::client {
namespace {

absl::StatusOr<cv::Mat> DecodeChannel(const cellflux::v1::Channel& channel, int height, int width,
                                      const std::string& label) {
  switch (channel.encoding()) {
    case cellflux::v1::RAW_U16_LE:
    case cellflux::v1::ENCODING_UNSPECIFIED: {
      const size_t expected = static_cast<size_t>(height) * width * 2;
      if (channel.data().size() != expected) {
        return absl::InvalidArgumentError(absl::StrCat(label, ": ", channel.data().size(),
                                                       " bytes of RAW_U16_LE, expected ", expected,
                                                       " for ", height, "x", width));
      }
      cv::Mat mat(height, width, CV_16UC1);
      const auto* bytes = reinterpret_cast<const uint8_t*>(channel.data().data());
      for (int y = 0; y < height; ++y) {
        uint16_t* row = mat.ptr<uint16_t>(y);
        for (int x = 0; x < width; ++x) {
          const size_t at = (static_cast<size_t>(y) * width + x) * 2;
          row[x] = static_cast<uint16_t>(bytes[at] | (bytes[at + 1] << 8));
        }
      }
      return mat;
    }
    case cellflux::v1::PNG:
    case cellflux::v1::TIFF: {
      io::ImageCheck check;
      check.expected_width = width;
      check.expected_height = height;
      return io::DecodeImage16(channel.data(), label, check);
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": unknown encoding ", static_cast<int>(channel.encoding())));
  }
}

const cv::Mat* FindChannel(const std::vector<NamedChannel>& channels, absl::string_view name) {
  for (const NamedChannel& channel : channels) {
    if (absl::EqualsIgnoreCase(channel.name, name)) return &channel.pixels;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<std::vector<NamedChannel>> DecodeImage(const cellflux::v1::Image& image,
                                                      absl::string_view label) {
  if (image.height() <= 0 || image.width() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": image size ", image.height(), "x", image.width(), " is empty"));
  }
  std::vector<NamedChannel> channels;
  for (const auto& channel : image.channels()) {
    const std::string channel_label = absl::StrCat(label, " channel ", channel.name());
    CF_ASSIGN_OR_RETURN(cv::Mat pixels,
                        DecodeChannel(channel, image.height(), image.width(), channel_label));
    channels.push_back({channel.name(), std::move(pixels)});
  }
  return channels;
}

cv::Mat StretchTo8Bit(const cv::Mat& channel16) {
  // Histogram over the 16-bit range: exact percentiles in two passes, no sort.
  std::vector<int64_t> histogram(65536, 0);
  for (int y = 0; y < channel16.rows; ++y) {
    const uint16_t* row = channel16.ptr<uint16_t>(y);
    for (int x = 0; x < channel16.cols; ++x) ++histogram[row[x]];
  }
  const int64_t total = static_cast<int64_t>(channel16.total());
  auto percentile = [&](double fraction) {
    const int64_t target = static_cast<int64_t>(fraction * static_cast<double>(total - 1));
    int64_t seen = 0;
    for (int v = 0; v < 65536; ++v) {
      seen += histogram[v];
      if (seen > target) return v;
    }
    return 65535;
  };
  const int lo = percentile(0.005);
  const int hi = percentile(0.995);
  cv::Mat out(channel16.rows, channel16.cols, CV_8UC1, cv::Scalar(0));
  if (hi <= lo) return out;
  const double scale = 255.0 / (hi - lo);
  for (int y = 0; y < channel16.rows; ++y) {
    const uint16_t* in = channel16.ptr<uint16_t>(y);
    uint8_t* row = out.ptr<uint8_t>(y);
    for (int x = 0; x < channel16.cols; ++x) {
      const double v = (static_cast<int>(in[x]) - lo) * scale;
      row[x] = static_cast<uint8_t>(std::clamp(v + 0.5, 0.0, 255.0));
    }
  }
  return out;
}

absl::StatusOr<cv::Mat> MakeComposite(const std::vector<NamedChannel>& channels) {
  const cv::Mat* dna = FindChannel(channels, "DNA");
  const cv::Mat* rna = FindChannel(channels, "RNA");
  const cv::Mat* er = FindChannel(channels, "ER");
  if (dna == nullptr || rna == nullptr || er == nullptr) {
    return absl::InvalidArgumentError(
        "composite needs channels DNA, RNA and ER; the image lacks at least one");
  }
  cv::Mat composite;
  // OpenCV stores BGR: blue = ER, green = RNA, red = DNA.
  cv::merge(std::vector<cv::Mat>{StretchTo8Bit(*er), StretchTo8Bit(*rna), StretchTo8Bit(*dna)},
            composite);
  return composite;
}

absl::StatusOr<std::string> WriteImageSet(const std::string& dir, const std::string& prefix,
                                          const std::vector<NamedChannel>& channels) {
  for (const NamedChannel& channel : channels) {
    CF_RETURN_IF_ERROR(
        io::WriteTiff16(absl::StrCat(dir, "/", prefix, "_", channel.name, ".tif"), channel.pixels));
  }
  CF_ASSIGN_OR_RETURN(cv::Mat composite, MakeComposite(channels));
  const std::string path = absl::StrCat(dir, "/", prefix, "_composite.png");
  CF_RETURN_IF_ERROR(io::WritePng(path, composite));
  return path;
}

}  // namespace cellflux::client
