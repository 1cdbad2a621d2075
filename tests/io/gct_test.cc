#include "common/io/gct.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/io/gctx.h"
#include "common/util/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellflux::io {
namespace {

using ::testing::HasSubstr;

constexpr char kGct[] = "tests/fixtures/l1000/test_l1000.gct";
constexpr char kGctx[] = "tests/fixtures/l1000/test_l1000.gctx";

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/gct_test_", ::getpid(), "_", name);
}

// Bitwise equality (NaN == NaN) of everything in two matrices.
void ExpectSameMatrix(const GctMatrix& a, const GctMatrix& b) {
  EXPECT_EQ(a.row_ids, b.row_ids);
  EXPECT_EQ(a.col_ids, b.col_ids);
  EXPECT_EQ(a.row_meta, b.row_meta);
  EXPECT_EQ(a.col_meta, b.col_meta);
  ASSERT_EQ(a.data.size(), b.data.size());
  int64_t differ = 0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    bool same = (std::isnan(a.data[i]) && std::isnan(b.data[i])) || a.data[i] == b.data[i];
    differ += same ? 0 : 1;
  }
  EXPECT_EQ(differ, 0);
}

GctMatrix Small() {
  GctMatrix m;
  m.row_ids = {"200814_at", "209380_s_at", "1007_s_at"};
  m.col_ids = {"s1", "s2"};
  m.row_meta = {{"pr_gene_symbol", {"PSME1", "ABCC5", "DDR1"}}, {"pr_is_lmark", {"1", "1", "0"}}};
  m.col_meta = {{"pert_id", {"DMSO", "BRD-K1"}}, {"pert_dose", {"-666", "10.0"}}};
  m.data = {1.5f, -0.1f, 3.14159274f, NAN, 1e-8f, 123456.789f};
  return m;
}

TEST(GctTest, RealFixtureLoads978By377WithGeneMetadata) {
  auto m = ReadGct(kGct);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->rows(), 978);
  EXPECT_EQ(m->cols(), 377);
  EXPECT_EQ(m->row_meta.size(), 11u);
  EXPECT_EQ(m->col_meta.size(), 35u);
  for (const char* field : {"pr_gene_id", "pr_gene_symbol", "pr_is_lmark"}) {
    EXPECT_NE(m->RowMeta(field), nullptr) << field;
  }
  EXPECT_EQ(m->row_ids[0], "200814_at");
  EXPECT_EQ((*m->RowMeta("pr_gene_symbol"))[0], "PSME1");
  EXPECT_EQ(m->col_ids[0], "LJP005_A375_24H_X1_B19:A03");
  EXPECT_FLOAT_EQ(m->at(0, 0), 11.3819f);  // first cell of the file as printed
  ASSERT_NE(m->ColMeta("pert_id"), nullptr);
}

