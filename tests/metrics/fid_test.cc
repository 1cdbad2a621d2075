#include "common/metrics/fid.h"

#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/torch/tensors.h"
#include "gtest/gtest.h"

namespace cellflux {
namespace {

std::string RunPython(const std::string& args) {
  std::string out;
  FILE* p =
      popen(("/usr/bin/python3 tests/metrics/fid_reference.py " + args + " 2>&1").c_str(), "r");
  if (p == nullptr) return out;
  char buf[256];
  while (fgets(buf, sizeof(buf), p)) out += buf;
  pclose(p);
  return out;
}

double Field(const std::string& text, const std::string& key) {
  size_t pos = text.find(key + " ");
  if (pos == std::string::npos) return NAN;
  return std::strtod(text.c_str() + pos + key.size() + 1, nullptr);
}

TEST(FidTest, MatchesScipySqrtmOnCorrelatedFeatures) {
  torch::manual_seed(3);
  // Correlated, anisotropic features with a mean shift: a realistic, ill-conditioned covariance.
  torch::Tensor mix = torch::randn({32, 32}, torch::kFloat64);
  torch::Tensor a = torch::matmul(torch::randn({200, 32}, torch::kFloat64), mix);
  torch::Tensor b = torch::matmul(torch::randn({200, 32}, torch::kFloat64), mix * 1.3) + 0.5;
  std::string path =
      (std::filesystem::temp_directory_path() / "cellflux_fid_test.safetensors").string();
  ASSERT_TRUE(SaveSafetensors(path, {{"a", a}, {"b", b}}).ok());
  std::string ref = RunPython(path);
  double ref_fid = Field(ref, "fid"), ref_mmd = Field(ref, "mmd2");
  ASSERT_FALSE(std::isnan(ref_fid)) << "python reference failed: " << ref;

  auto sa = ComputeFeatureStats(a);
  auto sb = ComputeFeatureStats(b);
  ASSERT_TRUE(sa.ok() && sb.ok());
  auto fid = FrechetDistance(*sa, *sb);
  ASSERT_TRUE(fid.ok()) << fid.status();
  EXPECT_NEAR(*fid, ref_fid, 1e-6 * std::max(1.0, std::abs(ref_fid)));

  // One subset of all rows = the full-set unbiased MMD² scipy computes.
  auto kid = KernelInceptionDistance(a, b, /*subset_size=*/200, /*num_subsets=*/1);
  ASSERT_TRUE(kid.ok()) << kid.status();
  EXPECT_NEAR(kid->mean, ref_mmd, 1e-8 * std::max(1.0, std::abs(ref_mmd)));
  std::filesystem::remove(path);
}

TEST(FidTest, IdenticalSetsScoreZeroAndShiftsScoreTheirSquaredNorm) {
  torch::manual_seed(1);
  torch::Tensor a = torch::randn({500, 8}, torch::kFloat64);
  auto s = ComputeFeatureStats(a);
  ASSERT_TRUE(s.ok());
  auto zero = FrechetDistance(*s, *s);
  ASSERT_TRUE(zero.ok());
  EXPECT_NEAR(*zero, 0.0, 1e-9);
  auto shifted = ComputeFeatureStats(a + 2.0);
  auto fid = FrechetDistance(*s, *shifted);
  ASSERT_TRUE(fid.ok());
  EXPECT_NEAR(*fid, 8 * 4.0, 1e-6);  // covariances equal: only |Δμ|² = 8·2² remains
}

TEST(FidTest, RankDeficientCovarianceStaysFinite) {
  // 10 samples in 64 dimensions: singular covariances, where naive sqrtm goes complex.
  torch::manual_seed(2);
  auto a = ComputeFeatureStats(torch::randn({10, 64}, torch::kFloat64));
  auto b = ComputeFeatureStats(torch::randn({10, 64}, torch::kFloat64));
  auto fid = FrechetDistance(*a, *b);
  ASSERT_TRUE(fid.ok()) << fid.status();
  EXPECT_TRUE(std::isfinite(*fid));
  EXPECT_GT(*fid, 0.0);
}

TEST(FidTest, RejectsTooFewSamples) {
  auto s = ComputeFeatureStats(torch::randn({1, 4}));
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace cellflux
