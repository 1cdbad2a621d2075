#include "client/control_dir.h"

#include <dirent.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/io/tiff.h"
#include "common/util/status_macros.h"

namespace cellflux::client {
namespace {

// BBBC047 wavelength number → canonical index (w1 DNA, w2 ER, w3 RNA, w4 AGP, w5 Mito).
constexpr int kWavelengthToCanonical[kNumChannels] = {0, 2, 1, 3, 4};

struct Alias {
  const char* name;  // lower case
  int channel;       // canonical index
};
constexpr Alias kAliases[] = {
    {"hoechst", 0}, {"dna", 0},      {"ersytobleed", 1}, {"rna", 1},  {"ersyto", 2},
    {"er", 2},      {"ph_golgi", 3}, {"agp", 3},         {"mito", 4},
};

bool IsImageFile(const std::string& lower) {
  return absl::EndsWith(lower, ".tif") || absl::EndsWith(lower, ".tiff") ||
         absl::EndsWith(lower, ".png");
}

int WavelengthChannel(const std::string& lower) {
  for (size_t pos = lower.find("_w"); pos != std::string::npos; pos = lower.find("_w", pos + 1)) {
    const size_t digit = pos + 2;
    if (digit >= lower.size() || lower[digit] < '1' || lower[digit] > '5') continue;
    // "_w1" must not be the start of a longer number ("_w12").
    if (digit + 1 < lower.size() && absl::ascii_isdigit(lower[digit + 1])) continue;
    return kWavelengthToCanonical[lower[digit] - '1'];
  }
  return -1;
}

int StainChannel(const std::string& stem) {
  for (const Alias& alias : kAliases) {
    if (stem == alias.name) return alias.channel;
  }
  for (const Alias& alias : kAliases) {
    const std::string name = alias.name;
    if (stem.size() > name.size() && absl::EndsWith(stem, name)) {
      const char sep = stem[stem.size() - name.size() - 1];
      if (sep == '_' || sep == '-') return alias.channel;
    }
  }
  return -1;
}

}  // namespace

const std::array<std::string, kNumChannels>& CanonicalChannelNames() {
  static const std::array<std::string, kNumChannels> kNames = {"DNA", "RNA", "ER", "AGP", "Mito"};
  return kNames;
}

int ChannelIndexForFileName(const std::string& file_name) {
  const std::string lower = absl::AsciiStrToLower(file_name);
  if (!IsImageFile(lower)) return -1;
  const int by_wavelength = WavelengthChannel(lower);
  if (by_wavelength >= 0) return by_wavelength;
  return StainChannel(lower.substr(0, lower.rfind('.')));
}

absl::StatusOr<std::array<std::string, kNumChannels>> FindChannelFiles(const std::string& dir) {
  DIR* handle = opendir(dir.c_str());
  if (handle == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("control folder ", dir, ": cannot open (", std::strerror(errno), ")"));
  }
  std::vector<std::string> names;
  while (dirent* entry = readdir(handle)) {
    if (entry->d_name[0] != '.') names.push_back(entry->d_name);
  }
  closedir(handle);
  std::sort(names.begin(), names.end());  // deterministic messages

  std::array<std::string, kNumChannels> found;
  for (const std::string& name : names) {
    const int channel = ChannelIndexForFileName(name);
    if (channel < 0) continue;
    if (!found[channel].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "control folder ", dir, ": two files for channel ", CanonicalChannelNames()[channel],
          ": ", found[channel], " and ", name, "; keep one"));
    }
    found[channel] = name;
  }
  std::vector<std::string> missing;
  for (int c = 0; c < kNumChannels; ++c) {
    if (found[c].empty()) missing.push_back(CanonicalChannelNames()[c]);
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "control folder ", dir, ": no image for channel(s) ", absl::StrJoin(missing, ", "),
        " (files: ", names.empty() ? "none" : absl::StrJoin(names, ", "),
        "). Name files by BBBC047 wavelength (_w1.._w5) or stain (Hoechst, ERSytoBleed, ERSyto, "
        "Ph_golgi, Mito) / channel (DNA, RNA, ER, AGP, Mito)"));
  }
  for (std::string& name : found) name = absl::StrCat(dir, "/", name);
  return found;
}

