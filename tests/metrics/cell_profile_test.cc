// The morphology profile on drawn images whose features are known by construction.
#include "common/metrics/cell_profile.h"

#include <gtest/gtest.h>

#include <cmath>
#include <opencv2/imgproc.hpp>

namespace cellflux {
namespace {

constexpr double kPi = 3.14159265358979;

std::array<cv::Mat, kProfileChannels> Channels(const cv::Mat& dna, float others = 0.3f) {
  std::array<cv::Mat, kProfileChannels> c;
  c[0] = dna;
  for (int i = 1; i < kProfileChannels; ++i) c[i] = cv::Mat(dna.size(), CV_32F, cv::Scalar(others));
  return c;
}

int Feature(const std::string& name) {
  const auto& names = ProfileFeatureNames();
  return static_cast<int>(std::find(names.begin(), names.end(), name) - names.begin());
}

TEST(CellProfileTest, FindsDrawnRoundNuclei) {
  cv::Mat dna(64, 64, CV_32F, cv::Scalar(0.05));
  for (cv::Point c : {cv::Point(12, 12), cv::Point(45, 15), cv::Point(30, 46)})
    cv::circle(dna, c, 5, cv::Scalar(0.8), cv::FILLED);
  const NucleiStats n = SegmentNuclei(dna);
  EXPECT_EQ(n.count, 3);
  EXPECT_NEAR(n.area, kPi * 25, 0.12 * kPi * 25);  // a 5-px disc: ~78.5 px
  EXPECT_LT(n.eccentricity, 0.25);                 // discs: 0 up to pixelation
  EXPECT_NEAR(n.intensity, 0.8, 0.05);
  EXPECT_NEAR(n.area_fraction, 3 * kPi * 25 / (64 * 64), 0.01);
}

TEST(CellProfileTest, EllipseEccentricityAndSmallSpecksIgnored) {
  cv::Mat dna(64, 64, CV_32F, cv::Scalar(0.0));
  // Semi-axes 12 and 6: eccentricity sqrt(1 − (6/12)²) = 0.866.
  cv::ellipse(dna, cv::Point(32, 32), cv::Size(12, 6), 30, 0, 360, cv::Scalar(1.0), cv::FILLED);
  // OpenCV's filled ellipse includes its 1-px outline: the drawn area is what segmentation should
  // find (≈ π·12.5·6.5), counted before the speck is added.
  const double drawn = cv::countNonZero(dna > 0.5);
  EXPECT_NEAR(drawn, kPi * 12.5 * 6.5, 0.05 * kPi * 12.5 * 6.5);
  dna.at<float>(3, 3) = 1.0f;  // a 1-px speck: below kMinNucleusArea
  const NucleiStats n = SegmentNuclei(dna);
  EXPECT_EQ(n.count, 1);
  EXPECT_NEAR(n.eccentricity, std::sqrt(1 - 0.25), 0.04);
  EXPECT_NEAR(n.area, drawn, 0.05 * drawn);
}

TEST(CellProfileTest, FlatImageHasNoNucleiAndNoTexture) {
  const cv::Mat flat(32, 32, CV_32F, cv::Scalar(0.3));
  EXPECT_EQ(SegmentNuclei(flat).count, 0);
  EXPECT_EQ(Glcm(flat, 1).contrast, 0.0);
  auto p = ComputeProfile(Channels(flat));
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->size(), ProfileFeatureNames().size());
  EXPECT_NEAR((*p)[Feature("RNA_mean")], 0.3, 1e-6);
  EXPECT_NEAR((*p)[Feature("RNA_std")], 0.0, 1e-6);
  EXPECT_NEAR((*p)[Feature("Mito_q90")], 0.3, 1e-6);
  EXPECT_EQ((*p)[Feature("nuclei_count")], 0.0);
}

TEST(CellProfileTest, GlcmOfOnePixelStripes) {
  // Columns alternate 0 / 1 (levels 0 / 15). Horizontal offset 1: every pair differs by 15
  // (contrast 225, correlation −1); vertical: identical pairs (0, +1). Distance 2 lands on the same
  // value in both directions (contrast 0, correlation +1).
  cv::Mat stripes(32, 32, CV_32F);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x) stripes.at<float>(y, x) = static_cast<float>(x % 2);
  const GlcmStats d1 = Glcm(stripes, 1), d2 = Glcm(stripes, 2);
  EXPECT_NEAR(d1.contrast, 225.0 / 2, 1e-9);
  EXPECT_NEAR(d1.correlation, 0.0, 1e-9);
  EXPECT_NEAR(d2.contrast, 0.0, 1e-9);
  EXPECT_NEAR(d2.correlation, 1.0, 1e-9);
}

TEST(CellProfileTest, IntensityQuantilesOfARamp) {
  cv::Mat ramp(1, 101, CV_32F);
  for (int x = 0; x <= 100; ++x) ramp.at<float>(0, x) = x / 100.0f;
  auto c = Channels(cv::Mat(1, 101, CV_32F, cv::Scalar(0)));
  c[2] = ramp;  // ER
  auto p = ComputeProfile(c);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_NEAR((*p)[Feature("ER_mean")], 0.5, 1e-6);
  EXPECT_NEAR((*p)[Feature("ER_q10")], 0.1, 1e-6);
  EXPECT_NEAR((*p)[Feature("ER_q50")], 0.5, 1e-6);
  EXPECT_NEAR((*p)[Feature("ER_q90")], 0.9, 1e-6);
}

TEST(CellProfileTest, RejectsMismatchedChannels) {
  auto c = Channels(cv::Mat(16, 16, CV_32F, cv::Scalar(0)));
  c[3] = cv::Mat(8, 16, CV_32F, cv::Scalar(0));
  auto p = ComputeProfile(c);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("AGP"), std::string::npos) << p.status();
}

TEST(CellProfileTest, StandardizerUsesReferenceMeanAndSd) {
  auto s = ProfileStandardizer::Fit({{1, 5}, {3, 5}});
  ASSERT_TRUE(s.ok()) << s.status();
  const std::vector<double> z = s->Apply({4, 6});
  EXPECT_NEAR(z[0], 2 / std::sqrt(2.0), 1e-12);  // mean 2, sd √2
  EXPECT_NEAR(z[1], 1.0, 1e-12);                 // no spread: sd 1
  EXPECT_FALSE(ProfileStandardizer::Fit({{1, 2}}).ok());
}

TEST(CellProfileTest, FrechetDistanceInOneAndTwoDimensions) {
  // 1-D: means 1 and 2, variances 2 and 8: 1 + 2 + 8 − 2·√16 = 3.
  auto fd = FrechetDistanceRows({{0}, {2}}, {{0}, {4}});
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_NEAR(*fd, 3.0, 1e-9);
  // Identical sets: 0.
  auto same = FrechetDistanceRows({{0, 1}, {2, 0}, {1, 3}}, {{0, 1}, {2, 0}, {1, 3}});
  ASSERT_TRUE(same.ok());
  EXPECT_NEAR(*same, 0.0, 1e-9);
  EXPECT_FALSE(FrechetDistanceRows({{0}}, {{0}, {1}}).ok());
}

}  // namespace
}  // namespace cellflux
