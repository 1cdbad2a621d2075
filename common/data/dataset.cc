#include "common/data/dataset.h"

#include <torch/torch.h>

#include <cmath>
#include <list>
#include <unordered_map>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/torch/tensors.h"
#include "common/util/status_macros.h"

namespace cellflux::data {

using SiteImages = std::array<cv::Mat, kNumChannels>;  // CV_16UC1, canonical order

// LRU of decoded sites keyed by site id, bounded in bytes. Entries are immutable and shared, so a
// reader keeps using an image the cache has since evicted.
class DecodedSiteCache {
 public:
  explicit DecodedSiteCache(int64_t budget_bytes) : budget_(budget_bytes) {}

  std::shared_ptr<const SiteImages> Lookup(int site_id) {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(site_id);
    if (it == entries_.end()) {
      ++misses_;
      return nullptr;
    }
    ++hits_;
    lru_.splice(lru_.begin(), lru_, it->second.lru_pos);
    return it->second.images;
  }

  // Another thread may have inserted the same site meanwhile (both decoded it): keep the first.
  void Insert(int site_id, std::shared_ptr<const SiteImages> images) {
    int64_t bytes = 0;
    for (const cv::Mat& m : *images) bytes += static_cast<int64_t>(m.total() * m.elemSize());
    if (bytes > budget_) return;
    absl::MutexLock lock(&mu_);
    if (entries_.count(site_id) > 0) return;
    while (bytes_ + bytes > budget_ && !lru_.empty()) EvictLocked();
    lru_.push_front(site_id);
    entries_[site_id] = Entry{std::move(images), bytes, lru_.begin()};
    bytes_ += bytes;
  }

  CellPaintingDataset::CacheStats Stats() const {
    absl::MutexLock lock(&mu_);
    return {hits_, misses_, bytes_, static_cast<int64_t>(entries_.size())};
  }

 private:
  struct Entry {
    std::shared_ptr<const SiteImages> images;
    int64_t bytes = 0;
    std::list<int>::iterator lru_pos;
  };
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = entries_.find(lru_.back());
    bytes_ -= it->second.bytes;
    entries_.erase(it);
    lru_.pop_back();
  }

  const int64_t budget_;
  mutable absl::Mutex mu_;
  std::list<int> lru_ ABSL_GUARDED_BY(mu_);  // most recent first
  std::unordered_map<int, Entry> entries_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t hits_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t misses_ ABSL_GUARDED_BY(mu_) = 0;
};

namespace {

absl::Status WithReason(absl::Status status, absl::string_view reason) {
  status.SetPayload(kBadSampleReasonUrl, absl::Cord(reason));
  return status;
}

absl::Status ImageError(const absl::Status& status) {
  return WithReason(status,
                    status.code() == absl::StatusCode::kNotFound ? "missing_file" : "bad_image");
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  absl::Status out(status.code(), absl::StrCat(context, ": ", status.message()));
  status.ForEachPayload(
      [&](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

absl::StatusOr<SiteImages> ReadSiteChecked(const SiteFiles& site, bool check_12bit) {
  io::ImageCheck check;
  if (check_12bit) check.max_value = io::kMax12Bit;
  auto images = ReadSite(site, check);
  if (!images.ok()) return ImageError(images.status());
  return std::move(images).value();
}

std::mt19937_64 ItemRng(uint64_t seed, int64_t epoch, int64_t pair_id) {
  return std::mt19937_64(
      MixSeeds(MixSeeds(seed, static_cast<uint64_t>(epoch)), static_cast<uint64_t>(pair_id)));
}

// Crops one channel and maps raw → [-1, 1] with the same float operations as NormalizeImages
// (models/normalization.cc): ((x - lo) / (hi - lo)).clamp(0, 1) * 2 - 1, so both give bitwise
// equal results. Fused here so the full 696×520 site is never converted to float.
void CropNormalize(const cv::Mat& src, int64_t top, int64_t left, int64_t size, float lo, float hi,
                   float* dst) {
  const float range = hi - lo;
  for (int64_t y = 0; y < size; ++y) {
    const uint16_t* row = src.ptr<uint16_t>(static_cast<int>(top + y)) + left;
    float* out = dst + y * size;
    for (int64_t x = 0; x < size; ++x) {
      float t = (static_cast<float>(row[x]) - lo) / range;
      t = t < 0.0f ? 0.0f : (t > 1.0f ? 1.0f : t);
      out[x] = t * 2.0f - 1.0f;
    }
  }
}

}  // namespace

std::string BadSampleReason(const absl::Status& status) {
  auto payload = status.GetPayload(kBadSampleReasonUrl);
  return payload.has_value() ? std::string(*payload) : std::string();
}

absl::Status DatasetOptions::Validate() const {
  if (image_size <= 0)
    return absl::InvalidArgumentError(absl::StrCat("image_size must be > 0, got ", image_size));
  if (image_cache_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("image_cache_bytes must be >= 0, got ", image_cache_bytes));
  }
  const ImageNormalization& n = normalization;
  if (n.method == "divide") {
    if (!(n.scale > 0))
      return absl::InvalidArgumentError(
          absl::StrCat("normalization.scale must be > 0, got ", n.scale));
  } else if (n.method == "percentile") {
    if (n.low.size() != kNumChannels || n.high.size() != kNumChannels) {
      return absl::InvalidArgumentError(absl::StrCat("normalization percentile low/high need ",
                                                     kNumChannels, " values each, got ",
                                                     n.low.size(), "/", n.high.size()));
    }
    for (int c = 0; c < kNumChannels; ++c) {
      if (!(n.high[c] > n.low[c])) {
        return absl::InvalidArgumentError(absl::StrCat("normalization channel ", kChannelNames[c],
                                                       ": high ", n.high[c], " must exceed low ",
                                                       n.low[c]));
      }
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "normalization.method must be \"divide\" or \"percentile\", got \"", n.method, "\""));
  }
  return absl::OkStatus();
}

uint64_t UniformIndex(std::mt19937_64* rng, uint64_t n) {
  // Reject the top partial block so every residue is equally likely.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do {
    x = (*rng)();
  } while (x >= limit);
  return x % n;
}

