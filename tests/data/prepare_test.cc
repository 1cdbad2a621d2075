#include "common/data/prepare.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/data/bbbc047.h"
#include "common/data/manifest.h"
#include "common/io/l1000_csv.h"
#include "common/io/tiff.h"
#include "common/util/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellflux::data {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A tiny two-plate dataset:
//   CP plates P1 and P2 share plate map M1: A01, A02 DMSO; B01..B08 compounds C1..C8 at 5 mM
//   (key Cn_10.0) except B03 = C3 at 1.6665 mM (key C3_3.33); B09 = CPONLY (no L1000 rows).
//   Each well has two sites; P1 B01 site 2 lacks w3 (RNA). Plate P9 is imaged but unmapped.
//   L1000 plates L1, L2: two DMSO rows each; each compound one replicate per plate, except C2's L2
//   replicate which has a NaN cell; plus LONLY_10.0 (no CP well).
class PrepareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = absl::StrCat(::testing::TempDir(), "/prepare_test_", ::getpid(), "_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    ASSERT_TRUE(MakeDirs(root_ + "/platemaps/platemap").ok());
    ASSERT_TRUE(WriteFileAtomic(root_ + "/platemaps/barcode_platemap.csv",
                                "Plate_Map_Name,Assay_Plate_Barcode\nM1,P1\nM1,P2\n")
                    .ok());
    std::string map =
        "well_position\tbroad_sample\tmmoles_per_liter\tsolvent\nA01\t\t\tDMSO\nA02\t\t\tDMSO\n";
    for (int c = 1; c <= 8; ++c) {
      absl::StrAppend(&map, "B0", c, "\tC", c, "\t", c == 3 ? "1.6665" : "5", "\tDMSO\n");
    }
    absl::StrAppend(&map, "B09\tCPONLY\t5\tDMSO\n");
    ASSERT_TRUE(WriteFileAtomic(root_ + "/platemaps/platemap/M1.txt", map).ok());

    for (const char* plate : {"P1", "P2", "P9"}) {
      std::vector<std::string> wells = {"a01", "a02"};
      for (int c = 1; c <= 9; ++c) wells.push_back(absl::StrCat("b0", c));
      if (std::string(plate) == "P9") wells = {"a01"};
      for (const auto& well : wells) {
        for (int site = 1; site <= 2; ++site) {
          for (int w = 1; w <= 5; ++w) {
            if (std::string(plate) == "P1" && well == "b01" && site == 2 && w == 3) continue;
            WriteImage(plate, absl::StrCat("cdp2bioactives_", well, "_s", site, "_w", w,
                                           "0A1B2C3D-1111-2222-3333-444455556666.tif"));
          }
        }
      }
    }
    WriteImage("P1", "cdp2bioactives_a01_s1_w1_thumb.tif");  // ignored

    auto writer = io::L1000CsvWriter::Open(root_ + "/l1k.csv.gz",
                                           {"replicate_id", "pert_id", "pert_dose", "det_plate",
                                            "pert_sample_dose", "CPD_NAME", "CPD_SMILES"},
                                           {"1_at", "2_at", "3_s_at"});
    ASSERT_TRUE(writer.ok());
    auto add = [&](const std::string& pert, const std::string& key, const std::string& plate,
                   bool nan = false) {
      int r = static_cast<int>(rows_.size());
      std::vector<float> v = {0.5f * r, 1.0f + r, nan ? NAN : -0.25f * r * r};
      rows_.push_back(v);
      ASSERT_TRUE((*writer)
                      ->Write({absl::StrCat("rep", r), pert, pert == "DMSO" ? "-666" : "10", plate,
                               key, "name-" + pert, "smiles-" + pert},
                              v)
                      .ok());
    };
    for (const char* plate : {"L1", "L2"}) {
      add("DMSO", "DMSO_-666", plate);
      add("DMSO", "DMSO_-666", plate);
      for (int c = 1; c <= 8; ++c) {
        std::string key = c == 3 ? "C3_3.33" : absl::StrCat("C", c, "_10.0");
        add(absl::StrCat("C", c), key, plate, c == 2 && std::string(plate) == "L2");
      }
    }
    add("LONLY", "LONLY_10.0", "L1");
    ASSERT_TRUE((*writer)->Close().ok());
  }
  void TearDown() override { fs::remove_all(root_); }

  void WriteImage(const std::string& plate, const std::string& name) {
    ASSERT_TRUE(MakeDirs(root_ + "/images/" + plate).ok());
    cv::Mat m(48, 64, CV_16UC1);
    cv::randu(m, 0, 4096);
    // cv::imwrite rather than the atomic WriteTiff16: hundreds of fsyncs would dominate the test.
    ASSERT_TRUE(cv::imwrite(root_ + "/images/" + plate + "/" + name, m));
  }

  PrepareOptions Options(const std::string& out, uint64_t seed) {
    PrepareOptions o;
    o.images_dir = root_ + "/images";
    o.platemaps_dir = root_ + "/platemaps";
    o.l1000_path = root_ + "/l1k.csv.gz";
    o.out_dir = root_ + "/" + out;
    o.seed = seed;
    return o;
  }

  std::string root_;
  std::vector<std::vector<float>> rows_;  // L1000 values by source row
};

