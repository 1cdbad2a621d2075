#include "common/data/bbbc047.h"

#include <unistd.h>

#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/util/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellflux::data {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(Bbbc047Test, ParsesRealStyleNames) {
  ImageFileName f;
  ASSERT_TRUE(
      ParseImageFileName("cdp2bioactives_a01_s1_w1D6DAC3FC-E6F3-4D24-AF11-3D0E2E2B4DE8.tif", &f));
  EXPECT_EQ(f.well, "A01");
  EXPECT_EQ(f.site, 1);
  EXPECT_EQ(f.w, 1);
  ASSERT_TRUE(ParseImageFileName("CDP2BIOACTIVES_P24_S6_W5.TIF", &f));
  EXPECT_EQ(f.well, "P24");
  EXPECT_EQ(f.site, 6);
  EXPECT_EQ(f.w, 5);
  EXPECT_FALSE(ParseImageFileName("cdp2bioactives_a01_s1_w1_thumb.tif", &f));
  EXPECT_FALSE(ParseImageFileName("cdp2bioactives_q01_s1_w1.tif", &f));
  EXPECT_FALSE(ParseImageFileName("cdp2bioactives_a25_s1_w1.tif", &f));
  EXPECT_FALSE(ParseImageFileName("cdp2bioactives_a01_s1_w6.tif", &f));
  EXPECT_FALSE(ParseImageFileName("cdp2bioactives_a01_s1_w1.png", &f));
  EXPECT_FALSE(ParseImageFileName("other_a01_s1_w1.tif", &f));
  EXPECT_EQ(MakeImageFileName("B07", 3, 2), "cdp2bioactives_b07_s3_w2.tif");
}

TEST(Bbbc047Test, ChannelMappingIsCanonical) {
  // w1=DNA, w2=ER, w3=RNA, w4=AGP, w5=Mito; canonical DNA, RNA, ER, AGP, Mito.
  EXPECT_EQ(CanonicalChannelForW(1), 0);
  EXPECT_EQ(CanonicalChannelForW(3), 1);
  EXPECT_EQ(CanonicalChannelForW(2), 2);
  EXPECT_EQ(CanonicalChannelForW(4), 3);
  EXPECT_EQ(CanonicalChannelForW(5), 4);
  EXPECT_EQ(CanonicalChannelForW(6), -1);
}

TEST(Bbbc047Test, ScanKeepsCompleteSitesAndExplainsDroppedOnes) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/bbbc047_test_", ::getpid());
  fs::remove_all(dir);
  ASSERT_TRUE(MakeDirs(dir + "/24277").ok());
  auto write = [&](const std::string& name, int value) {
    cv::Mat m(8, 10, CV_16UC1, cv::Scalar(value));
    ASSERT_TRUE(cv::imwrite(dir + "/24277/" + name, m));
  };
  for (int w = 1; w <= 5; ++w)
    write(absl::StrCat("cdp2bioactives_a01_s1_w", w, "ABC-1.tif"), 100 * w);
  for (int w = 1; w <= 4; ++w)
    write(absl::StrCat("cdp2bioactives_a01_s2_w", w, ".tif"), w);  // no Mito
  for (int w = 1; w <= 5; ++w) write(absl::StrCat("cdp2bioactives_b02_s1_w", w, ".tif"), w);
  write("cdp2bioactives_b02_s1_w2FFFF.tif", 2);  // a second ER file
  write("cdp2bioactives_a01_s1_w1_thumb.tif", 1);
  ASSERT_TRUE(WriteFileAtomic(dir + "/24277/notes.csv", "x").ok());

  auto scan = ScanImages(dir);
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->plates, 1);
  EXPECT_EQ(scan->files_matched, 15);
  EXPECT_EQ(scan->files_ignored, 2);
  ASSERT_EQ(scan->sites.size(), 1u);
  const SiteFiles& s = scan->sites[0];
  EXPECT_EQ(s.plate, "24277");
  EXPECT_EQ(s.well, "A01");
  EXPECT_EQ(s.site, 1);
  ASSERT_EQ(scan->dropped.size(), 2u);
  EXPECT_THAT(scan->dropped[0].item, HasSubstr("well A01 site 2"));
  EXPECT_THAT(scan->dropped[0].reason, HasSubstr("missing channel(s) Mito (w5)"));
  EXPECT_THAT(scan->dropped[0].reason, HasSubstr("cdp2bioactives_a01_s2_w4.tif"));
  EXPECT_THAT(scan->dropped[1].reason, HasSubstr("several files for channel(s) ER (w2) x2"));

  // Paths are in canonical order: the RNA slot holds w3, whose pixels are 300.
  auto images = ReadSite(s, {.expected_width = 10, .expected_height = 8, .max_value = 4095});
  ASSERT_TRUE(images.ok()) << images.status();
  const int expected_w[] = {1, 3, 2, 4, 5};
  for (int c = 0; c < kNumChannels; ++c)
    EXPECT_EQ((*images)[c].at<uint16_t>(0, 0), 100 * expected_w[c]) << c;
  auto wrong = ReadSite(s, {.expected_width = 696, .expected_height = 520});
  EXPECT_THAT(wrong.status().message(), HasSubstr("w1ABC-1.tif"));

  EXPECT_EQ(ScanImages(dir + "/nope").status().code(), absl::StatusCode::kNotFound);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace cellflux::data
