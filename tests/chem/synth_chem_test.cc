// The synthetic dataset's structures (common/data/synth.h) checked with RDKit (common/chem): every
// compound is a valid molecule with a unique canonical SMILES, its Bemis–Murcko scaffold is its
// template's ring system (so prepare's compound-scaffold split groups compounds by template), and
// the true latent effects follow the fragments: compounds sharing a scaffold or a substituent
// have more similar effects than compounds sharing none.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/chem/chem.h"
#include "common/data/synth.h"

namespace cellflux {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class SynthChemTest : public ::testing::Test {
 protected:
  // 200 compounds (tiny images, few L1000 rows): every template and variant many times over.
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::path(::testing::TempDir()) /
                        ("synth_chem_test_" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    SynthOptions o;
    o.plates = 3;
    o.compounds = 200;
    o.seed = 11;
    o.image_width = 16;
    o.image_height = 16;
    o.sites = 1;
    o.wells_per_plate = 384;
    o.min_dmso_wells = 16;
    o.max_cp_replicates = 2;
    o.l1000_plates = 1;
    o.l1000_replicates = 1;
    o.l1000_dmso_per_plate = 1;
    auto summary = WriteSynthDataset(o, dir_->string());
    ASSERT_TRUE(summary.ok()) << summary.status();
    truth_ = new nlohmann::json(nlohmann::json::parse(ReadAll(*dir_ / "ground_truth.json")));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete truth_;
  }