std::map<std::string, std::string> ReadDir(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::directory_iterator(dir))
    files[e.path().filename().string()] = *ReadFile(e.path().string());
  return files;
}

TEST_F(PrepareTest, PairsControlsSplitAndDroppedItems) {
  std::vector<std::string> stages;
  PrepareOptions o = Options("out", 0);
  o.progress = [&](const PrepareProgress& p) { stages.push_back(p.stage); };
  auto summary = PrepareDataset(o);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_THAT(stages, ::testing::IsSupersetOf({"platemaps", "scan", "l1000", "pairing", "write"}));

  // 2 plates × 11 wells × 2 sites − 1 incomplete site; P9 dropped whole.
  EXPECT_EQ(summary->plates, 2);
  EXPECT_EQ(summary->wells, 22);
  EXPECT_EQ(summary->sites, 43);
  EXPECT_EQ(summary->cp_control_wells, 4);
  EXPECT_EQ(summary->l1000_rows_read, 21);
  EXPECT_EQ(summary->l1000_rows_kept, 19);  // minus LONLY and C2's NaN row
  EXPECT_EQ(summary->matched_treatments, 8);
  EXPECT_EQ(summary->perturbations, 8);
  EXPECT_EQ(summary->genes, 3);
  // Test = min(5000, floor(0.25 × 8)) = 2; val = max(1, round(0.05 × 6)) = 1.
  EXPECT_EQ(summary->test_perturbations, 2);
  EXPECT_EQ(summary->val_perturbations, 1);
  EXPECT_EQ(summary->train_perturbations, 5);
  EXPECT_EQ(summary->dropped.at("site_incomplete"), 1);
  EXPECT_EQ(summary->dropped.at("plate_not_in_platemap"), 1);
  EXPECT_EQ(summary->dropped.at("l1000_missing_values"), 1);
  EXPECT_EQ(summary->dropped.at("cp_only_treatment"), 1);
  EXPECT_EQ(summary->dropped.at("l1000_only_treatment"), 1);

  auto m = LoadManifest(o.out_dir);
  ASSERT_TRUE(m.ok()) << m.status();
  bool saw_missing_rna = false;
  for (const DroppedItem& d : m->dropped) {
    if (d.kind == "site_incomplete") {
      EXPECT_THAT(d.item, HasSubstr("plate P1 well B01 site 2"));
      EXPECT_THAT(d.reason, HasSubstr("missing channel(s) RNA (w3)"));
      saw_missing_rna = true;
    }
    if (d.kind == "l1000_missing_values") EXPECT_THAT(d.item, HasSubstr("C2_10.0"));
    if (d.kind == "cp_only_treatment") EXPECT_THAT(d.item, HasSubstr("CPONLY_10.0"));
  }
  EXPECT_TRUE(saw_missing_rna);

  // Pair counts: max(CP wells, L1000 rows) per key = 2 for all (C2: 2 wells, 1 row).
  std::map<std::string, int> per_key;
  std::map<std::string, std::set<Split>> splits_of;
  std::set<std::pair<std::string, std::string>> c1_wells;
  std::set<int64_t> c1_rows;
  for (const ManifestPair& p : m->pairs) {
    ++per_key[p.key];
    splits_of[p.perturbation].insert(p.split);
    const int c = p.perturbation[1] - '0';
    EXPECT_EQ(p.well, absl::StrCat("B0", c));  // the plate map's well for this compound
    EXPECT_EQ(p.key, c == 3 ? "C3_3.33" : absl::StrCat("C", c, "_10.0"));
    EXPECT_EQ(p.dose, c == 3 ? "3.33" : "10.0");
    // Same-plate controls in both modalities.
    EXPECT_TRUE(p.control_well == "A01" || p.control_well == "A02") << p.control_well;
    ASSERT_FALSE(p.control_site_ids.empty());
    for (int id : p.control_site_ids) {
      EXPECT_EQ(m->sites[id].plate, p.cp_plate);
      EXPECT_EQ(m->sites[id].well, p.control_well);
    }
    for (int id : p.site_ids) {
      EXPECT_EQ(m->sites[id].plate, p.cp_plate);
      EXPECT_EQ(m->sites[id].well, p.well);
    }
    const ExpressionRow& treated = m->expression_rows[p.l1000_row];
    const ExpressionRow& control = m->expression_rows[p.control_l1000_row];
    EXPECT_EQ(treated.key, p.key);
    EXPECT_EQ(treated.plate, p.l1000_plate);
    EXPECT_TRUE(control.is_control);
    EXPECT_EQ(control.plate, p.l1000_plate);
    // The stored expression is the source row's.
    for (int g = 0; g < 3; ++g)
      EXPECT_EQ(m->expression[p.l1000_row * 3 + g], rows_[treated.source_row][g]);
    if (p.perturbation == "C1") {
      c1_wells.insert({p.cp_plate, p.well});
      c1_rows.insert(p.l1000_row);
    }
  }
  for (int c = 1; c <= 8; ++c)
    EXPECT_EQ(per_key[c == 3 ? "C3_3.33" : absl::StrCat("C", c, "_10.0")], 2) << c;
  EXPECT_EQ(c1_wells.size(), 2u);  // both replicates of both modalities used
  EXPECT_EQ(c1_rows.size(), 2u);
  EXPECT_EQ(m->sites.size(), 43u);
  // P1 B01 keeps only its complete site.
  for (const ManifestPair& p : m->pairs) {
    if (p.cp_plate == "P1" && p.well == "B01") EXPECT_EQ(p.site_ids.size(), 1u);
  }

  // Split: every perturbation in exactly one split; vocabulary = train perturbations, sorted.
  std::vector<std::string> train;
  for (const auto& [pert, splits] : splits_of) {
    ASSERT_EQ(splits.size(), 1u) << pert << " appears in several splits";
    EXPECT_EQ(m->split.at(pert), *splits.begin());
    if (*splits.begin() == Split::kTrain) train.push_back(pert);
  }
  ASSERT_EQ(m->vocabulary.size(), train.size());
  for (size_t i = 0; i < train.size(); ++i) {
    EXPECT_EQ(m->vocabulary[i].perturbation_id, train[i]);
    EXPECT_EQ(m->vocabulary[i].smiles, "smiles-" + train[i]);
    EXPECT_EQ(m->VocabRow(train[i]), static_cast<int>(i));
  }
  EXPECT_EQ(m->VocabRow("CPONLY"), -1);

  // Controls files: all DMSO wells with images, all kept DMSO L1000 rows.
  EXPECT_EQ(m->cp_controls.size(), 4u);
  ASSERT_EQ(m->l1000_controls.size(), 2u);
  EXPECT_EQ(m->l1000_controls.at("L1").size(), 2u);

  // Gene stats: mean over unique train rows + DMSO rows.
  std::set<int64_t> stat_rows;
  for (const ManifestPair& p : m->pairs) {
    if (p.split == Split::kTrain) stat_rows.insert(p.l1000_row);
  }
  for (const auto& [plate, ids] : m->l1000_controls) stat_rows.insert(ids.begin(), ids.end());
  double sum = 0;
  for (int64_t r : stat_rows) sum += m->expression[r * 3 + 1];
  EXPECT_NEAR(m->gene_mean[1], sum / stat_rows.size(), 1e-6);
  EXPECT_GT(m->gene_std[1], 0.0);

  // Sites read back as images with the size written.
  auto images =
      ReadSite(m->sites[m->pairs[0].site_ids[0]], {.expected_width = 64, .expected_height = 48});
  ASSERT_TRUE(images.ok()) << images.status();
}

