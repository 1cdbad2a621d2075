#include "common/flow/rectified_flow.h"

#include <torch/torch.h>

#include "gtest/gtest.h"

namespace cellflux {
namespace {

JointLatent RandomLatent(int64_t n, bool with_gene, torch::Generator gen) {
  JointLatent z;
  z.image = torch::randn({n, 3, 4, 4}, gen);
  if (with_gene) z.gene = torch::randn({n, 5}, gen);
  return z;
}

TEST(RectifiedFlowTest, SampleTimesAreUniformInUnitIntervalAndSeeded) {
  auto a = SampleTimes(1000, at::detail::createCPUGenerator(7), torch::kFloat32);
  auto b = SampleTimes(1000, at::detail::createCPUGenerator(7), torch::kFloat32);
  auto c = SampleTimes(1000, at::detail::createCPUGenerator(8), torch::kFloat32);
  ASSERT_EQ(a.sizes(), torch::IntArrayRef({1000}));
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  EXPECT_GE(a.min().item<float>(), 0.0f);
  EXPECT_LT(a.max().item<float>(), 1.0f);
  EXPECT_NEAR(a.mean().item<float>(), 0.5f, 0.05f);
}

TEST(RectifiedFlowTest, InterpolateIsPerSampleLinear) {
  auto gen = at::detail::createCPUGenerator(1);
  JointLatent z0 = RandomLatent(3, true, gen), z1 = RandomLatent(3, true, gen);
  torch::Tensor t = torch::tensor({0.0f, 0.25f, 1.0f});
  JointLatent zt = Interpolate(z0, z1, t);
  EXPECT_TRUE(torch::allclose(zt.image[0], z0.image[0]));
  EXPECT_TRUE(torch::allclose(zt.image[1], 0.75 * z0.image[1] + 0.25 * z1.image[1]));
  EXPECT_TRUE(torch::allclose(zt.image[2], z1.image[2]));
  EXPECT_TRUE(torch::allclose(zt.gene[1], 0.75 * z0.gene[1] + 0.25 * z1.gene[1]));
  EXPECT_TRUE(torch::allclose(zt.gene[2], z1.gene[2]));

  JointLatent i0 = RandomLatent(3, false, gen), i1 = RandomLatent(3, false, gen);
  EXPECT_FALSE(Interpolate(i0, i1, t).gene.defined());
}

TEST(RectifiedFlowTest, ExactVelocityHasZeroLoss) {
  auto gen = at::detail::createCPUGenerator(2);
  JointLatent z0 = RandomLatent(4, true, gen), z1 = RandomLatent(4, true, gen);
  torch::Tensor y = torch::zeros({4}, torch::kInt64);
  torch::Tensor t = SampleTimes(4, gen, torch::kFloat32);
  VelocityFn exact = [&](const JointLatent&, const torch::Tensor&, const torch::Tensor&) {
    return JointLatent{z1.image - z0.image, z1.gene - z0.gene};
  };
  FlowLoss loss = RectifiedFlowLoss(exact, z0, z1, y, t, /*beta=*/10.0);
  EXPECT_EQ(loss.total.item<float>(), 0.0f);
  EXPECT_EQ(loss.image.item<float>(), 0.0f);
  EXPECT_EQ(loss.gene.item<float>(), 0.0f);
}

TEST(RectifiedFlowTest, LossMatchesClosedFormAndBetaWeightsGene) {
  auto gen = at::detail::createCPUGenerator(3);
  JointLatent z0 = RandomLatent(4, true, gen), z1 = RandomLatent(4, true, gen);
  torch::Tensor y = torch::tensor({0, 1, 2, 3}, torch::kInt64);
  torch::Tensor t = torch::tensor({0.1f, 0.4f, 0.6f, 0.9f});
  // v(z, t, y) = 2·z + t + y: depends on every input, so the loss checks what the fn receives.
  int calls = 0;
  VelocityFn v = [&](const JointLatent& z, const torch::Tensor& tt, const torch::Tensor& yy) {
    ++calls;
    torch::Tensor s = (tt + yy.to(torch::kFloat32));
    return JointLatent{2 * z.image + s.view({-1, 1, 1, 1}), 2 * z.gene + s.view({-1, 1})};
  };
  const double beta = 3.5;
  FlowLoss loss = RectifiedFlowLoss(v, z0, z1, y, t, beta);
  EXPECT_EQ(calls, 1);

  torch::Tensor s = t + y.to(torch::kFloat32);
  torch::Tensor ti = t.view({-1, 1, 1, 1}), tg = t.view({-1, 1});
  torch::Tensor zi = (1 - ti) * z0.image + ti * z1.image;
  torch::Tensor zg = (1 - tg) * z0.gene + tg * z1.gene;
  double image =
      (2 * zi + s.view({-1, 1, 1, 1}) - (z1.image - z0.image)).pow(2).mean().item<double>();
  double gene = (2 * zg + s.view({-1, 1}) - (z1.gene - z0.gene)).pow(2).mean().item<double>();
  EXPECT_NEAR(loss.image.item<double>(), image, 1e-5 * image);
  EXPECT_NEAR(loss.gene.item<double>(), gene, 1e-5 * gene);
  EXPECT_NEAR(loss.total.item<double>(), image + beta * gene, 1e-5 * (image + beta * gene));

  FlowLoss beta0 = RectifiedFlowLoss(v, z0, z1, y, t, 0.0);
  EXPECT_NEAR(beta0.total.item<double>(), image, 1e-5 * image);
}

TEST(RectifiedFlowTest, ImageOnlyLatentHasZeroGeneLoss) {
  auto gen = at::detail::createCPUGenerator(4);
  JointLatent z0 = RandomLatent(2, false, gen), z1 = RandomLatent(2, false, gen);
  VelocityFn zero = [](const JointLatent& z, const torch::Tensor&, const torch::Tensor&) {
    return JointLatent{torch::zeros_like(z.image), torch::Tensor()};
  };
  FlowLoss loss = RectifiedFlowLoss(zero, z0, z1, torch::zeros({2}, torch::kInt64),
                                    torch::tensor({0.3f, 0.7f}), 10.0);
  double expected = (z1.image - z0.image).pow(2).mean().item<double>();
  EXPECT_EQ(loss.gene.item<float>(), 0.0f);
  EXPECT_EQ(loss.gene.dim(), 0);
  EXPECT_NEAR(loss.total.item<double>(), expected, 1e-6 * expected);
}

TEST(RectifiedFlowTest, LossBackpropagatesIntoVelocityParameters) {
  auto gen = at::detail::createCPUGenerator(5);
  JointLatent z0 = RandomLatent(2, true, gen), z1 = RandomLatent(2, true, gen);
  torch::Tensor w = torch::ones({1}, torch::requires_grad());
  VelocityFn v = [&](const JointLatent& z, const torch::Tensor&, const torch::Tensor&) {
    return JointLatent{w * z.image, w * z.gene};
  };
  FlowLoss loss = RectifiedFlowLoss(v, z0, z1, torch::zeros({2}, torch::kInt64),
                                    torch::tensor({0.5f, 0.5f}), 1.0);
  loss.total.backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_NE(w.grad().item<float>(), 0.0f);
}

TEST(RectifiedFlowTest, SourceNoiseIsSeededAndScaled) {
  auto gen = at::detail::createCPUGenerator(6);
  JointLatent z0 = RandomLatent(3, true, gen);
  JointLatent a = AddSourceNoise(z0, 0.1, at::detail::createCPUGenerator(42));
  JointLatent b = AddSourceNoise(z0, 0.1, at::detail::createCPUGenerator(42));
  JointLatent c = AddSourceNoise(z0, 0.1, at::detail::createCPUGenerator(43));
  EXPECT_TRUE(torch::equal(a.image, b.image));
  EXPECT_TRUE(torch::equal(a.gene, b.gene));
  EXPECT_FALSE(torch::equal(a.image, c.image));
  EXPECT_FALSE(torch::equal(a.gene, c.gene));
  EXPECT_FALSE(torch::equal(a.image, z0.image));
  // Noise of standard deviation ≈ σ.
  JointLatent big;
  big.image = torch::zeros({64, 4, 8, 8});
  double sd =
      AddSourceNoise(big, 0.1, at::detail::createCPUGenerator(1)).image.std().item<double>();
  EXPECT_NEAR(sd, 0.1, 0.01);
  // σ = 0 is a no-op.
  EXPECT_TRUE(torch::equal(AddSourceNoise(z0, 0.0, gen).image, z0.image));
}

}  // namespace
}  // namespace cellflux
