// Control expression specs: GCT columns (ids with ':'), CSV with and without gene ids, model order.
#include "client/expression_source.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "common/io/gct.h"
#include "tests/client/test_util.h"

namespace cellflux::client {
namespace {

using ::testing::HasSubstr;

const std::string kGct = testing::kFixtures + "/l1000/test_l1000.gct";

TEST(ExpressionSourceTest, ParsesSpecsWithColonsInColumnIds) {
  ExpressionSpec spec = ParseExpressionSpec("a/b.gct:LJP005_A375_24H_X1_B19:A03");
  EXPECT_EQ(spec.path, "a/b.gct");
  EXPECT_EQ(spec.column, "LJP005_A375_24H_X1_B19:A03");
  EXPECT_FALSE(spec.csv);
  spec = ParseExpressionSpec("x.GCTX:c1");
  EXPECT_EQ(spec.path, "x.GCTX");
  EXPECT_EQ(spec.column, "c1");
  spec = ParseExpressionSpec("expr.csv");
  EXPECT_TRUE(spec.csv);
  EXPECT_TRUE(spec.column.empty());
}

TEST(ExpressionSourceTest, ReadsOneColumnOfTheRealGct) {
  auto matrix = io::ReadGct(kGct);
  ASSERT_TRUE(matrix.ok()) << matrix.status();
  const std::string column = "LJP005_A375_24H_X1_B19:A03";
  auto expression = LoadExpression(kGct + ":" + column, {});
  ASSERT_TRUE(expression.ok()) << expression.status();
  ASSERT_EQ(expression->values.size(), 978u);
  EXPECT_EQ(expression->gene_ids, matrix->row_ids);
  int64_t c = 0;
  while (matrix->col_ids[c] != column) ++c;
  EXPECT_EQ(expression->values[5], matrix->at(5, c));
  // The format is chosen by content, not name: the fixture's .gctx file is in fact GCT 1.3 text
  // (with other values than the .gct), and still loads.
  auto from_gctx = LoadExpression(testing::kFixtures + "/l1000/test_l1000.gctx:" + column, {});
  ASSERT_TRUE(from_gctx.ok()) << from_gctx.status();
  EXPECT_EQ(from_gctx->values.size(), 978u);
}

TEST(ExpressionSourceTest, GctNeedsAColumnWhenItHasSeveral) {
  auto expression = LoadExpression(kGct, {});
  ASSERT_FALSE(expression.ok());
  EXPECT_THAT(expression.status().message(), HasSubstr("377 columns"));
  auto unknown = LoadExpression(kGct + ":nope", {});
  EXPECT_THAT(unknown.status().message(), HasSubstr("no column 'nope'"));
}

TEST(ExpressionSourceTest, CsvIsReorderedIntoModelOrder) {
  const std::string dir = testing::MakeTempDir("exprcsv");
  testing::WriteText(dir + "/e.csv", "pr_gene_id,value\ng2,2.5\ng1,1.5\nextra,9\ng3,-3\n");
  auto expression = LoadExpression(dir + "/e.csv", {"g1", "g2", "g3"});
  ASSERT_TRUE(expression.ok()) << expression.status();
  EXPECT_EQ(expression->gene_ids, (std::vector<std::string>{"g1", "g2", "g3"}));
  EXPECT_EQ(expression->values, (std::vector<float>{1.5f, 2.5f, -3.0f}));

  auto missing = LoadExpression(dir + "/e.csv", {"g1", "g4"});
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("g4"));

  testing::WriteText(dir + "/bad.csv", "id,value\ng1,1\ng2,abc\n");
  auto bad = LoadExpression(dir + "/bad.csv", {});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("line 3"));
  EXPECT_THAT(bad.status().message(), HasSubstr("'abc'"));
}

TEST(ExpressionSourceTest, ValuesOnlyCsvMustMatchTheModelLength) {
  const std::string dir = testing::MakeTempDir("exprvals");
  testing::WriteText(dir + "/v.csv", "value\n1\n2\n");
  EXPECT_TRUE(LoadExpression(dir + "/v.csv", {"a", "b"}).ok());
  auto wrong = LoadExpression(dir + "/v.csv", {"a", "b", "c"});
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.status().message(), HasSubstr("expects 3"));
}

}  // namespace
}  // namespace cellflux::client