  static fs::path* dir_;
  static nlohmann::json* truth_;
};

fs::path* SynthChemTest::dir_ = nullptr;
nlohmann::json* SynthChemTest::truth_ = nullptr;

TEST_F(SynthChemTest, EverySmilesParsesAndCanonicalSmilesAreDistinct) {
  const auto& compounds = truth_->at("compounds");
  ASSERT_EQ(compounds.size(), 200u);
  std::map<std::string, std::string> name_of;  // canonical SMILES → compound
  for (const auto& c : compounds) {
    const std::string smiles = c.at("smiles");
    auto s = chem::ParseStructure(smiles);
    ASSERT_TRUE(s.ok()) << c.at("name") << ": " << s.status();
    auto [it, inserted] = name_of.emplace(s->canonical_smiles, c.at("name"));
    EXPECT_TRUE(inserted) << c.at("name") << " and " << it->second << " are both "
                          << s->canonical_smiles;
  }
}

TEST_F(SynthChemTest, L1000CsvCarriesTheSameSmiles) {
  std::map<std::string, std::string> smiles_of;  // pert_id → SMILES
  for (const auto& c : truth_->at("compounds")) smiles_of[c.at("pert_id")] = c.at("smiles");
  std::istringstream csv(ReadAll(*dir_ / "l1000" / "replicate_level_l1k.csv"));
  std::string line;
  ASSERT_TRUE(std::getline(csv, line));
  const std::vector<std::string> header = absl::StrSplit(line, ',');
  ASSERT_GT(header.size(), 6u);
  ASSERT_EQ(header[1], "pert_id");
  ASSERT_EQ(header[6], "CPD_SMILES");
  int rows = 0;
  while (std::getline(csv, line)) {
    const std::vector<std::string> f = absl::StrSplit(line, ',');
    ASSERT_EQ(f.size(), header.size()) << line.substr(0, 200);
    if (f[1] == "DMSO") continue;
    EXPECT_EQ(f[6], smiles_of.at(f[1])) << f[1];
    ++rows;
  }
  EXPECT_GT(rows, 200);
}

TEST_F(SynthChemTest, MurckoScaffoldIsTheTemplateRingSystem) {
  std::map<std::string, std::set<std::string>> scaffolds_of;  // template → Murcko scaffolds
  std::map<std::string, std::string> template_of;             // Murcko scaffold → template
  for (const auto& c : truth_->at("compounds")) {
    const std::string name = c.at("scaffold_name");
    auto ring_system = chem::ParseStructure(c.at("scaffold_smiles"));
    ASSERT_TRUE(ring_system.ok()) << name << ": " << ring_system.status();
    auto s = chem::ParseStructure(c.at("smiles"));
    ASSERT_TRUE(s.ok()) << c.at("name") << ": " << s.status();
    EXPECT_FALSE(s->scaffold.empty()) << c.at("smiles");
    EXPECT_EQ(s->scaffold, ring_system->canonical_smiles) << c.at("smiles") << " (" << name << ")";
    scaffolds_of[name].insert(s->scaffold);
    auto [it, inserted] = template_of.emplace(s->scaffold, name);
    EXPECT_EQ(it->second, name) << s->scaffold << " is the scaffold of two templates";
    // Substituents are acyclic, recorded with their attachment weights (sum of squares 1).
    double w2 = 0;
    ASSERT_FALSE(c.at("substituents").empty()) << c.at("name");
    EXPECT_LE(c.at("substituents").size(), 3u) << c.at("name");
    for (const auto& sub : c.at("substituents")) {
      auto part = chem::ParseStructure(sub.at("smiles"));
      ASSERT_TRUE(part.ok()) << sub.at("name") << ": " << part.status();
      EXPECT_EQ(part->scaffold, "") << sub.at("name") << " holds a ring";
      w2 += std::pow(sub.at("attachment_weight").get<double>(), 2);
    }
    EXPECT_NEAR(w2, 1.0, 1e-9) << c.at("name");
  }
  EXPECT_EQ(scaffolds_of.size(), 8u) << "200 compounds use every template";
  for (const auto& [name, scaffolds] : scaffolds_of)
    EXPECT_EQ(scaffolds.size(), 1u) << name << " compounds have different Murcko scaffolds";
}

TEST_F(SynthChemTest, CompoundsSharingFragmentsHaveMoreSimilarLatents) {
  struct Entry {
    std::string scaffold;
    std::set<std::string> substituents;
    std::vector<double> z;
  };
  std::vector<Entry> entries;
  for (const auto& c : truth_->at("compounds")) {
    Entry e{c.at("scaffold_name"), {}, c.at("latent").get<std::vector<double>>()};
    for (const auto& sub : c.at("substituents")) e.substituents.insert(sub.at("name"));
    double norm = 0;
    for (double v : e.z) norm += v * v;
    EXPECT_NEAR(norm, 1.0, 1e-9) << "|z| = 1";
    entries.push_back(std::move(e));
  }
  // Mean cosine of the latents over pairs sharing the scaffold, sharing only a substituent, and
  // sharing nothing.
  double sum[3] = {0, 0, 0};
  int n[3] = {0, 0, 0};
  for (size_t i = 0; i < entries.size(); ++i) {
    for (size_t j = i + 1; j < entries.size(); ++j) {
      double cos = 0;
      for (size_t k = 0; k < entries[i].z.size(); ++k) cos += entries[i].z[k] * entries[j].z[k];
      bool share_substituent = false;
      for (const std::string& s : entries[i].substituents)
        share_substituent = share_substituent || entries[j].substituents.count(s) > 0;
      const int group = entries[i].scaffold == entries[j].scaffold ? 0 : share_substituent ? 1 : 2;
      sum[group] += cos;
      ++n[group];
    }
  }
  ASSERT_GT(n[0], 100);
  ASSERT_GT(n[1], 100);
  ASSERT_GT(n[2], 100);
  const double same_scaffold = sum[0] / n[0], same_substituent = sum[1] / n[1],
               nothing = sum[2] / n[2];
  // The generator's weights give about 0.5, 0.2 and 0 (simulated over 300 seeds: the differences
  // were never below 0.3 and 0.1).
  EXPECT_GT(same_scaffold, nothing + 0.2) << same_scaffold << " vs " << nothing;
  EXPECT_GT(same_substituent, nothing + 0.05) << same_substituent << " vs " << nothing;
  EXPECT_LT(std::abs(nothing), 0.2) << nothing;
}

}  // namespace
}  // namespace cellflux
