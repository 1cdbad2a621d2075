#include "common/io/tiff.h"

#include <unistd.h>

#include <filesystem>
#include <opencv2/core.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/util/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellflux::io {
namespace {

using ::testing::HasSubstr;

constexpr char kSiteDir[] = "tests/fixtures/bbbc047-site";

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/tiff_test_", ::getpid(), "_", name);
}

cv::Mat Ramp(int width, int height, int scale) {
  cv::Mat m(height, width, CV_16UC1);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x)
      m.at<uint16_t>(y, x) = static_cast<uint16_t>((x * 37 + y * 101) * scale % 4096);
  }
  return m;
}

bool SameMat(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::countNonZero(a != b) == 0;
}

TEST(TiffTest, RealBbbc047SiteLoadsAs696x520TwelveBit) {
  ImageCheck check{.expected_width = 696, .expected_height = 520, .max_value = kMax12Bit};
  for (const char* stain : {"Hoechst", "ERSyto", "ERSytoBleed", "Ph_golgi", "Mito"}) {
    std::string path = absl::StrCat(kSiteDir, "/", stain, ".tif");
    auto image = ReadImage16(path, check);
    ASSERT_TRUE(image.ok()) << image.status();
    EXPECT_EQ(image->type(), CV_16UC1) << stain;
    EXPECT_EQ(image->cols, 696) << stain;
    EXPECT_EQ(image->rows, 520) << stain;
    double lo = 0, hi = 0;
    cv::minMaxLoc(*image, &lo, &hi);
    EXPECT_LE(hi, 4095) << stain;
    EXPECT_GT(hi, lo) << stain << " is flat";
  }
}

TEST(TiffTest, RealSiteDecodesFromBytesIdentically) {
  std::string path = absl::StrCat(kSiteDir, "/Hoechst.tif");
  auto bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  auto from_file = ReadImage16(path);
  auto from_bytes = DecodeImage16(*bytes, "Hoechst bytes");
  ASSERT_TRUE(from_file.ok() && from_bytes.ok());
  EXPECT_TRUE(SameMat(*from_file, *from_bytes));
}

TEST(TiffTest, TiffAndPngRoundTripBitExact) {
  cv::Mat m = Ramp(64, 48, 1);
  std::string tif = TempPath("a.tif");
  ASSERT_TRUE(WriteTiff16(tif, m).ok());
  auto back =
      ReadImage16(tif, {.expected_width = 64, .expected_height = 48, .max_value = kMax12Bit});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(SameMat(m, *back));

  auto png = EncodePng(m);
  ASSERT_TRUE(png.ok());
  auto png_back = DecodeImage16(*png, "png");
  ASSERT_TRUE(png_back.ok()) << png_back.status();
  EXPECT_TRUE(SameMat(m, *png_back));

  auto tif_bytes = EncodeTiff16(m);
  ASSERT_TRUE(tif_bytes.ok());
  auto tif_back = DecodeImage16(*tif_bytes, "tif");
  ASSERT_TRUE(tif_back.ok());
  EXPECT_TRUE(SameMat(m, *tif_back));
  std::filesystem::remove(tif);
}

TEST(TiffTest, EightBitRgbPngWrites) {
  cv::Mat rgb(10, 12, CV_8UC3, cv::Scalar(1, 2, 3));
  std::string path = TempPath("rgb.png");
  ASSERT_TRUE(WritePng(path, rgb).ok());
  auto bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(bytes->substr(1, 3), "PNG");
  // An RGB PNG is not a Cell Painting channel.
  auto as16 = DecodeImage16(*bytes, "rgb.png");
  EXPECT_THAT(as16.status().message(), HasSubstr("single-channel"));
  std::filesystem::remove(path);
}

TEST(TiffTest, ChecksNameTheFileAndTheValues) {
  auto missing = ReadImage16("no/such/file.tif");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("no/such/file.tif"));

  auto garbage = DecodeImage16("not an image at all", "junk.tif");
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(garbage.status().message(), HasSubstr("junk.tif"));

  cv::Mat m = Ramp(64, 48, 1);
  std::string path = TempPath("b.tif");
  ASSERT_TRUE(WriteTiff16(path, m).ok());
  auto wrong_size = ReadImage16(path, {.expected_width = 696, .expected_height = 520});
  EXPECT_THAT(wrong_size.status().message(), HasSubstr("expected size 696x520"));
  EXPECT_THAT(wrong_size.status().message(), HasSubstr("found 64x48"));
  EXPECT_THAT(wrong_size.status().message(), HasSubstr(path));

  m.at<uint16_t>(5, 7) = 5000;
  ASSERT_TRUE(WriteTiff16(path, m).ok());
  auto too_bright = ReadImage16(path, {.max_value = kMax12Bit});
  EXPECT_THAT(too_bright.status().message(), HasSubstr("(x=7, y=5) is 5000"));
  EXPECT_TRUE(ReadImage16(path).ok());  // no max check requested

  cv::Mat eight(48, 64, CV_8UC1, cv::Scalar(9));
  auto png8 = EncodePng(eight);
  ASSERT_TRUE(png8.ok());
  EXPECT_THAT(DecodeImage16(*png8, "eight.png").status().message(),
              HasSubstr("expected 16-bit unsigned"));
  EXPECT_FALSE(WriteTiff16(path, eight).ok());
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace cellflux::io
