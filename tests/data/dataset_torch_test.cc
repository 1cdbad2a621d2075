#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/data/dataset.h"
#include "common/data/manifest.h"
#include "common/data/prepare.h"
#include "common/io/l1000_csv.h"
#include "common/util/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/data/tiny_cdrp.h"

namespace cellflux::data {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int kHeight = 40, kWidth = 48, kCrop = 32, kCompounds = 12, kGenes = 4;

// A tiny prepared dataset: CP plates P1, P2 (plate map M1: A01, A02 DMSO; B01..B12 compounds
// C01..C12 at 5 mM, key Cnn_10.0), two 40×48 sites per well. Pixel (y, x) of channel image k is
// 8·k + (x + y) mod 7, so every pixel tells which file it came from (k = pixel / 8). L1000 plates
// L1, L2: two DMSO rows and one replicate per compound each; gene 3 is constant (std 0).
// Split: 3 test, 1 val, 8 train perturbations → 16 train pairs.
class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = absl::StrCat(::testing::TempDir(), "/dataset_test_", ::getpid(), "_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    testing::WriteTinyCdrp(
        root_, kCompounds, kHeight, kWidth, kGenes,
        [this](const std::string& plate, const std::string& well, int site, int w, cv::Mat* m) {
          const int k = static_cast<int>(file_ids_.size());
          file_ids_[{plate, well, site, CanonicalChannelForW(w)}] = k;
          for (int y = 0; y < kHeight; ++y) {
            for (int x = 0; x < kWidth; ++x)
              m->at<uint16_t>(y, x) = static_cast<uint16_t>(8 * k + (x + y) % 7);
          }
        },
        &manifest_);
  }
  void TearDown() override { fs::remove_all(root_); }

  static std::string Compound(int c) { return testing::Compound(c); }
  static std::string Well(int c) { return testing::Well(c); }

  std::unique_ptr<CellPaintingDataset> Make(DatasetOptions o = {}) {
    o.image_size = kCrop;
    auto d = CellPaintingDataset::Create(manifest_, o);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *std::move(d) : nullptr;
  }

  // Checks that every pixel of img [5, S, S] comes from (plate, well, site), channel by channel.
  void ExpectFrom(const torch::Tensor& img, const std::string& plate, const std::string& well,
                  int site) {
    ASSERT_EQ(img.sizes(), torch::IntArrayRef({5, kCrop, kCrop}));
    EXPECT_GE(img.min().item<float>(), -1.0f);
    EXPECT_LE(img.max().item<float>(), 1.0f);
    torch::Tensor raw = ((img + 1.0) * 0.5 * 4095.0).round().to(torch::kInt64);
    for (int c = 0; c < 5; ++c) {
      const int k = file_ids_.at({plate, well, site, c});
      torch::Tensor ids = torch::div(raw[c], 8, "floor");
      EXPECT_TRUE(torch::all(ids == k).item<bool>())
          << plate << " " << well << " s" << site << " c" << c;
    }
  }

  std::vector<float> Standardized(int64_t row) const {
    std::vector<float> v(kGenes);
    for (int g = 0; g < kGenes; ++g) {
      v[g] =
          static_cast<float>((manifest_->expression[row * kGenes + g] - manifest_->gene_mean[g]) /
                             std::max(manifest_->gene_std[g], 1e-6));
    }
    return v;
  }
  static std::vector<float> ToVector(const torch::Tensor& t) {
    return std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  }
  // Paths of channel c of every site of (plate, well).
  std::vector<std::string> Paths(const std::string& plate, const std::string& well, int c) const {
    std::vector<std::string> out;
    for (const SiteFiles& s : manifest_->sites) {
      if (s.plate == plate && s.well == well) out.push_back(s.paths[c]);
    }
    return out;
  }

  std::string root_;
  std::shared_ptr<Manifest> manifest_;
  std::map<std::tuple<std::string, std::string, int, int>, int>
      file_ids_;  // (plate, well, site, c) → k
};

