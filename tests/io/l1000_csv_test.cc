#include "common/io/l1000_csv.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/util/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellflux::io {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/l1000_test_", ::getpid(), "_", name);
}

TEST(L1000CsvTest, SplitsProbesFromMetadataInFileOrder) {
  std::string path = TempPath("h.csv");
  ASSERT_TRUE(WriteFileAtomic(path,
                              "replicate_id,200814_at,pert_id,pert_dose,209380_s_at,det_plate,pert_"
                              "sample_dose,CPD_NAME\n"
                              "r1,1.5,BRD-K1,10.0,-2,P1,BRD-K1-001_10.0,\"name, with comma\"\n"
                              "r2,,DMSO,-666,NaN,P1,DMSO_-666,\n")
                  .ok());
  auto reader = L1000CsvReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  const L1000Header& h = (*reader)->header();
  EXPECT_THAT(h.gene_ids, ElementsAre("200814_at", "209380_s_at"));
  EXPECT_THAT(h.meta_names, ElementsAre("replicate_id", "pert_id", "pert_dose", "det_plate",
                                        "pert_sample_dose", "CPD_NAME"));
  EXPECT_EQ(h.MetaIndex("det_plate"), 3);
  L1000Row row;
  auto more = (*reader)->Next(&row);
  ASSERT_TRUE(more.ok() && *more);
  EXPECT_EQ(row.row_index, 0);
  EXPECT_EQ(row.line, 2);
  EXPECT_THAT(row.values, ElementsAre(1.5f, -2.0f));
  EXPECT_TRUE(row.missing.empty());
  EXPECT_EQ(row.meta[5], "name, with comma");
  more = (*reader)->Next(&row);
  ASSERT_TRUE(more.ok() && *more);
  EXPECT_EQ(row.row_index, 1);
  EXPECT_THAT(row.missing, ElementsAre(0, 1));
  EXPECT_TRUE(std::isnan(row.values[0]));
  more = (*reader)->Next(&row);
  ASSERT_TRUE(more.ok());
  EXPECT_FALSE(*more);
  std::filesystem::remove(path);
}

TEST(L1000CsvTest, WriterRoundTripsGzip) {
  std::string path = TempPath("w.csv.gz");
  std::vector<std::string> meta = {"pert_id", "pert_dose", "det_plate", "pert_sample_dose",
                                   "CPD_SMILES"};
  std::vector<std::string> genes = {"1_at", "2_s_at", "3_at"};
  std::vector<std::vector<float>> values = {{0.1f, -3.25f, 1e-7f}, {NAN, 2.0f, 4.0f}};
  {
    auto writer = L1000CsvWriter::Open(path, meta, genes);
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(
        (*writer)->Write({"BRD-K1", "10.0", "P1", "BRD-K1_10.0", "C(=O)O,N"}, values[0]).ok());
    ASSERT_TRUE((*writer)->Write({"DMSO", "-666", "P1", "DMSO_-666", ""}, values[1]).ok());
    EXPECT_FALSE((*writer)->Write({"x"}, values[0]).ok());
    ASSERT_TRUE((*writer)->Close().ok());
  }
  auto reader = L1000CsvReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->header().gene_ids, genes);
  EXPECT_EQ((*reader)->header().meta_names, meta);
  L1000Row row;
  ASSERT_TRUE(*(*reader)->Next(&row));
  EXPECT_EQ(row.values, values[0]);
  EXPECT_EQ(row.meta[4], "C(=O)O,N");
  ASSERT_TRUE(*(*reader)->Next(&row));
  EXPECT_THAT(row.missing, ElementsAre(0));
  EXPECT_EQ(row.values[2], 4.0f);
  std::filesystem::remove(path);
}

TEST(L1000CsvTest, ErrorsNameFileLineAndColumn) {
  std::string path = TempPath("bad.csv");
  ASSERT_TRUE(WriteFileAtomic(
                  path, "pert_id,pert_dose,det_plate,pert_sample_dose,1_at\nDMSO,-666,P,k,abc\n")
                  .ok());
  auto reader = L1000CsvReader::Open(path);
  ASSERT_TRUE(reader.ok());
  L1000Row row;
  auto bad = (*reader)->Next(&row);
  EXPECT_THAT(bad.status().message(),
              HasSubstr(path + ":2: column 5 ('1_at'): expected a number, found 'abc'"));

  ASSERT_TRUE(WriteFileAtomic(path, "pert_id,pert_dose,det_plate,1_at\n").ok());
  EXPECT_THAT(L1000CsvReader::Open(path).status().message(),
              HasSubstr("'pert_sample_dose' missing"));
  ASSERT_TRUE(WriteFileAtomic(path, "pert_id,pert_dose,det_plate,pert_sample_dose\n").ok());
  EXPECT_THAT(L1000CsvReader::Open(path).status().message(), HasSubstr("no probe columns"));
  ASSERT_TRUE(
      WriteFileAtomic(path, "pert_id,pert_dose,det_plate,pert_sample_dose,1_at\nDMSO,-666,P,k\n")
          .ok());
  reader = L1000CsvReader::Open(path);
  ASSERT_TRUE(reader.ok());
  EXPECT_THAT((*reader)->Next(&row).status().message(), HasSubstr(path + ":2: expected 5 fields"));
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace cellflux::io
