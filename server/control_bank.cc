#include "server/control_bank.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/data/bbbc047.h"
#include "common/data/dataset.h"
#include "common/data/manifest.h"
#include "common/util/status_macros.h"

namespace cellflux::server {

uint64_t StableHash(const std::string& text) {
  uint64_t h = 14695981039346656037ULL;  // FNV-1a 64 offset basis
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

namespace {

// CP plate → the L1000 plate its pairs used most often (ties: the smallest name).
std::map<std::string, std::string> PairedL1000Plates(const data::Manifest& m) {
  std::map<std::string, std::map<std::string, int64_t>> counts;
  for (const data::ManifestPair& p : m.pairs) ++counts[p.cp_plate][p.l1000_plate];
  std::map<std::string, std::string> out;
  for (const auto& [cp, by_plate] : counts) {
    int64_t best = -1;
    for (const auto& [l1000, n] : by_plate) {
      if (n > best && m.l1000_controls.count(l1000)) {
        best = n;
        out[cp] = l1000;
      }
    }
  }
  return out;
}

}  // namespace

ControlBankReader::~ControlBankReader() = default;

absl::StatusOr<std::unique_ptr<ControlBankReader>> ControlBankReader::Open(const Options& options) {
  if (options.image_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("control bank: image_size must be > 0, got ", options.image_size));
  }
  const bool genes = !options.gene_ids.empty();
  CF_ASSIGN_OR_RETURN(data::Manifest manifest,
                      data::LoadManifest(options.dir, /*load_expression=*/genes));
  std::unique_ptr<ControlBankReader> r(new ControlBankReader());
  r->options_ = options;

  // Model channels → the dataset's canonical order.
  for (const std::string& name : options.channel_names) {
    int found = -1;
    for (int c = 0; c < data::kNumChannels; ++c) {
      if (absl::EqualsIgnoreCase(name, data::kChannelNames[c])) found = c;
    }
    if (found < 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "control bank %s: the model's channel \"%s\" is not one of the dataset's channels (%s)",
          options.dir, name, absl::StrJoin(data::kChannelNames, ", ")));
    }
    r->channel_of_.push_back(found);
  }

  // Model genes → columns of expression.f32.
  std::map<std::string, int> column;
  for (size_t g = 0; g < manifest.gene_ids.size(); ++g)
    column.emplace(manifest.gene_ids[g], static_cast<int>(g));
  for (const std::string& id : options.gene_ids) {
    auto it = column.find(id);
    if (it == column.end()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("control bank %s/genes.tsv: the model's gene \"%s\" is not in the "
                          "dataset (%d genes there)",
                          options.dir, id, manifest.gene_ids.size()));
    }
    r->gene_column_.push_back(it->second);
  }

  // Every DMSO site, with its expression row.
  const std::map<std::string, std::string> paired = PairedL1000Plates(manifest);
  std::string fallback;  // the L1000 plate with most DMSO rows
  for (const auto& [plate, rows] : manifest.l1000_controls) {
    if (fallback.empty() || rows.size() > manifest.l1000_controls.at(fallback).size())
      fallback = plate;
  }
  if (genes && fallback.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("control bank ", options.dir,
                     "/controls_l1000.csv has no DMSO L1000 row; a gene model needs one"));
  }
  for (const data::ControlWell& well : manifest.cp_controls) {
    for (int site_id : well.site_ids) {
      Entry e;
      e.site_id = site_id;
      e.key = {well.plate, absl::AsciiStrToLower(well.well), manifest.sites[site_id].site};
      if (genes) {
        auto it = paired.find(well.plate);
        e.l1000_plate = it != paired.end() ? it->second : fallback;
        const std::vector<int64_t>& rows = manifest.l1000_controls.at(e.l1000_plate);
        const std::string id = absl::StrCat(e.key.plate, "/", e.key.well, "/", e.key.site);
        e.l1000_row = rows[StableHash(id) % rows.size()];
      }
      r->entries_.push_back(std::move(e));
    }
  }
  if (r->entries_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "control bank ", options.dir, "/controls_cp.csv lists no DMSO site with images"));
  }
  std::sort(r->entries_.begin(), r->entries_.end(),
            [](const Entry& a, const Entry& b) { return a.key < b.key; });
  if (options.max_controls > 0 && static_cast<int64_t>(r->entries_.size()) > options.max_controls) {
    r->entries_.resize(static_cast<size_t>(options.max_controls));
  }
  r->manifest_ = std::make_shared<const data::Manifest>(std::move(manifest));
  return r;
}

std::vector<ControlKey> ControlBankReader::keys() const {
  std::vector<ControlKey> out;
  out.reserve(entries_.size());
  for (const Entry& e : entries_) out.push_back(e.key);
  return out;
}

absl::StatusOr<BankControl> ControlBankReader::Read(size_t i) const {
  if (i >= entries_.size()) {
    return absl::OutOfRangeError(absl::StrCat("control bank entry ", i, " of ", entries_.size()));
  }
  const Entry& e = entries_[i];
  const data::SiteFiles& site = manifest_->sites[e.site_id];
  BankControl out;
  out.key = e.key;
  out.l1000_plate = e.l1000_plate;
  out.l1000_row = e.l1000_row;

  // The dataset's own reader and centre crop (evaluation crop), then raw values as uint16.
  CF_ASSIGN_OR_RETURN(torch::Tensor image,
                      data::LoadSiteImage(site, /*check_12bit=*/false));  // [5, H, W]
  const int64_t s = options_.image_size;
  if (image.size(1) < s || image.size(2) < s) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "control bank: plate %s well %s site %d is %d×%d; the model needs at least %d×%d (%s)",
        site.plate, site.well, site.site, image.size(1), image.size(2), s, s, site.paths[0]));
  }
  torch::Tensor crop = data::CropImage(image, s, /*random=*/false, nullptr);  // [5, S, S]
  std::vector<int64_t> order(channel_of_.begin(), channel_of_.end());
  crop = crop.index_select(0, torch::tensor(order, torch::kInt64))
             .round()
             .clamp(0, 65535)
             .to(torch::kInt32)
             .contiguous();
  const int32_t* px = crop.data_ptr<int32_t>();
  out.input.pixels.assign(px, px + crop.numel());

  if (!gene_column_.empty()) {
    const size_t width = manifest_->gene_ids.size();
    const float* row = manifest_->expression.data() + static_cast<size_t>(e.l1000_row) * width;
    out.input.expression.reserve(gene_column_.size());
    for (size_t g = 0; g < gene_column_.size(); ++g) {
      const float v = row[gene_column_[g]];
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("control bank %s/expression.f32 row %d (DMSO, plate %s) gene %s is %g",
                            options_.dir, e.l1000_row, e.l1000_plate, options_.gene_ids[g], v));
      }
      out.input.expression.push_back(v);
    }
  }
  return out;
}

}  // namespace cellflux::server
