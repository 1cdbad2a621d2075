#include "server/image_codec.h"

#include <cstring>
#include <opencv2/core.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/io/tiff.h"

namespace cellflux::server {
namespace {

constexpr absl::string_view kPngSignature("\x89PNG\r\n\x1a\n", 8);

uint32_t Be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Reads a TIFF integer of `n` bytes (2 or 4) in the file's byte order.
uint32_t TiffInt(const unsigned char* p, int n, bool little) {
  uint32_t v = 0;
  for (int i = 0; i < n; ++i) {
    const int shift = little ? 8 * i : 8 * (n - 1 - i);
    v |= uint32_t{p[i]} << shift;
  }
  return v;
}

bool IsTiff(absl::string_view b) {
  return b.size() >= 4 && ((b[0] == 'I' && b[1] == 'I' && b[2] == 42 && b[3] == 0) ||
                           (b[0] == 'M' && b[1] == 'M' && b[2] == 0 && b[3] == 42));
}

}  // namespace

absl::StatusOr<HeaderSize> PngHeaderSize(absl::string_view bytes) {
  // Signature (8) + IHDR chunk length (4) + "IHDR" (4) + width (4) + height (4).
  if (bytes.size() < 24 || bytes.substr(0, 8) != kPngSignature || bytes.substr(12, 4) != "IHDR") {
    return absl::InvalidArgumentError("not a PNG (missing PNG signature or IHDR header)");
  }
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  return HeaderSize{Be32(p + 16), Be32(p + 20)};
}

absl::StatusOr<HeaderSize> TiffHeaderSize(absl::string_view bytes) {
  if (!IsTiff(bytes) || bytes.size() < 8) {
    return absl::InvalidArgumentError("not a TIFF (missing II*/MM* signature)");
  }
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const bool little = bytes[0] == 'I';
  const uint64_t ifd = TiffInt(p + 4, 4, little);
  if (ifd + 2 > bytes.size())
    return absl::InvalidArgumentError("TIFF directory offset is past the end");
  const uint32_t entries = TiffInt(p + ifd, 2, little);
  if (ifd + 2 + 12ull * entries > bytes.size()) {
    return absl::InvalidArgumentError("TIFF directory is truncated");
  }
  HeaderSize size;
  for (uint32_t i = 0; i < entries; ++i) {
    const unsigned char* e = p + ifd + 2 + 12ull * i;
    const uint32_t tag = TiffInt(e, 2, little);
    const uint32_t type = TiffInt(e + 2, 2, little);
    if (tag != 256 && tag != 257) continue;
    // SHORT (3) values sit in the first two bytes of the value field, LONG (4) fill it.
    const uint32_t value = type == 3 ? TiffInt(e + 8, 2, little) : TiffInt(e + 8, 4, little);
    (tag == 256 ? size.width : size.height) = value;
  }
  if (size.width == 0 || size.height == 0) {
    return absl::InvalidArgumentError("TIFF has no ImageWidth/ImageLength tags");
  }
  return size;
}

absl::StatusOr<std::vector<uint16_t>> DecodeChannel(const v1::Channel& channel, int height,
                                                    int width, absl::string_view label) {
  const std::string& data = channel.data();
  const int64_t pixels = int64_t{height} * width;
  switch (channel.encoding()) {
    case v1::RAW_U16_LE: {
      if (static_cast<int64_t>(data.size()) != 2 * pixels) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: RAW_U16_LE needs 2 × %d × %d = %d bytes, got %d", label, height,
                            width, 2 * pixels, data.size()));
      }
      std::vector<uint16_t> out(pixels);
      const auto* p = reinterpret_cast<const unsigned char*>(data.data());
      for (int64_t i = 0; i < pixels; ++i) {
        out[i] = static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));
      }
      return out;
    }
    case v1::PNG:
    case v1::TIFF: {
      const bool png = channel.encoding() == v1::PNG;
      absl::StatusOr<HeaderSize> header = png ? PngHeaderSize(data) : TiffHeaderSize(data);
      if (!header.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(label, ": encoding is ",
                                                       png ? "PNG" : "TIFF", " but the bytes are ",
                                                       header.status().message()));
      }
      if (header->width != width || header->height != height) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: the %s is %d×%d (width×height) but the request says %d×%d", label,
                            png ? "PNG" : "TIFF", header->width, header->height, width, height));
      }
      io::ImageCheck check;
      check.expected_width = width;
      check.expected_height = height;
      absl::StatusOr<cv::Mat> mat = io::DecodeImage16(data, label, check);
      if (!mat.ok()) return mat.status();
      std::vector<uint16_t> out(pixels);
      for (int y = 0; y < height; ++y) {
        std::memcpy(out.data() + int64_t{y} * width, mat->ptr<uint16_t>(y), 2 * size_t(width));
      }
      return out;
    }
    case v1::ENCODING_UNSPECIFIED:
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": encoding is not set (use RAW_U16_LE, PNG or TIFF)"));
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": unknown encoding ", static_cast<int>(channel.encoding())));
  }
}

absl::StatusOr<std::string> EncodeChannel(const uint16_t* pixels, int height, int width,
                                          v1::Encoding encoding) {
  switch (encoding) {
    case v1::ENCODING_UNSPECIFIED:
    case v1::RAW_U16_LE: {
      std::string out(2 * size_t(height) * width, '\0');
      for (int64_t i = 0; i < int64_t{height} * width; ++i) {
        out[2 * i] = static_cast<char>(pixels[i] & 0xff);
        out[2 * i + 1] = static_cast<char>(pixels[i] >> 8);
      }
      return out;
    }
    case v1::PNG:
    case v1::TIFF: {
      // OpenCV only reads through the Mat; the const_cast never leads to a write.
      cv::Mat mat(height, width, CV_16UC1, const_cast<uint16_t*>(pixels));
      return encoding == v1::PNG ? io::EncodePng(mat) : io::EncodeTiff16(mat);
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown output encoding ", static_cast<int>(encoding)));
  }
}

}  // namespace cellflux::server
