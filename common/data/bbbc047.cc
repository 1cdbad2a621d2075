#include "common/data/bbbc047.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/util/status_macros.h"

namespace cellflux::data {
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kPrefix = "cdp2bioactives_";

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsUuidChar(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '-';
}

}  // namespace

int CanonicalChannelForW(int w) {
  for (int i = 0; i < kNumChannels; ++i) {
    if (kChannelW[i] == w) return i;
  }
  return -1;
}

bool ParseImageFileName(absl::string_view name, ImageFileName* out) {
  // cdp2bioactives_a01_s1_w1<uuid>.tif
  if (name.size() < kPrefix.size() ||
      !absl::EqualsIgnoreCase(name.substr(0, kPrefix.size()), kPrefix))
    return false;
  name.remove_prefix(kPrefix.size());
  std::string lower = absl::AsciiStrToLower(name);
  absl::string_view s = lower;
  if (!(absl::EndsWith(s, ".tif") || absl::EndsWith(s, ".tiff"))) return false;
  s.remove_suffix(absl::EndsWith(s, ".tif") ? 4 : 5);
  // Well: letter a..p, two digits 01..24.
  if (s.size() < 4 || s[0] < 'a' || s[0] > 'p' || !IsDigit(s[1]) || !IsDigit(s[2]) || s[3] != '_')
    return false;
  int col = (s[1] - '0') * 10 + (s[2] - '0');
  if (col < 1 || col > 24) return false;
  std::string well =
      absl::StrCat(std::string(1, static_cast<char>(s[0] - 'a' + 'A')), s.substr(1, 2));
  s.remove_prefix(4);
  // Site: "s" + digits + "_".
  if (s.empty() || s[0] != 's') return false;
  s.remove_prefix(1);
  int site = 0;
  size_t i = 0;
  while (i < s.size() && IsDigit(s[i]) && i < 3) site = site * 10 + (s[i++] - '0');
  if (i == 0 || site < 1 || i >= s.size() || s[i] != '_') return false;
  s.remove_prefix(i + 1);
  // Channel: "w" + one digit, then an optional UUID.
  if (s.size() < 2 || s[0] != 'w' || !IsDigit(s[1])) return false;
  int w = s[1] - '0';
  if (w < 1 || w > kNumChannels) return false;
  s.remove_prefix(2);
  for (char c : s) {
    if (!IsUuidChar(c)) return false;  // e.g. "_thumb"
  }
  out->well = std::move(well);
  out->site = site;
  out->w = w;
  return true;
}

std::string MakeImageFileName(absl::string_view well, int site, int w) {
  return absl::StrCat(kPrefix, absl::AsciiStrToLower(well), "_s", site, "_w", w, ".tif");
}

absl::StatusOr<ScanResult> ScanImages(const std::string& images_dir) {
  std::error_code ec;
  if (!fs::exists(images_dir, ec))
    return absl::NotFoundError(absl::StrCat("images directory '", images_dir, "' does not exist"));
  if (!fs::is_directory(images_dir, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("images path '", images_dir, "' is not a directory"));
  }
  std::vector<std::string> plates;
  for (fs::directory_iterator it(images_dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec)) plates.push_back(it->path().filename().string());
  }
  if (ec)
    return absl::InternalError(absl::StrCat("cannot list '", images_dir, "': ", ec.message()));
  std::sort(plates.begin(), plates.end());

  ScanResult result;
  result.plates = static_cast<int64_t>(plates.size());
  for (const std::string& plate : plates) {
    const fs::path plate_dir = fs::path(images_dir) / plate;
    // (well, site) → the files of each channel (several when duplicated).
    std::map<std::pair<std::string, int>, std::array<std::vector<std::string>, kNumChannels>> found;
    for (fs::directory_iterator it(plate_dir, ec), end; !ec && it != end; it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      ImageFileName parsed;
      std::string name = it->path().filename().string();
      if (!ParseImageFileName(name, &parsed)) {
        ++result.files_ignored;
        continue;
      }
      ++result.files_matched;
      found[{parsed.well, parsed.site}][CanonicalChannelForW(parsed.w)].push_back(
          it->path().string());
    }
    if (ec)
      return absl::InternalError(
          absl::StrCat("cannot list '", plate_dir.string(), "': ", ec.message()));
    for (auto& [key, channels] : found) {
      SiteFiles site{plate, key.first, key.second, {}};
      std::vector<std::string> missing, duplicated, present;
      for (int c = 0; c < kNumChannels; ++c) {
        auto& files = channels[c];
        std::sort(files.begin(), files.end());
        const std::string label = absl::StrCat(kChannelNames[c], " (w", kChannelW[c], ")");
        if (files.empty()) {
          missing.push_back(label);
          continue;
        }
        for (const auto& f : files) present.push_back(fs::path(f).filename().string());
        if (files.size() > 1) duplicated.push_back(absl::StrCat(label, " x", files.size()));
        site.paths[c] = files[0];
      }
      if (missing.empty() && duplicated.empty()) {
        result.sites.push_back(std::move(site));
        continue;
      }
      std::string reason =
          missing.empty() ? "" : absl::StrCat("missing channel(s) ", absl::StrJoin(missing, ", "));
      if (!duplicated.empty()) {
        absl::StrAppend(&reason, reason.empty() ? "" : "; ", "several files for channel(s) ",
                        absl::StrJoin(duplicated, ", "));
      }
      absl::StrAppend(&reason, "; files found: ", absl::StrJoin(present, ", "));
      result.dropped.push_back(
          {"site_incomplete",
           absl::StrCat("plate ", plate, " well ", key.first, " site ", key.second), reason});
    }
  }
  return result;
}

absl::StatusOr<std::array<cv::Mat, kNumChannels>> ReadSite(const SiteFiles& site,
                                                           const io::ImageCheck& check) {
  std::array<cv::Mat, kNumChannels> images;
  for (int c = 0; c < kNumChannels; ++c) {
    CF_ASSIGN_OR_RETURN(images[c], io::ReadImage16(site.paths[c], check));
    if (images[c].size() != images[0].size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(site.paths[c], ": channel ", kChannelNames[c], " is ", images[c].cols, "x",
                       images[c].rows, " but channel ", kChannelNames[0], " (", site.paths[0],
                       ") is ", images[0].cols, "x", images[0].rows));
    }
  }
  return images;
}

}  // namespace cellflux::data