TEST_F(DatasetTest, ItemsComeFromTheirWellsWithSamePlateControls) {
  auto d = Make();
  ASSERT_NE(d, nullptr);
  ASSERT_EQ(d->size(), 16);
  EXPECT_EQ(d->num_genes(), kGenes);
  std::set<std::string> control_wells;
  std::set<int> sites, control_sites;
  std::set<int64_t> control_rows;
  for (int64_t epoch = 0; epoch < 4; ++epoch) {
    for (int64_t i = 0; i < d->size(); ++i) {
      auto s = d->Get(i, epoch);
      ASSERT_TRUE(s.ok()) << s.status();
      const ManifestPair& p = d->pair(i);
      EXPECT_EQ(s->ids.pair_id, p.pair_id);
      EXPECT_EQ(s->ids.plate, p.cp_plate);
      EXPECT_EQ(s->ids.well, p.well);
      ExpectFrom(s->perturbed, p.cp_plate, p.well, s->ids.site);
      // Control image: a DMSO well of the same CP plate, and its pixels are that well's.
      EXPECT_TRUE(s->ids.control_well == "A01" || s->ids.control_well == "A02")
          << s->ids.control_well;
      ExpectFrom(s->control, p.cp_plate, s->ids.control_well, s->ids.control_site);
      // Control expression: a DMSO row of the same L1000 plate.
      const std::vector<int64_t>& plate_controls = manifest_->l1000_controls.at(p.l1000_plate);
      EXPECT_THAT(plate_controls, ::testing::Contains(s->ids.control_l1000_row));
      EXPECT_EQ(manifest_->expression_rows[s->ids.control_l1000_row].plate, p.l1000_plate);
      EXPECT_EQ(ToVector(s->control_expr), Standardized(s->ids.control_l1000_row));
      EXPECT_EQ(ToVector(s->perturbed_expr), Standardized(p.l1000_row));
      EXPECT_EQ(s->perturbed_expr[3].item<float>(), 0.0f);  // constant gene: std clamped, no inf
      EXPECT_EQ(s->label, manifest_->VocabRow(p.perturbation));
      EXPECT_GE(s->label, 0);
      control_wells.insert(s->ids.control_well);
      sites.insert(s->ids.site);
      control_sites.insert(s->ids.control_site);
      control_rows.insert(s->ids.control_l1000_row);
    }
  }
  // Draws vary: both control wells, both sites, all four DMSO rows are used.
  EXPECT_EQ(control_wells.size(), 2u);
  EXPECT_EQ(sites.size(), 2u);
  EXPECT_EQ(control_sites.size(), 2u);
  EXPECT_EQ(control_rows.size(), 4u);
}

TEST_F(DatasetTest, ItemIsAPureFunctionOfIndexEpochAndSeed) {
  auto a = Make();
  auto b = Make();
  DatasetOptions other_seed;
  other_seed.seed = 99;
  auto c = Make(other_seed);
  ASSERT_NE(c, nullptr);
  int differs_by_epoch = 0, differs_by_seed = 0;
  for (int64_t i = a->size(); i-- > 0;) {  // reverse order: results must not depend on call order
    auto x = a->Get(i, 3);
    auto y = b->Get(i, 3);
    auto z = a->Get(i, 4);
    auto w = c->Get(i, 3);
    ASSERT_TRUE(x.ok() && y.ok() && z.ok() && w.ok());
    EXPECT_TRUE(torch::equal(x->perturbed, y->perturbed));
    EXPECT_TRUE(torch::equal(x->control, y->control));
    EXPECT_TRUE(torch::equal(x->control_expr, y->control_expr));
    EXPECT_EQ(x->ids.control_well, y->ids.control_well);
    differs_by_epoch +=
        !torch::equal(x->perturbed, z->perturbed) || !torch::equal(x->control, z->control);
    differs_by_seed +=
        !torch::equal(x->perturbed, w->perturbed) || !torch::equal(x->control, w->control);
  }
  EXPECT_GT(differs_by_epoch, 8);
  EXPECT_GT(differs_by_seed, 8);
}

