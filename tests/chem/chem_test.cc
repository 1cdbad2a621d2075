// common/chem against RDKit's own Python answers on real drug SMILES (salts, charges, stereo,
// solvents, metals), error messages that name the SMILES and RDKit's reason, and Tanimoto.
#include "common/chem/chem.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace cellflux::chem {
namespace {

using ::testing::HasSubstr;

struct GoldenRow {
  std::string name, smiles, parent, scaffold;
  std::vector<int> bits;
};

std::vector<GoldenRow> ReadGolden() {
  std::ifstream in("tests/chem/fingerprint_golden.tsv");
  EXPECT_TRUE(in.good()) << "run from the source root";
  std::vector<GoldenRow> rows;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    EXPECT_EQ(f.size(), 5u) << line;
    if (f.size() != 5) continue;
    GoldenRow r{f[0], f[1], f[2], f[3], {}};
    for (absl::string_view b : absl::StrSplit(f[4], ',', absl::SkipEmpty())) {
      int v = 0;
      EXPECT_TRUE(absl::SimpleAtoi(b, &v));
      r.bits.push_back(v);
    }
    rows.push_back(r);
  }
  return rows;
}

TEST(ChemTest, MatchesRdkitPythonOnRealDrugs) {
  const std::vector<GoldenRow> rows = ReadGolden();
  ASSERT_GE(rows.size(), 30u);
  for (const GoldenRow& r : rows) {
    auto s = ParseStructure(r.smiles);
    ASSERT_TRUE(s.ok()) << r.name << ": " << s.status();
    EXPECT_EQ(s->canonical_smiles, r.parent) << r.name;
    EXPECT_EQ(s->scaffold, r.scaffold) << r.name;
    EXPECT_EQ(s->bits, r.bits) << r.name;
    EXPECT_EQ(s->num_bits, 2048);
  }
}

TEST(ChemTest, SaltsAndSolventsAreDropped) {
  auto salt = ParseStructure("CN(C)C(=N)N=C(N)N.Cl");
  auto free_base = ParseStructure("CN(C)C(=N)N=C(N)N");
  ASSERT_TRUE(salt.ok() && free_base.ok());
  EXPECT_EQ(salt->canonical_smiles, free_base->canonical_smiles);
  EXPECT_EQ(salt->bits, free_base->bits);
  EXPECT_DOUBLE_EQ(Tanimoto(salt->bits, free_base->bits), 1.0);
}

TEST(ChemTest, InvalidSmilesNameTheInputAndRdkitsReason) {
  auto empty = ParseStructure("  ");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("empty"));

  auto syntax = ParseStructure("C1CC(");
  ASSERT_FALSE(syntax.ok());
  EXPECT_EQ(syntax.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(syntax.status().message()), HasSubstr("SMILES 'C1CC('"));
  EXPECT_THAT(std::string(syntax.status().message()), HasSubstr("SMILES Parse Error"));

  auto valence = ParseStructure("C(C)(C)(C)(C)C");  // pentavalent carbon
  ASSERT_FALSE(valence.ok());
  EXPECT_THAT(std::string(valence.status().message()), HasSubstr("valence"));

  const std::string long_bad(200, 'Q');
  auto shortened = ParseStructure(long_bad);
  ASSERT_FALSE(shortened.ok());
  EXPECT_THAT(std::string(shortened.status().message()), HasSubstr(long_bad.substr(0, 64) + "…"));
  EXPECT_THAT(std::string(shortened.status().message()),
              ::testing::Not(HasSubstr(long_bad.substr(0, 65))));

  EXPECT_FALSE(ParseStructure("CCO", -1).ok());
  EXPECT_FALSE(ParseStructure("CCO", 2, 0).ok());
}

TEST(ChemTest, RadiusAndLengthChangeTheFingerprint) {
  auto r1 = ParseStructure("CC(=O)Oc1ccccc1C(=O)O", 1, 2048);
  auto r2 = ParseStructure("CC(=O)Oc1ccccc1C(=O)O", 2, 2048);
  auto short_fp = ParseStructure("CC(=O)Oc1ccccc1C(=O)O", 2, 64);
  ASSERT_TRUE(r1.ok() && r2.ok() && short_fp.ok());
  EXPECT_LT(r1->bits.size(), r2->bits.size());
  for (int b : short_fp->bits) EXPECT_LT(b, 64);
}

TEST(ChemTest, TanimotoOnHandComputedSets) {
  EXPECT_DOUBLE_EQ(Tanimoto({1, 2, 3}, {2, 3, 4}), 2.0 / 4.0);
  EXPECT_DOUBLE_EQ(Tanimoto({1, 5}, {1, 5}), 1.0);
  EXPECT_DOUBLE_EQ(Tanimoto({1}, {2}), 0.0);
  EXPECT_DOUBLE_EQ(Tanimoto({}, {}), 0.0);
  EXPECT_DOUBLE_EQ(Tanimoto({}, {7}), 0.0);
  EXPECT_DOUBLE_EQ(Tanimoto({0, 10, 20, 30}, {10, 30}), 0.5);
}

}  // namespace
}  // namespace cellflux::chem
