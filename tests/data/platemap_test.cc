#include "common/data/platemap.h"

#include <unistd.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/util/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellflux::data {
namespace {

using ::testing::HasSubstr;

TEST(PlatemapTest, FormatDoseMatchesPythonStrOfRound) {
  // Expected strings are what Python prints for str(round(x, 2)).
  EXPECT_EQ(FormatDose(10), "10.0");
  EXPECT_EQ(FormatDose(3.333), "3.33");
  EXPECT_EQ(FormatDose(0.5), "0.5");
  EXPECT_EQ(FormatDose(2 * 1.6665), "3.33");
  EXPECT_EQ(FormatDose(2 * 0.0031), "0.01");
  EXPECT_EQ(FormatDose(0.0), "0.0");
  EXPECT_EQ(FormatDose(2.675), "2.67");  // binary 2.67499999...: Python also gives 2.67
  EXPECT_EQ(FormatDose(19.999), "20.0");
  EXPECT_EQ(CpSampleKey({"BRD-K12345678-001-01-1", 5.0, "DMSO"}), "BRD-K12345678-001-01-1_10.0");
}

TEST(PlatemapTest, NormalizesWells) {
  std::string w;
  ASSERT_TRUE(NormalizeWell("a1", &w));
  EXPECT_EQ(w, "A01");
  ASSERT_TRUE(NormalizeWell("P24", &w));
  EXPECT_EQ(w, "P24");
  EXPECT_FALSE(NormalizeWell("Q01", &w));
  EXPECT_FALSE(NormalizeWell("A25", &w));
  EXPECT_FALSE(NormalizeWell("A", &w));
  EXPECT_FALSE(NormalizeWell("A-1", &w));
}

class PlatemapFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/platemap_test_", ::getpid());
    std::filesystem::remove_all(dir_);
    ASSERT_TRUE(MakeDirs(dir_ + "/platemap").ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(PlatemapFilesTest, ReadsMapsPerBarcode) {
  ASSERT_TRUE(WriteFileAtomic(
                  dir_ + "/barcode_platemap.csv",
                  "Plate_Map_Name,Assay_Plate_Barcode\nH-BIOA-004-3,24277\nH-BIOA-004-3,24278\n")
                  .ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/platemap/H-BIOA-004-3.txt",
                              "well_position\tbroad_sample\tmmoles_per_liter\tsolvent\n"
                              "A01\t\t\tDMSO\nA02\tDMSO\t0\tDMSO\nb03\tBRD-K1\t1.6665\tDMSO\n")
                  .ok());
  auto maps = ReadPlateMaps(dir_);
  ASSERT_TRUE(maps.ok()) << maps.status();
  EXPECT_EQ(maps->barcode_to_map.size(), 2u);
  const WellTreatment* a01 = maps->Find("24278", "A01");
  ASSERT_NE(a01, nullptr);
  EXPECT_TRUE(a01->is_control());
  EXPECT_TRUE(maps->Find("24278", "A02")->is_control());
  const WellTreatment* b03 = maps->Find("24277", "B03");
  ASSERT_NE(b03, nullptr);
  EXPECT_EQ(b03->broad_sample, "BRD-K1");
  EXPECT_DOUBLE_EQ(b03->mmoles_per_liter, 1.6665);
  EXPECT_EQ(CpSampleKey(*b03), "BRD-K1_3.33");
  EXPECT_EQ(maps->Find("99999", "A01"), nullptr);
  EXPECT_EQ(maps->Find("24277", "P24"), nullptr);
}

TEST_F(PlatemapFilesTest, ErrorsNameFileLineAndColumn) {
  ASSERT_TRUE(
      WriteFileAtomic(dir_ + "/barcode_platemap.csv", "Plate_Map_Name,Assay_Plate_Barcode\nM,1\n")
          .ok());
  const std::string map = dir_ + "/platemap/M.txt";
  ASSERT_TRUE(
      WriteFileAtomic(map, "well_position\tbroad_sample\tmmoles_per_liter\nA01\tBRD-K1\tabc\n")
          .ok());
  EXPECT_THAT(ReadPlateMaps(dir_).status().message(),
              HasSubstr(map + ":2: column mmoles_per_liter"));
  ASSERT_TRUE(
      WriteFileAtomic(map, "well_position\tbroad_sample\tmmoles_per_liter\nZ99\tBRD-K1\t1\n").ok());
  EXPECT_THAT(ReadPlateMaps(dir_).status().message(), HasSubstr(map + ":2: column well_position"));
  ASSERT_TRUE(WriteFileAtomic(map, "well\tbroad_sample\tmmoles_per_liter\n").ok());
  EXPECT_THAT(ReadPlateMaps(dir_).status().message(), HasSubstr("required column 'well_position'"));
  std::filesystem::remove(map);
  EXPECT_EQ(ReadPlateMaps(dir_).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace cellflux::data