TEST_F(DatasetTest, EvaluationUsesFirstSiteCentreCropAndPreDrawnControl) {
  DatasetOptions o;
  o.training = false;
  auto d = Make(o);
  ASSERT_NE(d, nullptr);
  for (int64_t i = 0; i < d->size(); ++i) {
    auto s = d->Get(i, 0);
    auto again = d->Get(i, 7);
    ASSERT_TRUE(s.ok() && again.ok());
    const ManifestPair& p = d->pair(i);
    EXPECT_EQ(s->ids.site, manifest_->sites[p.site_ids[0]].site);
    EXPECT_EQ(s->ids.control_well, p.control_well);
    EXPECT_EQ(s->ids.control_site, manifest_->sites[p.control_site_ids[0]].site);
    EXPECT_EQ(s->ids.control_l1000_row, p.control_l1000_row);
    EXPECT_TRUE(torch::equal(s->perturbed, again->perturbed));  // epoch does not matter
    // Same as the building blocks: LoadSiteImage → CropImage(centre) → (x / 4095).clamp(0,1)·2 − 1.
    auto raw = LoadSiteImage(manifest_->sites[p.site_ids[0]], true);
    ASSERT_TRUE(raw.ok()) << raw.status();
    torch::Tensor expected =
        (CropImage(*raw, kCrop, false, nullptr) / 4095.0f).clamp(0.0, 1.0) * 2.0 - 1.0;
    EXPECT_TRUE(torch::equal(s->perturbed, expected));
  }
}

TEST_F(DatasetTest, VocabularyLabelsAndSplits) {
  DatasetOptions test;
  test.split = Split::kTest;
  auto d = Make(test);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->size(), 6);
  for (int64_t i = 0; i < d->size(); ++i) {
    EXPECT_EQ(d->pair(i).split, Split::kTest);
    auto s = d->Get(i, 0);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->label, kNotInVocabulary);
  }
}

TEST_F(DatasetTest, CropImageAndOffsets) {
  torch::Tensor img = torch::arange(5 * 10 * 12, torch::kFloat32).view({5, 10, 12});
  torch::Tensor centre = CropImage(img, 4, false, nullptr);
  EXPECT_TRUE(torch::equal(centre, img.slice(1, 3, 7).slice(2, 4, 8)));
  std::set<std::pair<int64_t, int64_t>> seen;
  std::mt19937_64 rng(1), rng2(1);
  for (int i = 0; i < 200; ++i) {
    auto [top, left] = CropOffset(10, 12, 4, true, &rng);
    ASSERT_GE(top, 0);
    ASSERT_LE(top, 6);
    ASSERT_GE(left, 0);
    ASSERT_LE(left, 8);
    seen.insert({top, left});
    torch::Tensor crop = CropImage(img, 4, true, &rng2);
    EXPECT_TRUE(torch::equal(crop, img.slice(1, top, top + 4).slice(2, left, left + 4)));
  }
  EXPECT_GT(seen.size(), 40u);  // 63 positions
  EXPECT_EQ(CropOffset(4, 4, 4, true, &rng), std::make_pair(int64_t{0}, int64_t{0}));
}

TEST_F(DatasetTest, CacheChangesNothingButSpeed) {
  DatasetOptions cached;
  cached.image_cache_bytes = 64 << 20;
  auto a = Make();
  auto b = Make(cached);
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t i = 0; i < a->size(); ++i) {
      auto x = a->Get(i, pass);
      auto y = b->Get(i, pass);
      ASSERT_TRUE(x.ok() && y.ok());
      EXPECT_TRUE(torch::equal(x->perturbed, y->perturbed));
      EXPECT_TRUE(torch::equal(x->control, y->control));
    }
  }
  auto stats = b->cache_stats();
  EXPECT_GT(stats.hits, 0);
  EXPECT_GT(stats.entries, 0);
  EXPECT_EQ(a->cache_stats().entries, 0);
  // A budget of two sites keeps at most two.
  DatasetOptions tiny;
  tiny.image_cache_bytes = 2 * 5 * kWidth * kHeight * 2;
  auto c = Make(tiny);
  for (int64_t i = 0; i < c->size(); ++i) ASSERT_TRUE(c->Get(i, 0).ok());
  EXPECT_LE(c->cache_stats().entries, 2);
  EXPECT_LE(c->cache_stats().bytes, tiny.image_cache_bytes);
}