std::pair<int64_t, int64_t> CropOffset(int64_t h, int64_t w, int64_t size, bool random,
                                       std::mt19937_64* rng) {
  if (!random) return {(h - size) / 2, (w - size) / 2};
  const int64_t top = static_cast<int64_t>(UniformIndex(rng, static_cast<uint64_t>(h - size + 1)));
  const int64_t left = static_cast<int64_t>(UniformIndex(rng, static_cast<uint64_t>(w - size + 1)));
  return {top, left};
}

torch::Tensor CropImage(const torch::Tensor& img, int64_t size, bool random, std::mt19937_64* rng) {
  auto [top, left] = CropOffset(img.size(-2), img.size(-1), size, random, rng);
  return img.narrow(-2, top, size).narrow(-1, left, size);
}

absl::StatusOr<torch::Tensor> LoadSiteImage(const SiteFiles& site, bool check_12bit) {
  CF_ASSIGN_OR_RETURN(SiteImages images, ReadSiteChecked(site, check_12bit));
  const int64_t h = images[0].rows, w = images[0].cols;
  torch::Tensor out;
  CF_RETURN_IF_ERROR(TorchCall(absl::StrCat("LoadSiteImage ", site.paths[0]), [&] {
    out = torch::empty({kNumChannels, h, w}, torch::kFloat32);  // out: [5, H, W]
    for (int c = 0; c < kNumChannels; ++c) {
      cv::Mat dst(static_cast<int>(h), static_cast<int>(w), CV_32FC1, out[c].data_ptr<float>());
      images[c].convertTo(dst, CV_32F);
    }
  }));
  return out;
}

CellPaintingDataset::CellPaintingDataset(std::shared_ptr<const Manifest> manifest,
                                         const DatasetOptions& options)
    : manifest_(std::move(manifest)), options_(options) {
  if (options_.image_cache_bytes > 0)
    cache_ = std::make_unique<DecodedSiteCache>(options_.image_cache_bytes);
}

CellPaintingDataset::~CellPaintingDataset() = default;

absl::StatusOr<std::unique_ptr<CellPaintingDataset>> CellPaintingDataset::Create(
    std::shared_ptr<const Manifest> manifest, const DatasetOptions& options) {
  if (manifest == nullptr) return absl::InvalidArgumentError("CellPaintingDataset: null manifest");
  CF_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<CellPaintingDataset> dataset(
      new CellPaintingDataset(std::move(manifest), options));
  CF_RETURN_IF_ERROR(dataset->Index());
  return dataset;
}

