#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/data/loader.h"
#include "common/data/manifest.h"
#include "common/data/prepare.h"
#include "common/io/l1000_csv.h"
#include "common/util/files.h"
#include "common/util/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/data/tiny_cdrp.h"

namespace cellflux::data {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A tiny prepared dataset (as in dataset_torch_test.cc, smaller checks): CP plates P1, P2 with
// DMSO wells A01, A02 and compounds C01..C<n> in B01.., two random 40×48 sites per well; L1000
// plates L1, L2 with two DMSO rows and one replicate per compound. With 12 compounds: 3 test,
// 1 val, 8 train perturbations → 16 train pairs (2 per perturbation).
class LoaderTest : public ::testing::Test {
 protected:
  static constexpr int kCompounds = 12;
  static constexpr int kHeight = 40, kWidth = 48, kCrop = 32, kGenes = 3;

  void SetUp() override {
    SetMinLogLevel(LogLevel::kERROR);
    root_ = absl::StrCat(::testing::TempDir(), "/loader_test_", ::getpid(), "_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    cv::RNG rng(3);
    testing::WriteTinyCdrp(
        root_, kCompounds, kHeight, kWidth, kGenes,
        [&rng](const std::string&, const std::string&, int, int, cv::Mat* m) {
          rng.fill(*m, cv::RNG::UNIFORM, 0, 4096);
        },
        &manifest_);
  }
  void TearDown() override { fs::remove_all(root_); }

  static std::string Compound(int c) { return testing::Compound(c); }
  static std::string Well(int c) { return testing::Well(c); }

  std::shared_ptr<const CellPaintingDataset> Dataset(Split split = Split::kTrain) {
    DatasetOptions o;
    o.split = split;
    o.image_size = kCrop;
    o.seed = 11;
    auto d = CellPaintingDataset::Create(manifest_, o);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? std::shared_ptr<const CellPaintingDataset>(*std::move(d)) : nullptr;
  }
  std::unique_ptr<Loader> MakeLoader(LoaderOptions o, Split split = Split::kTrain) {
    auto l = Loader::Create(Dataset(split), o);
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? *std::move(l) : nullptr;
  }
  // Every batch of `epoch`; fails the test on an error.
  static std::vector<Batch> Drain(Loader& loader, int64_t epoch) {
    loader.StartEpoch(epoch);
    std::vector<Batch> out;
    while (true) {
      auto b = loader.Next();
      EXPECT_TRUE(b.ok()) << b.status();
      if (!b.ok() || !b->has_value()) break;
      out.push_back(**std::move(b));
    }
    return out;
  }
  static std::vector<int64_t> PairIds(const std::vector<Batch>& batches) {
    std::vector<int64_t> ids;
    for (const Batch& b : batches) ids.insert(ids.end(), b.pair_ids.begin(), b.pair_ids.end());
    return ids;
  }

  std::string root_;
  std::shared_ptr<Manifest> manifest_;
};

TEST_F(LoaderTest, BatchesHaveShapesAndSamePlateControls) {
  LoaderOptions o;
  o.batch_size = 5;
  auto loader = MakeLoader(o);
  ASSERT_NE(loader, nullptr);
  std::vector<Batch> batches = Drain(*loader, 0);
  ASSERT_EQ(batches.size(), 4u);  // 16 = 5 + 5 + 5 + 1
  EXPECT_EQ(batches.back().size(), 1);
  for (size_t k = 0; k < batches.size(); ++k) {
    const Batch& b = batches[k];
    const int64_t n = b.size();
    EXPECT_EQ(b.index, static_cast<int64_t>(k));
    EXPECT_EQ(b.perturbed.sizes(), torch::IntArrayRef({n, 5, kCrop, kCrop}));
    EXPECT_EQ(b.control.sizes(), torch::IntArrayRef({n, 5, kCrop, kCrop}));
    EXPECT_EQ(b.perturbed_expr.sizes(), torch::IntArrayRef({n, kGenes}));
    EXPECT_EQ(b.control_expr.sizes(), torch::IntArrayRef({n, kGenes}));
    EXPECT_EQ(b.labels.scalar_type(), torch::kInt64);
    EXPECT_LE(b.perturbed.abs().max().item<float>(), 1.0f);
    for (int64_t i = 0; i < n; ++i) {
      const SampleIds& id = b.ids[i];
      const ManifestPair& p = manifest_->pairs[id.pair_id];
      ASSERT_EQ(p.pair_id, id.pair_id);
      EXPECT_EQ(b.labels[i].item<int64_t>(), manifest_->VocabRow(p.perturbation));
      // CP control: a DMSO well on the pair's CP plate (ids name the plate of both images).
      EXPECT_EQ(id.plate, p.cp_plate);
      bool control_on_plate = false;
      for (const ControlWell& w : manifest_->cp_controls)
        control_on_plate |= w.plate == p.cp_plate && w.well == id.control_well;
      EXPECT_TRUE(control_on_plate) << id.control_well << " on " << p.cp_plate;
      // L1000 control: a DMSO row of the pair's L1000 plate.
      EXPECT_THAT(manifest_->l1000_controls.at(p.l1000_plate),
                  ::testing::Contains(id.control_l1000_row));
    }
  }
}

TEST_F(LoaderTest, SameSeedAndEpochGiveIdenticalBatchesForAnyWorkerCount) {
  LoaderOptions o;
  o.batch_size = 3;
  o.seed = 42;
  o.num_workers = 1;
  auto one = MakeLoader(o);
  o.num_workers = 3;
  o.prefetch_batches = 2;
  auto three = MakeLoader(o);
  ASSERT_TRUE(one && three);
  std::vector<Batch> a = Drain(*one, 2), b = Drain(*three, 2), again = Drain(*three, 2);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_EQ(a.size(), again.size());
  for (size_t k = 0; k < a.size(); ++k) {
    EXPECT_EQ(a[k].pair_ids, b[k].pair_ids);
    EXPECT_TRUE(torch::equal(a[k].perturbed, b[k].perturbed)) << k;
    EXPECT_TRUE(torch::equal(a[k].control, b[k].control)) << k;
    EXPECT_TRUE(torch::equal(a[k].perturbed_expr, b[k].perturbed_expr)) << k;
    EXPECT_TRUE(torch::equal(a[k].control_expr, b[k].control_expr)) << k;
    EXPECT_TRUE(torch::equal(a[k].labels, b[k].labels)) << k;
    EXPECT_TRUE(torch::equal(b[k].control, again[k].control)) << k;
  }
}

TEST_F(LoaderTest, EachEpochIsADifferentPermutationOfTheSplit) {
  LoaderOptions o;
  o.batch_size = 4;
  auto loader = MakeLoader(o);
  ASSERT_NE(loader, nullptr);
  std::vector<int64_t> e0 = PairIds(Drain(*loader, 0)), e1 = PairIds(Drain(*loader, 1));
  EXPECT_NE(e0, e1);
  EXPECT_EQ(std::multiset<int64_t>(e0.begin(), e0.end()),
            std::multiset<int64_t>(e1.begin(), e1.end()));
  EXPECT_EQ(std::set<int64_t>(e0.begin(), e0.end()).size(), 16u);  // each item once
  std::vector<int64_t> announced;  // EpochItems() names the items the epoch delivers, in order
  auto d = Dataset();
  for (int64_t i : loader->EpochItems(0)) announced.push_back(d->pair(i).pair_id);
  EXPECT_EQ(announced, e0);
  o.shuffle = false;
  auto ordered = MakeLoader(o);
  std::vector<int64_t> plain = PairIds(Drain(*ordered, 5));
  EXPECT_TRUE(std::is_sorted(plain.begin(), plain.end()));
}

TEST_F(LoaderTest, ShardsAreDisjointAndCoverTheEpoch) {
  for (int world : {2, 3}) {
    std::multiset<int64_t> all;
    std::vector<size_t> sizes;
    for (int rank = 0; rank < world; ++rank) {
      LoaderOptions o;
      o.batch_size = 4;
      o.seed = 9;
      o.rank = rank;
      o.world_size = world;
      auto loader = MakeLoader(o);
      ASSERT_NE(loader, nullptr);
      std::vector<int64_t> ids = PairIds(Drain(*loader, 3));
      all.insert(ids.begin(), ids.end());
      sizes.push_back(ids.size());
    }
    EXPECT_EQ(all.size(), 16u) << world;
    EXPECT_EQ(std::set<int64_t>(all.begin(), all.end()).size(), 16u)
        << "shards overlap, W=" << world;
    if (world == 3) EXPECT_EQ(sizes, (std::vector<size_t>{6, 5, 5}));
  }
  // even_shards: every rank the same count, the epoch's remainder dropped.
  LoaderOptions o;
  o.world_size = 3;
  o.even_shards = true;
  for (o.rank = 0; o.rank < 3; ++o.rank) EXPECT_EQ(MakeLoader(o)->EpochItems(0).size(), 5u);
}

TEST_F(LoaderTest, TrainNeverYieldsTestOrValItems) {
  LoaderOptions o;
  o.batch_size = 7;
  auto loader = MakeLoader(o);
  ASSERT_NE(loader, nullptr);
  std::vector<int64_t> ids = PairIds(Drain(*loader, 0));
  EXPECT_EQ(ids.size(), 16u);
  for (int64_t id : ids) EXPECT_EQ(manifest_->pairs[id].split, Split::kTrain) << id;
  auto test_loader = MakeLoader(o, Split::kTest);
  for (int64_t id : PairIds(Drain(*test_loader, 0)))
    EXPECT_EQ(manifest_->pairs[id].split, Split::kTest) << id;
}

TEST_F(LoaderTest, ResumeMidEpochAndDropLast) {
  LoaderOptions o;
  o.batch_size = 3;
  auto loader = MakeLoader(o);
  std::vector<Batch> full = Drain(*loader, 4);
  ASSERT_EQ(full.size(), 6u);
  loader->StartEpoch(4, /*first_batch=*/4);
  auto b4 = loader->Next();
  ASSERT_TRUE(b4.ok() && b4->has_value());
  EXPECT_EQ((*b4)->index, 4);
  EXPECT_EQ((*b4)->pair_ids, full[4].pair_ids);
  EXPECT_TRUE(torch::equal((*b4)->control, full[4].control));
  o.drop_last = true;
  auto dropping = MakeLoader(o);
  EXPECT_EQ(Drain(*dropping, 4).size(), 5u);
  EXPECT_EQ(dropping->NumBatches(4), 5);
}

TEST_F(LoaderTest, NextBeforeStartEpochAndBadOptions) {
  auto loader = MakeLoader({});
  EXPECT_EQ(loader->Next().status().code(), absl::StatusCode::kFailedPrecondition);
  LoaderOptions o;
  o.rank = 2;
  o.world_size = 2;
  EXPECT_THAT(Loader::Create(Dataset(), o).status().message(), HasSubstr("rank 2 of 2"));
  o = {};
  o.num_workers = 0;
  EXPECT_FALSE(Loader::Create(Dataset(), o).ok());
}

TEST_F(LoaderTest, DestructorMidEpochJoinsWorkers) {
  for (int consumed : {0, 1, 3}) {
    LoaderOptions o;
    o.batch_size = 1;
    o.num_workers = 3;
    o.prefetch_batches = 2;  // workers block on the full queue
    auto loader = MakeLoader(o);
    ASSERT_NE(loader, nullptr);
    loader->StartEpoch(0);
    for (int i = 0; i < consumed; ++i) ASSERT_TRUE(loader->Next().ok());
    loader->StartEpoch(1);  // abandons epoch 0 mid-way
    for (int i = 0; i < consumed; ++i) ASSERT_TRUE(loader->Next().ok());
    loader.reset();  // must return: a hang here fails by the test timeout
  }
}

// --- Bad samples -------------------------------------------------------------------------------

enum class Breakage { kMissingTiff, kWrongSize, kEightBit, kNanExpression };

class BadSampleTest : public LoaderTest, public ::testing::WithParamInterface<Breakage> {
 protected:
  // Breaks the pair with the smallest pair id among train items; returns (reason, text the error names).
  std::pair<std::string, std::string> Break(const CellPaintingDataset& d) {
    const ManifestPair& p = d.pair(0);
    std::vector<std::string> dna;
    for (const SiteFiles& s : manifest_->sites) {
      if (s.plate == p.cp_plate && s.well == p.well) dna.push_back(s.paths[0]);
    }
    switch (GetParam()) {
      case Breakage::kMissingTiff:
        for (const auto& f : dna) fs::remove(f);
        return {"missing_file", fs::path(dna[0]).parent_path().string()};
      case Breakage::kWrongSize:
        for (const auto& f : dna)
          cv::imwrite(f, cv::Mat(kHeight + 5, kWidth, CV_16UC1, cv::Scalar(1)));
        return {"bad_image", absl::StrCat(kWidth, "x", kHeight + 5)};
      case Breakage::kEightBit:
        for (const auto& f : dna) cv::imwrite(f, cv::Mat(kHeight, kWidth, CV_8UC1, cv::Scalar(1)));
        return {"bad_image", "8-bit"};
      case Breakage::kNanExpression:
        manifest_->expression[p.l1000_row * kGenes] = NAN;
        return {"bad_expression", absl::StrCat("expression.f32 row ", p.l1000_row, " ")};
    }
    return {};
  }
};

TEST_P(BadSampleTest, ErrorByDefaultNamingTheFileOrRow) {
  LoaderOptions o;
  o.batch_size = 4;
  auto loader = MakeLoader(o);
  ASSERT_NE(loader, nullptr);
  auto [reason, names] = Break(*Dataset());
  loader->StartEpoch(0);
  absl::Status error;
  int64_t delivered = 0;
  while (true) {
    auto b = loader->Next();
    if (!b.ok()) {
      error = b.status();
      break;
    }
    ASSERT_TRUE(b->has_value()) << "epoch ended without reporting the bad sample";
    delivered += (*b)->size();
  }
  EXPECT_THAT(error.message(), HasSubstr(names));
  EXPECT_EQ(BadSampleReason(error), reason);
  EXPECT_LT(delivered, 16);
  EXPECT_EQ(loader->Next().status(), error);  // sticky until the next StartEpoch
}

TEST_P(BadSampleTest, SkippedAndCountedWithSkip) {
  LoaderOptions o;
  o.batch_size = 4;
  o.num_workers = 3;
  o.on_bad_sample = OnBadSample::kSkip;
  auto loader = MakeLoader(o);
  ASSERT_NE(loader, nullptr);
  auto [reason, names] = Break(*Dataset());
  const int64_t victim = Dataset()->pair(0).pair_id;
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> ids = PairIds(Drain(*loader, epoch));
    EXPECT_EQ(ids.size(), 15u);
    EXPECT_THAT(ids, ::testing::Not(::testing::Contains(victim)));
    EXPECT_EQ(loader->SkippedThisEpoch(), (std::map<std::string, int64_t>{{reason, 1}}));
  }
  EXPECT_EQ(loader->SkippedTotal(), (std::map<std::string, int64_t>{{reason, 2}}));
}

INSTANTIATE_TEST_SUITE_P(AllCases, BadSampleTest,
                         ::testing::Values(Breakage::kMissingTiff, Breakage::kWrongSize,
                                           Breakage::kEightBit, Breakage::kNanExpression));

}  // namespace
}  // namespace cellflux::data
