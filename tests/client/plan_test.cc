// Plan parsing: controls by ref or folder, extra columns, seeds, and messages naming line/column.
#include "client/plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/client/test_util.h"

namespace cellflux::client {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<Plan> PlanFrom(const std::string& text) {
  const std::string dir = testing::MakeTempDir("plan");
  testing::WriteText(dir + "/plan.csv", text);
  return ReadPlan(dir + "/plan.csv");
}

TEST(PlanTest, ReadsRefAndDirRows) {
  auto plan = PlanFrom(
      "perturbation_id,control_ref,control_dir,control_expression,dose,seed\n"
      "BRD-A,24277:a01:2,,,10,\n"
      "BRD-B,,site1,expr.gct:c1,5,42\n");
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->rows.size(), 2u);
  const PlanRow& a = plan->rows[0];
  ASSERT_TRUE(a.control_ref.has_value());
  EXPECT_EQ(a.control_ref->plate, "24277");
  EXPECT_EQ(a.control_ref->well, "a01");
  EXPECT_EQ(a.control_ref->site, 2);
  EXPECT_FALSE(a.seed.has_value());
  EXPECT_EQ(a.line, 2);
  const PlanRow& b = plan->rows[1];
  EXPECT_FALSE(b.control_ref.has_value());
  // Relative paths resolve against the plan's folder.
  EXPECT_THAT(b.control_dir, HasSubstr("/site1"));
  EXPECT_EQ(b.control_dir.front(), '/');
  EXPECT_THAT(b.control_expression, HasSubstr("/expr.gct:c1"));
  EXPECT_EQ(b.seed, 42u);
  EXPECT_EQ(b.fields[4], "5");
}

TEST(PlanTest, ErrorsNameLineAndColumn) {
  auto both = PlanFrom("perturbation_id,control_ref,control_dir\nBRD-A,1:a01,dir\n");
  ASSERT_FALSE(both.ok());
  EXPECT_THAT(both.status().message(), HasSubstr("line 2"));
  EXPECT_THAT(both.status().message(), HasSubstr("both"));

  auto bad_ref = PlanFrom("perturbation_id,control_ref\nBRD-A,1:a01\nBRD-B,24277\n");
  ASSERT_FALSE(bad_ref.ok());
  EXPECT_THAT(bad_ref.status().message(), HasSubstr("line 3 column control_ref"));

  auto no_pert = PlanFrom("compound,control_ref\nx,1:a01\n");
  ASSERT_FALSE(no_pert.ok());
  EXPECT_THAT(no_pert.status().message(), HasSubstr("no perturbation_id column"));

  auto bad_seed = PlanFrom("perturbation_id,control_ref,seed\nBRD-A,1:a01,-3\n");
  ASSERT_FALSE(bad_seed.ok());
  EXPECT_THAT(bad_seed.status().message(), HasSubstr("line 2 column seed"));
}

// A compound by structure: a smiles column (alone or beside perturbation_id) with dose_um.
TEST(PlanTest, SmilesAndDoseColumns) {
  auto plan = PlanFrom(
      "perturbation_id,smiles,dose_um,control_ref\n"
      "BRD-A,,,1:a01\n"
      ",CN(C)C(=N)N=C(N)N.Cl,10,1:a01\n"
      ",CCO,,1:a02\n");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->has_smiles);
  ASSERT_EQ(plan->rows.size(), 3u);
  EXPECT_EQ(plan->rows[0].perturbation_id, "BRD-A");
  EXPECT_TRUE(plan->rows[0].smiles.empty());
  EXPECT_EQ(RowSubject(plan->rows[0]), "BRD-A");
  EXPECT_TRUE(plan->rows[1].perturbation_id.empty());
  EXPECT_EQ(plan->rows[1].smiles, "CN(C)C(=N)N=C(N)N.Cl");
  EXPECT_DOUBLE_EQ(plan->rows[1].dose_um, 10);
  EXPECT_EQ(RowSubject(plan->rows[1]), "smiles CN(C)C(=N)N=C(N)N.Cl at 10 µM");
  EXPECT_DOUBLE_EQ(plan->rows[2].dose_um, 0);  // empty = unknown
  EXPECT_EQ(RowSubject(plan->rows[2]), "smiles CCO");

  auto only_smiles = PlanFrom("smiles,control_ref\nCCO,1:a01\n");
  ASSERT_TRUE(only_smiles.ok()) << only_smiles.status();
  EXPECT_EQ(only_smiles->rows[0].smiles, "CCO");
  auto id_plan = PlanFrom("perturbation_id,control_ref\nBRD-A,1:a01\n");
  ASSERT_TRUE(id_plan.ok());
  EXPECT_FALSE(id_plan->has_smiles);
}

TEST(PlanTest, SmilesErrorsNameLineAndColumn) {
  auto both = PlanFrom("perturbation_id,smiles,control_ref\nBRD-A,CCO,1:a01\n");
  ASSERT_FALSE(both.ok());
  EXPECT_THAT(both.status().message(),
              HasSubstr("line 2: set exactly one of perturbation_id and smiles, not both"));
  auto neither = PlanFrom("perturbation_id,smiles,control_ref\n,,1:a01\n");
  ASSERT_FALSE(neither.ok());
  EXPECT_THAT(neither.status().message(), HasSubstr("line 2: perturbation_id and smiles are both"));
  auto empty_smiles = PlanFrom("smiles,control_ref\nCCO,1:a01\n,1:a02\n");
  ASSERT_FALSE(empty_smiles.ok());
  EXPECT_THAT(empty_smiles.status().message(), HasSubstr("line 3 column smiles: empty"));
  for (const char* dose : {"-1", "ten", "nan", "inf"}) {
    auto bad = PlanFrom(std::string("smiles,dose_um,control_ref\nCCO,") + dose + ",1:a01\n");
    ASSERT_FALSE(bad.ok()) << dose;
    EXPECT_THAT(bad.status().message(), HasSubstr("line 2 column dose_um: '")) << dose;
  }
  auto dose_with_id = PlanFrom("perturbation_id,dose_um,control_ref\nBRD-A,10,1:a01\n");
  ASSERT_FALSE(dose_with_id.ok());
  EXPECT_THAT(dose_with_id.status().message(),
              HasSubstr("line 2 column dose_um: a dose goes with a smiles row"));
  auto no_compound = PlanFrom("compound,control_ref\nx,1:a01\n");
  ASSERT_FALSE(no_compound.ok());
  EXPECT_THAT(no_compound.status().message(), HasSubstr("no perturbation_id column and no smiles"));
}

TEST(PlanTest, ControlBitDepthColumn) {
  auto plan = PlanFrom("perturbation_id,control_dir,control_bit_depth\nBRD-A,d1,16\nBRD-B,d2,\n");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->rows[0].control_bit_depth, 16);
  EXPECT_EQ(plan->rows[1].control_bit_depth, 0);  // empty = from the files

  auto bad = PlanFrom("perturbation_id,control_dir,control_bit_depth\nBRD-A,d1,14\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("line 2 column control_bit_depth: '14'"));
}

TEST(PlanTest, RowNamesAndFingerprintsAreStable) {
  EXPECT_EQ(RowName(12), "r000012");
  EXPECT_EQ(Fingerprint({"a", "b"}), Fingerprint({"a", "b"}));
  EXPECT_NE(Fingerprint({"ab", "c"}), Fingerprint({"a", "bc"}));
  EXPECT_EQ(Fingerprint({}).size(), 16u);
}

}  // namespace
}  // namespace cellflux::client