TEST_F(PrepareTest, DeterministicGivenSeedAndSeedChangesSplit) {
  ASSERT_TRUE(PrepareDataset(Options("a", 7)).ok());
  ASSERT_TRUE(PrepareDataset(Options("b", 7)).ok());
  ASSERT_TRUE(PrepareDataset(Options("c", 8)).ok());
  auto a = ReadDir(root_ + "/a"), b = ReadDir(root_ + "/b"), c = ReadDir(root_ + "/c");
  EXPECT_EQ(a.size(), 13u);  // with structures.tsv
  EXPECT_EQ(a, b);
  EXPECT_NE(a.at("split.csv"), c.at("split.csv"));
  // Re-running into an existing directory replaces it completely.
  ASSERT_TRUE(PrepareDataset(Options("a", 8)).ok());
  EXPECT_EQ(ReadDir(root_ + "/a"), c);
  EXPECT_FALSE(fs::exists(root_ + "/a.tmp-" + std::to_string(::getpid())));
}

TEST_F(PrepareTest, PairLevelSplitHoldsOutOnePairPerHeldOutPerturbation) {
  PrepareOptions o = Options("pairs", 3);
  o.split_level = "pair";
  ASSERT_TRUE(PrepareDataset(o).ok());
  auto m = LoadManifest(root_ + "/pairs", /*load_expression=*/false);
  ASSERT_TRUE(m.ok()) << m.status();
  std::map<std::string, int> held_out, in_train;
  for (const auto& p : m->pairs) {
    if (p.split == Split::kTrain)
      ++in_train[p.perturbation];
    else
      ++held_out[p.perturbation];
  }
  ASSERT_FALSE(held_out.empty());
  for (const auto& [pert, n] : held_out) {
    EXPECT_EQ(n, 1) << pert << ": exactly one held-out pair per held-out perturbation";
    // Perturbations with more than one pair keep the rest in training, hence in the vocabulary.
    if (in_train.count(pert)) EXPECT_GE(m->VocabRow(pert), 0) << pert;
  }
  o.split_level = "compound";
  EXPECT_FALSE(PrepareDataset(o).ok());
}

