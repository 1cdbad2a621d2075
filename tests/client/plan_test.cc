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