// The shared ".gctx" fixture is GCT 1.3 text, not HDF5 (a different, z-scored matrix with two
// extra column fields). ReadGctx must say so; ReadExpressionMatrix reads it by content.
TEST(GctTest, GctxFixtureIsTextAndReadByContent) {
  auto as_hdf5 = ReadGctx(kGctx);
  EXPECT_EQ(as_hdf5.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(as_hdf5.status().message(), HasSubstr("GCT text"));
  EXPECT_THAT(as_hdf5.status().message(), HasSubstr(kGctx));

  auto gct = ReadExpressionMatrix(kGct);
  auto other = ReadExpressionMatrix(kGctx);
  ASSERT_TRUE(gct.ok() && other.ok()) << other.status();
  EXPECT_EQ(other->rows(), 978);
  EXPECT_EQ(other->cols(), 377);
  EXPECT_EQ(gct->row_ids, other->row_ids);
  EXPECT_EQ(gct->col_ids, other->col_ids);
  EXPECT_EQ(gct->row_meta, other->row_meta);
}

TEST(GctTest, WrittenGctReadsBackIdentically) {
  auto m = ReadGct(kGct);
  ASSERT_TRUE(m.ok());
  std::string path = TempPath("rt.gct");
  ASSERT_TRUE(WriteGct(path, *m).ok());
  auto back = ReadGct(path);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameMatrix(*m, *back);

  GctMatrix small = Small();
  ASSERT_TRUE(WriteGct(path, small).ok());
  auto small_back = ReadGct(path);
  ASSERT_TRUE(small_back.ok()) << small_back.status();
  ExpectSameMatrix(small, *small_back);
  std::filesystem::remove(path);
}

TEST(GctTest, GctToGctxToMatrixIsExact) {
  auto m = ReadGct(kGct);
  ASSERT_TRUE(m.ok());
  std::string path = TempPath("rt.gctx");
  ASSERT_TRUE(WriteGctx(path, *m).ok());
  auto back = ReadGctx(path);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameMatrix(*m, *back);
  auto sniffed = ReadExpressionMatrix(path);
  ASSERT_TRUE(sniffed.ok());
  EXPECT_EQ(sniffed->row_ids, m->row_ids);

  GctMatrix small = Small();
  ASSERT_TRUE(WriteGctx(path, small).ok());
  auto small_back = ReadGctx(path);
  ASSERT_TRUE(small_back.ok()) << small_back.status();
  ExpectSameMatrix(small, *small_back);
  std::filesystem::remove(path);
}

TEST(GctTest, ReadsGct12) {
  auto m = ParseGct("#1.2\n2\t2\nName\tDescription\ta\tb\ng1\tgene one\t1\t2\ng2\t\t3\tNaN\n",
                    "v12.gct");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->row_ids, (std::vector<std::string>{"g1", "g2"}));
  ASSERT_NE(m->RowMeta("Description"), nullptr);
  EXPECT_EQ((*m->RowMeta("Description"))[0], "gene one");
  EXPECT_EQ(m->at(1, 0), 3.0f);
  EXPECT_TRUE(std::isnan(m->at(1, 1)));
}

TEST(GctTest, MalformedInputsNameFileAndLine) {
  const std::string head = "#1.3\n2\t2\t1\t1\nid\tsym\ta\tb\npert\t-666\tx\ty\n";
  struct Case {
    std::string text;
    std::string expect;
  } cases[] = {
      {"#2.0\n", "bad.gct:1: expected '#1.3'"},
      {"#1.3\n2\t2\t1\n", "bad.gct:2: dimensions line: expected 4"},
      {"#1.3\n2\tx\t1\t1\n", "bad.gct:2: dimensions line, columns"},
      {head + "g1\tA\t1\t2\ng2\tB\t3\n", "bad.gct:6: data row 'g2': expected 4 fields, found 3"},
      {head + "g1\tA\t1\t2\ng2\tB\t3\tfoo\n",
       "bad.gct:6: row 'g2', column 2 ('b'): expected a number, found 'foo'"},
      {head + "g1\tA\t1\t2\n", "promises 1 column-meta lines and 2 data rows"},
      {"#1.3\n2\t2\t1\t1\nid\tsym\ta\n", "bad.gct:3: header: expected 4 fields"},
  };
  for (const Case& c : cases) {
    auto m = ParseGct(c.text, "bad.gct");
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << c.expect;
    EXPECT_THAT(m.status().message(), HasSubstr(c.expect));
  }
  EXPECT_EQ(ReadGct("no/such.gct").status().code(), absl::StatusCode::kNotFound);
}

TEST(GctTest, WritersRejectInconsistentMatrices) {
  GctMatrix m = Small();
  m.data.pop_back();
  EXPECT_THAT(WriteGct(TempPath("x.gct"), m).message(), HasSubstr("data has 5 values"));
  m = Small();
  m.col_meta[0].second.push_back("extra");
  EXPECT_THAT(WriteGctx(TempPath("x.gctx"), m).message(),
              HasSubstr("'pert_id' has 3 values, expected 2"));
}

TEST(GctTest, FloatTextIsShortestRoundTrip) {
  for (float v : {0.1f, 11.3819f, -0.5123f, 1e-30f, 3.4e38f, 16777217.0f}) {
    float back = 0;
    ASSERT_TRUE(ParseFloatCell(FormatFloat(v), &back));
    EXPECT_EQ(back, v);
  }
  EXPECT_EQ(FormatFloat(0.1f), "0.1");
  float x = 0;
  EXPECT_FALSE(ParseFloatCell("1.0abc", &x));
  EXPECT_TRUE(ParseFloatCell("-inf", &x));
  EXPECT_TRUE(std::isinf(x));
}

}  // namespace
}  // namespace cellflux::io
