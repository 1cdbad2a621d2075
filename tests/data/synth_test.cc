// Tests for the synthetic dataset writer (common/data/synth.h): layout and names as in the real
// data, image content, plate maps, L1000 matching keys, compound effects, determinism.
#include "common/data/synth.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/data/landmark_genes.h"

namespace cellflux {
namespace {

namespace fs = std::filesystem;

SynthOptions SmallOptions(uint64_t seed) {
  SynthOptions o;
  o.plates = 2;
  o.compounds = 6;
  o.seed = seed;
  o.image_width = 96;
  o.image_height = 80;
  o.sites = 1;
  o.wells_per_plate = 24;
  o.min_dmso_wells = 6;
  o.l1000_plates = 2;
  o.l1000_replicates = 4;
  o.l1000_dmso_per_plate = 10;
  return o;
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> Lines(const fs::path& path) {
  std::vector<std::string> lines = absl::StrSplit(ReadAll(path), '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

// All regular files under dir, relative path → bytes.
std::map<std::string, std::string> Snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file())
      files[fs::relative(entry.path(), dir).string()] = ReadAll(entry.path());
  }
  return files;
}

class SynthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ =
        new fs::path(fs::path(::testing::TempDir()) / ("synth_test_" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    auto summary = WriteSynthDataset(SmallOptions(7), dir_->string());
    ASSERT_TRUE(summary.ok()) << summary.status();
    summary_ = *summary;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  static nlohmann::json Truth() {
    return nlohmann::json::parse(ReadAll(*dir_ / "ground_truth.json"));
  }

  static fs::path* dir_;
  static SynthSummary summary_;
};

fs::path* SynthTest::dir_ = nullptr;
SynthSummary SynthTest::summary_;

TEST(PythonDoseStringTest, MatchesPythonStrOfRoundedFloat) {
  EXPECT_EQ(PythonDoseString(2 * 5.0), "10.0");
  EXPECT_EQ(PythonDoseString(2 * 1.665), "3.33");
  EXPECT_EQ(PythonDoseString(2 * 0.25), "0.5");
  EXPECT_EQ(PythonDoseString(2 * 0.625), "1.25");
  EXPECT_EQ(PythonDoseString(2 * 3.33), "6.66");
  EXPECT_EQ(PythonDoseString(0.004), "0.0");
}

TEST(SynthOptionsTest, RejectsTooFewWellsForTwoReplicates) {
  SynthOptions o = SmallOptions(1);
  o.compounds = 50;
  auto summary =
      WriteSynthDataset(o, (fs::path(::testing::TempDir()) / "synth_never_written").string());
  EXPECT_EQ(summary.status().code(), absl::StatusCode::kInvalidArgument);
  o = SmallOptions(1);
  o.sites = 0;
  EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SynthTest, ImageFilesFollowTheBbbc047Names) {
  const std::regex name(
      R"(cdp2bioactives_[a-p](0[1-9]|1[0-9]|2[0-4])_s[1-9]_w[1-5][0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.tif)");
  int n_files = 0;
  std::set<std::string> plates;
  for (const auto& plate : fs::directory_iterator(*dir_ / "images")) {
    const std::string barcode = plate.path().filename().string();
    EXPECT_TRUE(std::regex_match(barcode, std::regex("[0-9]{5}"))) << barcode;
    plates.insert(barcode);
    for (const auto& file : fs::directory_iterator(plate.path())) {
      EXPECT_TRUE(std::regex_match(file.path().filename().string(), name)) << file.path();
      ++n_files;
    }
  }
  EXPECT_EQ(plates.size(), 2u);
  EXPECT_EQ(n_files, summary_.images);
  EXPECT_EQ(summary_.images, summary_.wells * 1 * 5);
}

TEST_F(SynthTest, TiffsAre16BitTwelveBitWithBrightNuclei) {
  int images = 0, textured = 0, dna_images = 0, dna_with_nuclei = 0;
  double bright_fraction_sum = 0;
  for (const auto& plate : fs::directory_iterator(*dir_ / "images")) {
    for (const auto& file : fs::directory_iterator(plate.path())) {
      const cv::Mat image = cv::imread(file.path().string(), cv::IMREAD_UNCHANGED);
      ASSERT_EQ(image.type(), CV_16UC1) << file.path();
      ASSERT_EQ(image.cols, 96);
      ASSERT_EQ(image.rows, 80);
      double lo, hi;
      cv::minMaxLoc(image, &lo, &hi);
      EXPECT_LE(hi, 4095) << file.path();
      ++images;
      textured += hi - lo > 100;
      if (file.path().filename().string().find("_w1") == std::string::npos) continue;
      // DNA: the darkest decile is background; nuclei are bright blobs covering part of the view.
      std::vector<uint16_t> v(image.begin<uint16_t>(), image.end<uint16_t>());
      std::sort(v.begin(), v.end());
      const double background = v[v.size() / 10];
      const double bright =
          std::count_if(v.begin(), v.end(), [&](uint16_t p) { return p > background + 200; });
      bright_fraction_sum += bright / v.size();
      ++dna_images;
      dna_with_nuclei += bright / v.size() > 0.02;
    }
  }
  ASSERT_GT(dna_images, 0);
  // A small site may by chance hold no nucleus; most must.
  EXPECT_GT(textured, 0.9 * images);
  EXPECT_GT(dna_with_nuclei, 0.8 * dna_images);
  EXPECT_GT(bright_fraction_sum / dna_images, 0.05);
  EXPECT_LT(bright_fraction_sum / dna_images, 0.6);
}

TEST_F(SynthTest, PlateMapsHaveDmsoOnEveryPlate) {
  const auto barcodes = Lines(*dir_ / "platemaps" / "barcode_platemap.csv");
  ASSERT_EQ(barcodes.size(), 3u);
  EXPECT_EQ(barcodes[0], "Plate_Map_Name,Assay_Plate_Barcode");
  for (size_t i = 1; i < barcodes.size(); ++i) {
    const std::vector<std::string> f = absl::StrSplit(barcodes[i], ',');
    ASSERT_EQ(f.size(), 2u);
    EXPECT_TRUE(fs::is_directory(*dir_ / "images" / f[1])) << f[1];
    const auto rows = Lines(*dir_ / "platemaps" / "platemap" / (f[0] + ".txt"));
    ASSERT_FALSE(rows.empty());
    EXPECT_EQ(rows[0], "well_position\tbroad_sample\tmmoles_per_liter\tsolvent");
    int dmso = 0;
    for (size_t r = 1; r < rows.size(); ++r) {
      const std::vector<std::string> c = absl::StrSplit(rows[r], '\t');
      ASSERT_EQ(c.size(), 4u) << rows[r];
      EXPECT_TRUE(std::regex_match(c[0], std::regex("[A-P](0[1-9]|1[0-9]|2[0-4])"))) << c[0];
      EXPECT_EQ(c[3], "DMSO");
      if (c[1].empty()) {
        ++dmso;
      } else {
        EXPECT_TRUE(std::regex_match(c[1], std::regex(R"(BRD-K[0-9]{8}-[0-9]{3}-[0-9]{2}-[0-9])")))
            << c[1];
      }
    }
    EXPECT_GE(dmso, 6) << f[0];
    EXPECT_EQ(static_cast<int>(rows.size()) - 1, 24);
  }
}

struct L1000Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

L1000Table ReadL1000(const fs::path& path) {
  L1000Table t;
  const auto lines = Lines(path);
  t.header = absl::StrSplit(lines.at(0), ',');
  for (size_t i = 1; i < lines.size(); ++i) t.rows.push_back(absl::StrSplit(lines[i], ','));
  return t;
}

TEST_F(SynthTest, EveryCpTreatmentHasL1000RowsWithItsKey) {
  const L1000Table l1k = ReadL1000(*dir_ / "l1000" / "replicate_level_l1k.csv");
  const std::vector<std::string> meta = {"replicate_id",     "pert_id",  "pert_dose", "det_plate",
                                         "pert_sample_dose", "CPD_NAME", "CPD_SMILES"};
  ASSERT_EQ(l1k.header.size(), meta.size() + kNumLandmarkGenes);
  for (size_t i = 0; i < meta.size(); ++i) EXPECT_EQ(l1k.header[i], meta[i]);
  EXPECT_EQ(l1k.header[7], LandmarkGenes()[0].probe_id);
  std::map<std::string, int> key_rows;
  std::map<std::string, int> dmso_per_plate;
  for (const auto& row : l1k.rows) {
    ASSERT_EQ(row.size(), l1k.header.size());
    ++key_rows[row[4]];
    if (row[1] == "DMSO") {
      EXPECT_EQ(row[2], "-666");
      EXPECT_EQ(row[4], "DMSO");
      ++dmso_per_plate[row[3]];
    }
  }
  EXPECT_EQ(dmso_per_plate.size(), 2u);
  int cp_keys = 0;
  for (const auto& plate : fs::directory_iterator(*dir_ / "platemaps" / "platemap")) {
    const auto rows = Lines(plate.path());
    for (size_t r = 1; r < rows.size(); ++r) {
      const std::vector<std::string> c = absl::StrSplit(rows[r], '\t');
      if (c[1].empty()) continue;
      const std::string key = c[1] + "_" + PythonDoseString(2.0 * std::stod(c[2]));
      EXPECT_EQ(key_rows[key], 4) << key;
      ++cp_keys;
    }
  }
  EXPECT_GT(cp_keys, 0);
}

// Mean over genes of ((mean of the key's rows - mean of DMSO rows) / sd_g)^2.
double StandardizedDistanceFromDmso(const L1000Table& l1k, const nlohmann::json& truth,
                                    const std::string& key) {
  std::vector<double> treated(kNumLandmarkGenes, 0), dmso(kNumLandmarkGenes, 0);
  int n_treated = 0, n_dmso = 0;
  for (const auto& row : l1k.rows) {
    const bool is_dmso = row[1] == "DMSO", is_key = row[4] == key;
    if (!is_dmso && !is_key) continue;
    auto& acc = is_dmso ? dmso : treated;
    for (size_t g = 0; g < kNumLandmarkGenes; ++g) acc[g] += std::stod(row[7 + g]);
    (is_dmso ? n_dmso : n_treated)++;
  }
  EXPECT_GT(n_treated, 0) << key;
  double sum = 0;
  for (size_t g = 0; g < kNumLandmarkGenes; ++g) {
    const double d =
        (treated[g] / n_treated - dmso[g] / n_dmso) / truth["genes"][g]["sd"].get<double>();
    sum += d * d;
  }
  return sum / kNumLandmarkGenes;
}

TEST_F(SynthTest, NullCompoundMatchesDmsoAndStrongCompoundDoesNot) {
  const nlohmann::json truth = Truth();
  const auto& compounds = truth["compounds"];
  auto by_strength = [](const nlohmann::json& a, const nlohmann::json& b) {
    return a["strength"].get<double>() < b["strength"].get<double>();
  };
  const auto& null_c = *std::min_element(compounds.begin(), compounds.end(), by_strength);
  const auto& strong_c = *std::max_element(compounds.begin(), compounds.end(), by_strength);
  ASSERT_EQ(null_c["strength"].get<double>(), 0.0);
  ASSERT_GT(strong_c["strength"].get<double>(), 1.0);
  for (const auto& [name, delta] : null_c["doses"][0]["morphology_delta"].items())
    EXPECT_EQ(delta.get<double>(), 0.0) << name;
  double strong_morph = 0;
  for (const auto& [name, delta] : strong_c["doses"][0]["morphology_delta"].items())
    strong_morph += std::abs(delta.get<double>());
  EXPECT_GT(strong_morph, 0.5);

  const L1000Table l1k = ReadL1000(*dir_ / "l1000" / "replicate_level_l1k.csv");
  const double null_d =
      StandardizedDistanceFromDmso(l1k, truth, null_c["doses"][0]["pert_sample_dose"]);
  const double strong_d =
      StandardizedDistanceFromDmso(l1k, truth, strong_c["doses"][0]["pert_sample_dose"]);
  // Pure noise: 1/4 replicates + 1/20 DMSO rows + plate offsets (0.3 sd per plate, both sides).
  const double noise = 1.0 / 4 + 1.0 / 20 + 2 * 0.09;
  EXPECT_LT(null_d, 1.5 * noise);
  EXPECT_GT(strong_d, null_d + 0.5);
}

// The structures themselves are checked with RDKit in tests/chem/synth_chem_test.cc; here, without
// RDKit: the ground truth names each compound's fragments and the L1000 CSV carries its SMILES.
TEST_F(SynthTest, CompoundsRecordTheirFragmentsAndDistinctSmiles) {
  const nlohmann::json truth = Truth();
  std::set<std::string> smiles, scaffold_names;
  for (const auto& f : truth["fragments"]["scaffolds"]) scaffold_names.insert(f["name"]);
  EXPECT_EQ(scaffold_names.size(), 8u);
  for (const auto& c : truth["compounds"]) {
    EXPECT_TRUE(smiles.insert(c["smiles"].get<std::string>()).second) << c["smiles"];
    EXPECT_TRUE(scaffold_names.count(c["scaffold_name"].get<std::string>())) << c["scaffold_name"];
    EXPECT_FALSE(c["scaffold_smiles"].get<std::string>().empty());
    EXPECT_GE(c["substituents"].size(), 1u);
    EXPECT_LE(c["substituents"].size(), 3u);
    EXPECT_EQ(c["latent"].size(), 6u);
  }
  const L1000Table l1k = ReadL1000(*dir_ / "l1000" / "replicate_level_l1k.csv");
  for (const auto& row : l1k.rows) {
    if (row[1] != "DMSO") EXPECT_TRUE(smiles.count(row[6])) << row[6];
  }
}

TEST_F(SynthTest, SameSeedGivesIdenticalBytesAndAnotherSeedDiffers) {
  const fs::path again =
      fs::path(::testing::TempDir()) / ("synth_again_" + std::to_string(::getpid()));
  const fs::path other =
      fs::path(::testing::TempDir()) / ("synth_other_" + std::to_string(::getpid()));
  SynthOptions one_thread = SmallOptions(7);
  one_thread.threads = 1;  // output must not depend on the thread count either
  ASSERT_TRUE(WriteSynthDataset(one_thread, again.string()).ok());
  ASSERT_TRUE(WriteSynthDataset(SmallOptions(8), other.string()).ok());
  const auto a = Snapshot(*dir_), b = Snapshot(again), c = Snapshot(other);
  EXPECT_EQ(a.size(), b.size());
  EXPECT_TRUE(a == b) << "same seed wrote different files";
  EXPECT_NE(a.at("ground_truth.json"), c.at("ground_truth.json"));
  EXPECT_NE(a.at("l1000/replicate_level_l1k.csv"), c.at("l1000/replicate_level_l1k.csv"));
  fs::remove_all(again);
  fs::remove_all(other);
}

}  // namespace
}  // namespace cellflux