TEST_F(DatasetTest, OptionAndManifestErrors) {
  DatasetOptions o;
  o.image_size = 0;
  EXPECT_THAT(CellPaintingDataset::Create(manifest_, o).status().message(),
              HasSubstr("image_size"));
  o = {};
  o.normalization.method = "zscore";
  EXPECT_THAT(CellPaintingDataset::Create(manifest_, o).status().message(), HasSubstr("zscore"));
  auto no_expr = std::make_shared<Manifest>(*manifest_);
  no_expr->expression.clear();
  EXPECT_THAT(CellPaintingDataset::Create(no_expr, {}).status().message(),
              HasSubstr("load_expression"));
  auto no_val = std::make_shared<Manifest>(*manifest_);
  no_val->pairs.erase(std::remove_if(no_val->pairs.begin(), no_val->pairs.end(),
                                     [](const ManifestPair& p) { return p.split == Split::kVal; }),
                      no_val->pairs.end());
  DatasetOptions val;
  val.split = Split::kVal;
  EXPECT_EQ(CellPaintingDataset::Create(no_val, val).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// --- Bad data: each case names the file/row and carries its reason. --------------------------

class BadDataTest : public DatasetTest {
 protected:
  // Item 0's pair: a compound well used by no other item.
  const ManifestPair& Victim(const CellPaintingDataset& d) { return d.pair(0); }
  void ExpectBad(const std::string& reason, absl::StatusCode code,
                 const std::vector<std::string>& names) {
    auto d = Make();
    ASSERT_NE(d, nullptr);
    auto s = d->Get(0, 0);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), code) << s.status();
    for (const std::string& name : names)
      EXPECT_THAT(std::string(s.status().message()), HasSubstr(name));
    EXPECT_THAT(s.status().message(), HasSubstr(absl::StrCat("pair ", d->pair(0).pair_id)));
    EXPECT_EQ(BadSampleReason(s.status()), reason);
    for (int64_t i = 1; i < d->size(); ++i)
      EXPECT_TRUE(d->Get(i, 0).ok()) << i;  // others unaffected
  }
};

TEST_F(BadDataTest, MissingTiff) {
  const ManifestPair& p = Victim(*Make());
  const std::vector<std::string> paths = Paths(p.cp_plate, p.well, 2);
  for (const auto& path : paths) fs::remove(path);
  ExpectBad("missing_file", absl::StatusCode::kNotFound,
            {fs::path(paths[0]).parent_path().string(), "_w2"});  // ER
  auto raw = LoadSiteImage(manifest_->sites[p.site_ids[0]], true);
  EXPECT_EQ(raw.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(BadSampleReason(raw.status()), "missing_file");
}

TEST_F(BadDataTest, ChannelOfWrongSize) {
  const ManifestPair& p = Victim(*Make());
  for (const auto& path : Paths(p.cp_plate, p.well, 3))
    ASSERT_TRUE(cv::imwrite(path, cv::Mat(30, 30, CV_16UC1, cv::Scalar(5))));
  ExpectBad("bad_image", absl::StatusCode::kInvalidArgument, {"30x30", "_w4"});
}

TEST_F(BadDataTest, SiteSmallerThanCrop) {
  const ManifestPair& p = Victim(*Make());
  for (int c = 0; c < 5; ++c) {
    for (const auto& path : Paths(p.cp_plate, p.well, c))
      ASSERT_TRUE(cv::imwrite(path, cv::Mat(20, 24, CV_16UC1, cv::Scalar(5))));
  }
  ExpectBad("image_too_small", absl::StatusCode::kInvalidArgument,
            {"24x20, smaller than the 32x32 crop", "_w1"});
}

TEST_F(BadDataTest, EightBitTiff) {
  const ManifestPair& p = Victim(*Make());
  const std::vector<std::string> paths = Paths(p.cp_plate, p.well, 1);
  for (const auto& path : paths)
    ASSERT_TRUE(cv::imwrite(path, cv::Mat(kHeight, kWidth, CV_8UC1, cv::Scalar(5))));
  ExpectBad("bad_image", absl::StatusCode::kInvalidArgument,
            {fs::path(paths[0]).parent_path().string(), "_w3", "8-bit unsigned"});
}

TEST_F(BadDataTest, NanExpression) {
  const ManifestPair& p = Victim(*Make());
  manifest_->expression[p.l1000_row * kGenes + 1] = NAN;
  ExpectBad("bad_expression", absl::StatusCode::kInvalidArgument,
            {absl::StrCat("expression.f32 row ", p.l1000_row, " "), "gene 2_at is nan"});
}

}  // namespace
}  // namespace cellflux::data