absl::Status CellPaintingDataset::Index() {
  const Manifest& m = *manifest_;
  const size_t genes = m.gene_ids.size();
  if (genes == 0 || m.gene_mean.size() != genes || m.gene_std.size() != genes) {
    return absl::InvalidArgumentError(absl::StrCat("manifest: ", genes, " genes but ",
                                                   m.gene_mean.size(), " gene means and ",
                                                   m.gene_std.size(), " gene stds"));
  }
  if (m.expression.size() != m.expression_rows.size() * genes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "manifest: expression has ", m.expression.size(), " values, expected rows × genes = ",
        m.expression_rows.size(), " × ", genes, " (load it with load_expression = true)"));
  }
  for (size_t i = 0; i < m.cp_controls.size(); ++i) {
    if (!m.cp_controls[i].site_ids.empty())
      cp_controls_[m.cp_controls[i].plate].push_back(static_cast<int64_t>(i));
  }
  std::unordered_map<std::string, int64_t> vocab;
  for (size_t i = 0; i < m.vocabulary.size(); ++i)
    vocab.emplace(m.vocabulary[i].perturbation_id, i);
  const int64_t rows = static_cast<int64_t>(m.expression_rows.size());
  for (size_t i = 0; i < m.pairs.size(); ++i) {
    const ManifestPair& p = m.pairs[i];
    if (p.split != options_.split) continue;
    const std::string where = absl::StrCat("manifest.csv pair ", p.pair_id);
    if (p.site_ids.empty() || p.control_site_ids.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, ": no sites for the well or its control"));
    }
    for (int id : p.site_ids) {
      if (id < 0 || id >= static_cast<int>(m.sites.size())) {
        return absl::FailedPreconditionError(
            absl::StrCat(where, ": site id ", id, " out of range"));
      }
    }
    if (p.l1000_row < 0 || p.l1000_row >= rows || p.control_l1000_row < 0 ||
        p.control_l1000_row >= rows) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, ": L1000 rows ", p.l1000_row, "/", p.control_l1000_row,
                       " outside expression.f32 (", rows, " rows)"));
    }
    if (options_.training) {
      if (cp_controls_.count(p.cp_plate) == 0) {
        return absl::FailedPreconditionError(
            absl::StrCat(where, ": CP plate ", p.cp_plate, " has no DMSO wells with images"));
      }
      auto it = m.l1000_controls.find(p.l1000_plate);
      if (it == m.l1000_controls.end() || it->second.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat(where, ": L1000 plate ", p.l1000_plate, " has no DMSO rows"));
      }
    }
    pair_index_.push_back(static_cast<int64_t>(i));
    auto v = vocab.find(p.perturbation);
    labels_.push_back(v == vocab.end() ? kNotInVocabulary : v->second);
  }
  if (pair_index_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("manifest has no pairs in split ", SplitName(options_.split)));
  }
  return absl::OkStatus();
}

