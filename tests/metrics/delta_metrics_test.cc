// The perturbation metrics on hand-computed cases.
#include "common/metrics/delta_metrics.h"

#include <gtest/gtest.h>

#include <cmath>

namespace cellflux {
namespace {

TEST(DeltaMetricsTest, PearsonMatchesHandComputation) {
  // a − mean = (−1, 0, 1), b − mean = (−7/3, −1/3, 8/3): Σab = 5, Σa² = 2, Σb² = 114/9.
  EXPECT_NEAR(Pearson({1, 2, 3}, {2, 4, 7}), 5.0 / std::sqrt(2.0 * 114.0 / 9.0), 1e-12);
  EXPECT_NEAR(Pearson({1, 2, 3}, {3, 2, 1}), -1.0, 1e-12);
  EXPECT_EQ(Pearson({1, 1, 1}, {1, 2, 3}), 0.0) << "a constant prediction has no direction";
  EXPECT_EQ(Pearson({0, 0, 0}, {0, 0, 0}), 0.0);
  EXPECT_EQ(Pearson({1}, {2}), 0.0);
}

TEST(DeltaMetricsTest, CosineMaeAndDifference) {
  EXPECT_NEAR(Cosine({1, 0}, {1, 1}), 1 / std::sqrt(2.0), 1e-12);
  EXPECT_EQ(Cosine({0, 0}, {1, 1}), 0.0);
  EXPECT_NEAR(MeanAbsoluteError({1, 2, 3}, {2, 2, 5}), 1.0, 1e-12);
  EXPECT_EQ(Difference({3, 4}, {1, 1}), (std::vector<double>{2, 3}));
  EXPECT_EQ(MeanRows({{1, 2}, {3, 6}}), (std::vector<double>{2, 4}));
}

TEST(DeltaMetricsTest, ScoreDeltaOnAllAndTopGenes) {
  const std::vector<double> real = {5, -4, 0.1, 0.2}, pred = {1, 1, -1, 0};
  const DeltaScore s = ScoreDelta(pred, real, /*top_k=*/2);
  // pred − mean = (.75, .75, −1.25, −.25), real − mean = (4.675, −4.325, −.225, −.125):
  // Σab = .575, Σa² = 2.75, Σb² = 40.6275.
  EXPECT_NEAR(s.pearson, 0.575 / std::sqrt(2.75 * 40.6275), 1e-12);
  // Top 2 by |real|: genes 0 (+5) and 1 (−4); the prediction says + for both: one sign right, and
  // it is constant on them, so no correlation.
  EXPECT_NEAR(s.sign_accuracy_top, 0.5, 1e-12);
  EXPECT_EQ(s.pearson_top, 0.0);
  // A zero prediction makes no call: half right, like a coin.
  EXPECT_NEAR(ScoreDelta({0, 0, 0, 0}, real, 2).sign_accuracy_top, 0.5, 1e-12);
  EXPECT_NEAR(ScoreDelta({2, -1, 0, 0}, real, 2).sign_accuracy_top, 1.0, 1e-12);
  EXPECT_NEAR(ScoreDelta({2, -1, 0, 0}, real, 2).pearson_top, 1.0, 1e-12);
  EXPECT_NEAR(ScoreDelta({2, -1, 0, 0}, real, 99).sign_accuracy_top, (1 + 1 + .5 + .5) / 4, 1e-12)
      << "top_k is clamped to the length";
}

TEST(DeltaMetricsTest, RetrievalRanksWithTies) {
  const std::vector<std::vector<double>> sim = {{0.9, 0.1, 0.2}, {0.5, 0.3, 0.4}, {0, 0, 0}};
  const std::vector<RetrievalScore> r = RetrievalRanks(sim);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].rank, 1.0);
  EXPECT_EQ(r[0].top1, 1.0);
  EXPECT_EQ(r[1].rank, 3.0);  // 0.5 and 0.4 beat its own 0.3
  EXPECT_EQ(r[1].top1, 0.0);
  EXPECT_EQ(r[1].top5, 1.0);
  EXPECT_EQ(r[2].rank, 2.0);  // all tied: uniform on 1..3
  EXPECT_NEAR(r[2].top1, 1.0 / 3, 1e-12);
  EXPECT_EQ(r[2].top5, 1.0);
}

TEST(DeltaMetricsTest, RetrievalTopFiveAmongManyTies) {
  // 10 candidates all tied with the true one: P(rank <= 5) = 5 / 10.
  std::vector<std::vector<double>> sim(10, std::vector<double>(10, 0.0));
  const std::vector<RetrievalScore> r = RetrievalRanks(sim);
  EXPECT_NEAR(r[3].top5, 0.5, 1e-12);
  EXPECT_NEAR(r[3].rank, 5.5, 1e-12);
}

TEST(DeltaMetricsTest, CosineMatrixIsPredictionsByReals) {
  const auto m = CosineMatrix({{1, 0}, {0, 1}, {1, 1}}, {{1, 0}, {0, 2}});
  ASSERT_EQ(m.size(), 3u);
  ASSERT_EQ(m[0].size(), 2u);
  EXPECT_NEAR(m[0][0], 1.0, 1e-12);
  EXPECT_NEAR(m[1][0], 0.0, 1e-12);
  EXPECT_NEAR(m[2][1], 1 / std::sqrt(2.0), 1e-12);
}

TEST(DeltaMetricsTest, BootstrapIntervalBracketsTheMeanAndIsDeterministic) {
  const Interval flat = BootstrapMean({2, 2, 2, 2});
  EXPECT_EQ(flat.mean, 2.0);
  EXPECT_EQ(flat.lo, 2.0);
  EXPECT_EQ(flat.hi, 2.0);
  std::vector<double> v;
  for (int i = 0; i < 40; ++i) v.push_back(i % 2);
  const Interval a = BootstrapMean(v, 2000, 7), b = BootstrapMean(v, 2000, 7);
  EXPECT_EQ(a.mean, 0.5);
  EXPECT_LT(a.lo, 0.5);
  EXPECT_GT(a.hi, 0.5);
  // Normal approximation: sd of the mean = 0.5 / sqrt(40) ≈ 0.079, 95% half-width ≈ 0.155.
  EXPECT_NEAR(a.hi - a.lo, 2 * 1.96 * 0.5 / std::sqrt(40.0), 0.04);
  EXPECT_EQ(a.lo, b.lo);
  EXPECT_EQ(a.hi, b.hi);
  const Interval one = BootstrapMean({3});
  EXPECT_EQ(one.lo, 3.0);
  EXPECT_EQ(one.hi, 3.0);
}

}  // namespace
}  // namespace cellflux