cv::Mat CenterCrop(const cv::Mat& image, int size) {
  if (size <= 0 || (image.rows <= size && image.cols <= size)) return image;
  const int h = std::min(size, image.rows);
  const int w = std::min(size, image.cols);
  const int y = (image.rows - h) / 2;
  const int x = (image.cols - w) / 2;
  return image(cv::Rect(x, y, w, h)).clone();
}

absl::StatusOr<ControlImage> LoadControlImage(const std::string& dir, int crop_size,
                                              int bit_depth) {
  if (bit_depth != 0 && bit_depth != 12 && bit_depth != 16) {
    return absl::InvalidArgumentError(absl::StrCat("control folder ", dir, ": bit depth ",
                                                   bit_depth, " is not 12 or 16 (0 = from files)"));
  }
  CF_ASSIGN_OR_RETURN(auto files, FindChannelFiles(dir));
  ControlImage image;
  io::ImageCheck check;
  if (bit_depth == 12) check.max_value = io::kMax12Bit;  // names the file and its maximum
  for (int c = 0; c < kNumChannels; ++c) {
    CF_ASSIGN_OR_RETURN(cv::Mat mat, io::ReadImage16(files[c], check));
    // All channels must share the first one's size.
    check.expected_width = mat.cols;
    check.expected_height = mat.rows;
    double max = 0;
    cv::minMaxLoc(mat, nullptr, &max);
    image.max_value = std::max(image.max_value, static_cast<int>(max));
    image.channels.push_back(CenterCrop(mat, crop_size));
  }
  image.bit_depth = bit_depth != 0 ? bit_depth : (image.max_value > io::kMax12Bit ? 16 : 12);
  return image;
}

absl::StatusOr<cellflux::v1::Image> ToProtoImage(const ControlImage& image,
                                                 const std::vector<std::string>& channel_names) {
  std::vector<std::string> names(channel_names);
  if (names.empty()) names.assign(CanonicalChannelNames().begin(), CanonicalChannelNames().end());
  cellflux::v1::Image proto;
  if (image.channels.size() != kNumChannels) {
    return absl::InvalidArgumentError("control image must have 5 channels");
  }
  proto.set_height(image.channels[0].rows);
  proto.set_width(image.channels[0].cols);
  proto.set_bit_depth(image.bit_depth);
  for (const std::string& name : names) {
    int index = -1;
    for (int c = 0; c < kNumChannels; ++c) {
      if (absl::EqualsIgnoreCase(name, CanonicalChannelNames()[c])) index = c;
    }
    if (index < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("the server's model uses channel '", name,
                       "', which a control folder cannot supply (known: DNA, RNA, ER, AGP, Mito)"));
    }
    const cv::Mat& mat = image.channels[index];
    auto* channel = proto.add_channels();
    channel->set_name(name);
    channel->set_encoding(cellflux::v1::RAW_U16_LE);
    std::string bytes(static_cast<size_t>(mat.rows) * mat.cols * 2, '\0');
    for (int y = 0; y < mat.rows; ++y) {
      const uint16_t* row = mat.ptr<uint16_t>(y);
      for (int x = 0; x < mat.cols; ++x) {
        const size_t at = (static_cast<size_t>(y) * mat.cols + x) * 2;
        bytes[at] = static_cast<char>(row[x] & 0xff);  // little-endian regardless of host
        bytes[at + 1] = static_cast<char>(row[x] >> 8);
      }
    }
    channel->set_data(std::move(bytes));
  }
  return proto;
}

}  // namespace cellflux::client