absl::Status CellPaintingDataset::ExpressionInto(int64_t row, float* dst) const {
  const Manifest& m = *manifest_;
  const int64_t genes = num_genes();
  if (row < 0 || row >= static_cast<int64_t>(m.expression_rows.size())) {
    return absl::OutOfRangeError(absl::StrCat("expression.f32 row ", row, " out of range"));
  }
  const float* src = m.expression.data() + row * genes;
  for (int64_t g = 0; g < genes; ++g) {
    if (!std::isfinite(src[g])) {
      return WithReason(
          absl::InvalidArgumentError(
              absl::StrCat("expression.f32 row ", row, " (L1000 CSV data row ",
                           m.expression_rows[row].source_row, ", ", m.expression_rows[row].key,
                           "): gene ", m.gene_ids[g], " is ", src[g], ", expected a finite value")),
          "bad_expression");
    }
    dst[g] = static_cast<float>((src[g] - m.gene_mean[g]) / std::max(m.gene_std[g], kMinGeneStd));
  }
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> CellPaintingDataset::Expression(int64_t row) const {
  torch::Tensor out;
  CF_RETURN_IF_ERROR(
      TorchCall("Expression", [&] { out = torch::empty({num_genes()}, torch::kFloat32); }));  // [G]
  CF_RETURN_IF_ERROR(ExpressionInto(row, out.data_ptr<float>()));
  return out;
}

absl::Status CellPaintingDataset::CropSite(int site_id, bool random, std::mt19937_64* rng,
                                           float* dst) const {
  const SiteFiles& site = manifest_->sites[site_id];
  std::shared_ptr<const SiteImages> images = cache_ ? cache_->Lookup(site_id) : nullptr;
  if (images == nullptr) {
    CF_ASSIGN_OR_RETURN(SiteImages decoded, ReadSiteChecked(site, options_.check_12bit));
    images = std::make_shared<const SiteImages>(std::move(decoded));
    if (cache_) cache_->Insert(site_id, images);
  }
  const int64_t h = (*images)[0].rows, w = (*images)[0].cols, s = options_.image_size;
  if (h < s || w < s) {
    return WithReason(
        absl::InvalidArgumentError(absl::StrCat(site.paths[0], ": site is ", w, "x", h,
                                                ", smaller than the ", s, "x", s, " crop")),
        "image_too_small");
  }
  auto [top, left] = CropOffset(h, w, s, random, rng);
  const ImageNormalization& n = options_.normalization;
  const bool divide = n.method == "divide";
  for (int c = 0; c < kNumChannels; ++c) {  // dst: [5, S, S]
    const float lo = divide ? 0.0f : static_cast<float>(n.low[c]);
    const float hi = divide ? static_cast<float>(n.scale) : static_cast<float>(n.high[c]);
    CropNormalize((*images)[c], top, left, s, lo, hi, dst + c * s * s);
  }
  return absl::OkStatus();
}

absl::StatusOr<Sample> CellPaintingDataset::Get(int64_t i, int64_t epoch) const {
  Sample out;
  const int64_t s = options_.image_size;
  CF_RETURN_IF_ERROR(TorchCall("CellPaintingDataset::Get", [&] {
    out.perturbed = torch::empty({kNumChannels, s, s}, torch::kFloat32);  // [5, S, S]
    out.control = torch::empty({kNumChannels, s, s}, torch::kFloat32);    // [5, S, S]
    out.perturbed_expr = torch::empty({num_genes()}, torch::kFloat32);    // [G]
    out.control_expr = torch::empty({num_genes()}, torch::kFloat32);      // [G]
  }));
  Destination dst{out.perturbed.data_ptr<float>(), out.control.data_ptr<float>(),
                  out.perturbed_expr.data_ptr<float>(), out.control_expr.data_ptr<float>()};
  CF_RETURN_IF_ERROR(GetInto(i, epoch, dst, &out.label, &out.ids));
  return out;
}

absl::Status CellPaintingDataset::GetInto(int64_t i, int64_t epoch, const Destination& dst,
                                          int64_t* label, SampleIds* ids) const {
  if (i < 0 || i >= size()) return absl::OutOfRangeError(absl::StrCat("item ", i, " of ", size()));
  const Manifest& m = *manifest_;
  const ManifestPair& p = pair(i);
  const bool train = options_.training;
  std::mt19937_64 rng = ItemRng(options_.seed, epoch, p.pair_id);
  *label = labels_[i];
  *ids = SampleIds();
  ids->pair_id = p.pair_id;
  ids->perturbation = p.perturbation;
  ids->plate = p.cp_plate;
  ids->well = p.well;
  ids->l1000_plate = p.l1000_plate;
  ids->l1000_row = p.l1000_row;
  const std::string context =
      absl::StrCat("pair ", p.pair_id, " (", p.perturbation, ", plate ", p.cp_plate, ")");

  // Draw order is part of the contract (determinism): site, crop, control well, control site,
  // control crop, control L1000 row.
  const int site_id = p.site_ids[train ? UniformIndex(&rng, p.site_ids.size()) : 0];
  ids->site = m.sites[site_id].site;
  if (absl::Status s = CropSite(site_id, train, &rng, dst.perturbed); !s.ok()) {
    return Annotate(s, absl::StrCat(context, " perturbed image"));
  }
  int control_site_id = p.control_site_ids[0];
  if (train) {
    const std::vector<int64_t>& wells = cp_controls_.at(p.cp_plate);
    const ControlWell& well = m.cp_controls[wells[UniformIndex(&rng, wells.size())]];
    control_site_id = well.site_ids[UniformIndex(&rng, well.site_ids.size())];
  }
  ids->control_well = m.sites[control_site_id].well;
  ids->control_site = m.sites[control_site_id].site;
  if (absl::Status s = CropSite(control_site_id, train, &rng, dst.control); !s.ok()) {
    return Annotate(s, absl::StrCat(context, " control image"));
  }
  int64_t control_row = p.control_l1000_row;
  if (train) {
    const std::vector<int64_t>& rows = m.l1000_controls.at(p.l1000_plate);
    control_row = rows[UniformIndex(&rng, rows.size())];
  }
  ids->control_l1000_row = control_row;
  if (absl::Status s = ExpressionInto(p.l1000_row, dst.perturbed_expr); !s.ok()) {
    return Annotate(s, absl::StrCat(context, " perturbed expression"));
  }
  if (absl::Status s = ExpressionInto(control_row, dst.control_expr); !s.ok()) {
    return Annotate(s, absl::StrCat(context, " control expression"));
  }
  return absl::OkStatus();
}

CellPaintingDataset::CacheStats CellPaintingDataset::cache_stats() const {
  return cache_ ? cache_->Stats() : CacheStats{};
}

}  // namespace cellflux::data
