// The BBBC047 (Cell Painting Gallery cpg0012) image layout, LibTorch-free.
//
//   <images>/<plate barcode>/cdp2bioactives_<well a01..p24>_s<site 1-9>_w<channel 1-5><UUID>.tif
//
// The plate is the name of the folder directly under <images>; the well is a letter a..p and two
// digits 01..24 (case-insensitive, normalised to upper case "A01"); the channel is the single
// digit after "_w"; the UUID (hex and dashes) may be absent. Files that do not match (thumbnails,
// masks, CSVs) are ignored and counted. On disk w1=DNA, w2=ER, w3=RNA, w4=AGP, w5=Mito; everything
// returned here is in the canonical order DNA, RNA, ER, AGP, Mito.
//
// ScanImages never fails because of one bad site: a site missing a channel, or with two files for
// one channel, is reported in ScanResult::dropped with the files found and the channels missing;
// only an unreadable images directory is an error.
#ifndef CELLFLUX_COMMON_DATA_BBBC047_H_
#define CELLFLUX_COMMON_DATA_BBBC047_H_

#include <array>
#include <cstdint>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/io/tiff.h"

namespace cellflux::data {

inline constexpr int kNumChannels = 5;
// Canonical channel names, in tensor/proto/file order.
inline constexpr std::array<const char*, kNumChannels> kChannelNames = {"DNA", "RNA", "ER", "AGP",
                                                                        "Mito"};
// BBBC047 wN digit of each canonical channel (DNA=w1, RNA=w3, ER=w2, AGP=w4, Mito=w5).
inline constexpr std::array<int, kNumChannels> kChannelW = {1, 3, 2, 4, 5};

// Canonical index (0..4) of BBBC047 channel digit w (1..5), or -1.
int CanonicalChannelForW(int w);

struct ImageFileName {
  std::string well;  // "A01"
  int site = 0;      // 1-based
  int w = 0;         // BBBC047 channel digit 1..5
};
// Parses a file name (no directory). False when it is not a BBBC047 channel image.
bool ParseImageFileName(absl::string_view name, ImageFileName* out);

// A BBBC047 file name for (well, site, w) without UUID; used by writers (synthetic plates, tests).
std::string MakeImageFileName(absl::string_view well, int site, int w);

struct SiteFiles {
  std::string plate;
  std::string well;  // "A01"
  int site = 0;
  std::array<std::string, kNumChannels> paths;  // full paths, canonical order
};

struct DroppedItem {
  std::string kind;    // short category for counting, e.g. "site_incomplete"
  std::string item;    // what was dropped, e.g. "plate 24277 well A01 site 3"
  std::string reason;  // why, naming the files found / missing
};

struct ScanResult {
  std::vector<SiteFiles> sites;  // complete sites, sorted by (plate, well, site)
  std::vector<DroppedItem> dropped;
  int64_t files_matched = 0;  // channel images recognised
  int64_t files_ignored = 0;  // other files under the plate folders
  int64_t plates = 0;
};

// Scans <images_dir>/<plate>/ folders. NOT_FOUND when images_dir is missing, INVALID_ARGUMENT
// when it is not a directory.
absl::StatusOr<ScanResult> ScanImages(const std::string& images_dir);

// Reads the five channels of a site (canonical order) as CV_16UC1 with `check` applied to each,
// and checks that all five have the same size. Errors name the file.
absl::StatusOr<std::array<cv::Mat, kNumChannels>> ReadSite(const SiteFiles& site,
                                                           const io::ImageCheck& check = {});

}  // namespace cellflux::data

#endif  // CELLFLUX_COMMON_DATA_BBBC047_H_