TEST_F(PrepareTest, ScaffoldSplitHoldsOutWholeGroupsAndListsCompoundsWithoutStructure) {
  PrepareOptions o = Options("scaffold", 3);
  o.split_level = "compound-scaffold";
  o.test_perturbations = 2;
  EXPECT_FALSE(PrepareDataset(o).ok());  // no structure parser given
  // A stand-in parser: "smiles-C<n>" → scaffold by the parity of n; C5's structure is invalid.
  o.parse_structure =
      [](const std::string& smiles) -> absl::StatusOr<PrepareOptions::StructureInfo> {
    if (smiles == "smiles-C5") return absl::InvalidArgumentError("SMILES 'smiles-C5': bad valence");
    const int n = smiles.back() - '0';
    return PrepareOptions::StructureInfo{smiles, n % 2 == 0 ? "even-ring" : "odd-ring"};
  };
  auto summary = PrepareDataset(o);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->without_structure.size(), 1u);
  EXPECT_EQ(summary->without_structure.at("C5"), "SMILES 'smiles-C5': bad valence");
  EXPECT_EQ(summary->structures_parsed, summary->perturbations - 1);
  EXPECT_EQ(summary->scaffold_groups, 3);  // even, odd, C5 alone
  EXPECT_THAT(summary->ToText(), HasSubstr("C5: SMILES 'smiles-C5': bad valence"));
  auto m = LoadManifest(root_ + "/scaffold", /*load_expression=*/false);
  ASSERT_TRUE(m.ok()) << m.status();
  std::map<int, std::set<Split>> by_parity;
  for (const auto& [pert, split] : m->split) {
    if (pert == "C5") continue;
    by_parity[(pert.back() - '0') % 2].insert(split);
  }
  ASSERT_EQ(by_parity.size(), 2u);
  for (const auto& [parity, splits] : by_parity) EXPECT_EQ(splits.size(), 1u) << parity;
  int held_out = 0;
  for (const auto& [pert, split] : m->split) held_out += split != Split::kTrain;
  EXPECT_GE(held_out, 1);
  // Every compound's SMILES is kept, held-out ones too (a structure model is evaluated on them),
  // although the vocabulary lists only training compounds.
  for (const auto& [pert, split] : m->split) {
    ASSERT_TRUE(m->structures.count(pert)) << pert;
    EXPECT_EQ(m->structures.at(pert), "smiles-" + pert);
  }
  EXPECT_THAT(*ReadFile(root_ + "/scaffold/summary.json"), HasSubstr("\"without_structure\""));

  // A compound metadata CSV must name its columns.
  ASSERT_TRUE(WriteFileAtomic(root_ + "/compounds.csv", "id,structure\nC1,CCO\n").ok());
  o.compounds_csv = root_ + "/compounds.csv";
  auto bad = PrepareDataset(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("compounds.csv: needs an id column"));
}

TEST_F(PrepareTest, BadInputsFailWithNamedFiles) {
  PrepareOptions o = Options("out", 0);
  o.val_fraction = 1.5;
  EXPECT_THAT(PrepareDataset(o).status().message(), HasSubstr("val_fraction"));
  o = Options("out", 0);
  o.l1000_path = root_ + "/missing.csv";
  auto missing = PrepareDataset(o);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("missing.csv"));
  EXPECT_FALSE(fs::exists(o.out_dir));
}

}  // namespace
}  // namespace cellflux::data
