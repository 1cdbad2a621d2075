// cellflux.v1.Channel ↔ one 16-bit pixel plane: decoding request channels (RAW_U16_LE, PNG,
// TIFF) with checks a person can act on, and encoding generated channels.
//
// Decoding never trusts the bytes: RAW_U16_LE must be exactly 2·height·width bytes; PNG/TIFF
// must carry their format's signature, declare (in their header, read before decoding) a size no
// larger than kMaxImageSide on each side (so a small file cannot make the server allocate
// gigabytes), decode to one 16-bit channel and match the request's height × width. Errors are
// INVALID_ARGUMENT whose message starts with `label` (e.g. "control.data.image channel 2 (ER)").
#ifndef CELLFLUX_SERVER_IMAGE_CODEC_H_
#define CELLFLUX_SERVER_IMAGE_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cellflux/v1/cellflux.pb.h"

namespace cellflux::server {

// Largest accepted image side, pixels.
inline constexpr int kMaxImageSide = 8192;

// Decodes one channel to height × width uint16 values, row-major.
absl::StatusOr<std::vector<uint16_t>> DecodeChannel(const v1::Channel& channel, int height,
                                                    int width, absl::string_view label);

// Encodes a height × width plane. ENCODING_UNSPECIFIED means RAW_U16_LE.
absl::StatusOr<std::string> EncodeChannel(const uint16_t* pixels, int height, int width,
                                          v1::Encoding encoding);

// The width and height a PNG or TIFF header declares (first image), without decoding pixels.
// INVALID_ARGUMENT when the bytes are too short or the header is malformed.
struct HeaderSize {
  int64_t width = 0;
  int64_t height = 0;
};
absl::StatusOr<HeaderSize> PngHeaderSize(absl::string_view bytes);
absl::StatusOr<HeaderSize> TiffHeaderSize(absl::string_view bytes);

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_IMAGE_CODEC_H_
