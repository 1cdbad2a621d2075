#include "common/flow/sampler.h"

#include <torch/torch.h>

#include <iostream>
#include <utility>
#include <vector>

#include "common/models/cellflux_model.h"
#include "common/models/precision.h"
#include "gtest/gtest.h"
#include "tests/testing/small_model_config.h"

namespace cellflux {
namespace {

constexpr int kNull = 9;  // null row of the label table (int: mixes with literals in torch::tensor)

JointLatent RandomLatent(int64_t n, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return JointLatent{torch::randn({n, 2, 3, 3}, gen), torch::randn({n, 4}, gen)};
}

// Records every call; velocity = z·(1 + t) + (y == null ? −1 : y), so conditional and
// unconditional rows differ and every input matters.
struct RecordingField {
  std::vector<int64_t> rows;
  std::vector<torch::Tensor> labels;
  std::vector<torch::Tensor> times;
  VelocityFn fn() {
    return [this](const JointLatent& z, const torch::Tensor& t, const torch::Tensor& y) {
      rows.push_back(z.image.size(0));
      labels.push_back(y.clone());
      times.push_back(t.clone());
      return Eval(z, t, y);
    };
  }
  static JointLatent Eval(const JointLatent& z, const torch::Tensor& t, const torch::Tensor& y) {
    torch::Tensor c = torch::where(y == kNull, torch::full_like(y, -1), y).to(torch::kFloat32);
    return JointLatent{z.image * (1 + t).view({-1, 1, 1, 1}) + c.view({-1, 1, 1, 1}),
                       z.gene * (1 + t).view({-1, 1}) + c.view({-1, 1})};
  }
};

TEST(SamplerTest, GuidanceOneIsConditionalWithNRows) {
  JointLatent z = RandomLatent(3, 1);
  torch::Tensor t = torch::tensor({0.0f, 0.5f, 0.9f});
  torch::Tensor y = torch::tensor({1, 2, 3}, torch::kInt64);
  RecordingField field;
  JointLatent g = GuidedVelocity(field.fn(), z, t, y, torch::ones({3}), kNull);
  ASSERT_EQ(field.rows, std::vector<int64_t>({3}));
  JointLatent cond = RecordingField::Eval(z, t, y);
  EXPECT_TRUE(torch::equal(g.image, cond.image));
  EXPECT_TRUE(torch::equal(g.gene, cond.gene));
  EXPECT_TRUE(torch::equal(field.labels[0], y));
}

TEST(SamplerTest, GuidanceRunsOneBatchedForwardAndCombines) {
  JointLatent z = RandomLatent(3, 2);
  torch::Tensor t = torch::tensor({0.1f, 0.2f, 0.3f});
  torch::Tensor y = torch::tensor({4, 5, 6}, torch::kInt64);
  const double alpha = 1.2;
  RecordingField field;
  JointLatent g = GuidedVelocity(field.fn(), z, t, y, torch::full({3}, alpha), kNull);
  ASSERT_EQ(field.rows, std::vector<int64_t>({6}));
  EXPECT_TRUE(
      torch::equal(field.labels[0], torch::tensor({4, 5, 6, kNull, kNull, kNull}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(field.times[0], torch::cat({t, t})));

  JointLatent cond = RecordingField::Eval(z, t, y);
  JointLatent unc = RecordingField::Eval(z, t, torch::full({3}, kNull, torch::kInt64));
  EXPECT_TRUE(torch::allclose(g.image, alpha * cond.image + (1 - alpha) * unc.image, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(g.gene, alpha * cond.gene + (1 - alpha) * unc.gene, 1e-6, 1e-6));
  // Not simply the conditional velocity: guidance changed something.
  EXPECT_FALSE(torch::allclose(g.image, cond.image));
}

TEST(SamplerTest, MixedPerRowGuidanceAddsOnlyNeededRows) {
  JointLatent z = RandomLatent(4, 3);
  torch::Tensor t = torch::tensor({0.0f, 0.25f, 0.5f, 0.75f});  // per-sample t
  torch::Tensor y = torch::tensor({0, 1, 2, 3}, torch::kInt64);
  torch::Tensor alpha = torch::tensor({1.0f, 2.0f, 1.0f, 0.0f});
  RecordingField field;
  JointLatent g = GuidedVelocity(field.fn(), z, t, y, alpha, kNull);
  ASSERT_EQ(field.rows, std::vector<int64_t>({6}));  // 4 conditional + rows 1 and 3
  EXPECT_TRUE(
      torch::equal(field.labels[0], torch::tensor({0, 1, 2, 3, kNull, kNull}, torch::kInt64)));
  EXPECT_TRUE(
      torch::equal(field.times[0], torch::tensor({0.0f, 0.25f, 0.5f, 0.75f, 0.25f, 0.75f})));

  JointLatent cond = RecordingField::Eval(z, t, y);
  JointLatent unc = RecordingField::Eval(z, t, torch::full({4}, kNull, torch::kInt64));
  for (int64_t i : {0, 2}) {  // α = 1: exactly conditional
    EXPECT_TRUE(torch::equal(g.image[i], cond.image[i])) << i;
    EXPECT_TRUE(torch::equal(g.gene[i], cond.gene[i])) << i;
  }
  EXPECT_TRUE(torch::allclose(g.image[1], 2 * cond.image[1] - unc.image[1], 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(g.gene[1], 2 * cond.gene[1] - unc.gene[1], 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(g.image[3], unc.image[3]));  // α = 0: unconditional
  EXPECT_TRUE(torch::allclose(g.gene[3], unc.gene[3]));
}

TEST(SamplerTest, ImageOnlyLatentWorks) {
  JointLatent z{torch::randn({2, 1, 2, 2}), torch::Tensor()};
  int calls = 0;
  VelocityFn v = [&](const JointLatent& zz, const torch::Tensor&, const torch::Tensor& y) {
    ++calls;
    EXPECT_FALSE(zz.gene.defined());
    return JointLatent{
        torch::ones_like(zz.image) * (y == kNull).to(torch::kFloat32).view({-1, 1, 1, 1}),
        torch::Tensor()};
  };
  JointLatent g = GuidedVelocity(v, z, torch::zeros({2}), torch::zeros({2}, torch::kInt64),
                                 torch::full({2}, 0.5), kNull);
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(g.gene.defined());
  EXPECT_TRUE(torch::allclose(g.image, torch::full_like(z.image, 0.5)));
}

TEST(SamplerTest, EulerStepUsesPerRowDt) {
  JointLatent z = RandomLatent(2, 4);
  JointLatent vel = RandomLatent(2, 5);
  JointLatent next = EulerStep(z, vel, torch::tensor({0.5f, 0.0f}));
  EXPECT_TRUE(torch::allclose(next.image[0], z.image[0] + 0.5 * vel.image[0]));
  EXPECT_TRUE(torch::allclose(next.gene[0], z.gene[0] + 0.5 * vel.gene[0]));
  EXPECT_TRUE(torch::equal(next.image[1], z.image[1]));
  EXPECT_TRUE(torch::equal(next.gene[1], z.gene[1]));
}

TEST(SamplerTest, ConstantFieldIsIntegratedExactly) {
  JointLatent z0 = RandomLatent(3, 6);
  JointLatent c = RandomLatent(3, 7);
  int calls = 0;
  VelocityFn v = [&](const JointLatent&, const torch::Tensor&, const torch::Tensor&) {
    ++calls;
    return c;
  };
  JointLatent z1 = SampleEuler(v, z0, torch::zeros({3}, torch::kInt64), kNull, SamplerOptions{});
  EXPECT_EQ(calls, 50);
  EXPECT_TRUE(torch::allclose(z1.image, z0.image + c.image, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(z1.gene, z0.gene + c.gene, 1e-5, 1e-5));
}

TEST(SamplerTest, LinearInTimeFieldGivesTheEulerSum) {
  // v = a + b·t. Euler with t_i = i/N: z1 = z0 + a + b·(N − 1)/(2N) (left Riemann sum).
  JointLatent z0 = RandomLatent(2, 8), a = RandomLatent(2, 9), b = RandomLatent(2, 10);
  std::vector<float> seen_t;
  VelocityFn v = [&](const JointLatent& z, const torch::Tensor& t, const torch::Tensor&) {
    seen_t.push_back(t[0].item<float>());
    return JointLatent{a.image + b.image * t.view({-1, 1, 1, 1}),
                       a.gene + b.gene * t.view({-1, 1})};
  };
  SamplerOptions options;
  options.num_steps = 8;
  JointLatent z1 = SampleEuler(v, z0, torch::zeros({2}, torch::kInt64), kNull, options);
  ASSERT_EQ(seen_t.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(seen_t[i], i / 8.0f);
  const double k = 7.0 / 16.0;
  EXPECT_TRUE(torch::allclose(z1.image, z0.image + a.image + k * b.image, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(z1.gene, z0.gene + a.gene + k * b.gene, 1e-5, 1e-5));
  // The exact ODE solution (k = 1/2) differs, so the test tells Euler from an exact integrator.
  EXPECT_FALSE(torch::allclose(z1.image, z0.image + a.image + 0.5 * b.image, 1e-3, 1e-3));
}

TEST(SamplerTest, HeunIntegratesALinearInTimeFieldExactly) {
  // v = a + b·t: Heun is the trapezoid rule in t, exact for a linear field: z1 = z0 + a + b/2,
  // with the velocity at t_i and t_{i+1} of every step (2N calls).
  JointLatent z0 = RandomLatent(2, 8), a = RandomLatent(2, 9), b = RandomLatent(2, 10);
  std::vector<float> seen_t;
  VelocityFn v = [&](const JointLatent&, const torch::Tensor& t, const torch::Tensor&) {
    seen_t.push_back(t[0].item<float>());
    return JointLatent{a.image + b.image * t.view({-1, 1, 1, 1}),
                       a.gene + b.gene * t.view({-1, 1})};
  };
  SamplerOptions options;
  options.num_steps = 4;
  options.sampler = SamplerKind::kHeun;
  JointLatent z1 = SampleFlow(v, z0, torch::zeros({2}, torch::kInt64), kNull, options);
  EXPECT_EQ(seen_t, (std::vector<float>{0, 0.25f, 0.25f, 0.5f, 0.5f, 0.75f, 0.75f, 1}));
  EXPECT_TRUE(torch::allclose(z1.image, z0.image + a.image + 0.5 * b.image, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(z1.gene, z0.gene + a.gene + 0.5 * b.gene, 1e-5, 1e-5));
  // HeunAverage is the mean of its two arguments, row by row.
  JointLatent m = HeunAverage(a, b);
  EXPECT_TRUE(torch::allclose(m.image, (a.image + b.image) / 2));
  EXPECT_TRUE(torch::allclose(m.gene, (a.gene + b.gene) / 2));
}

TEST(SamplerTest, GuidedSamplingCallsOneDoubleBatchPerStepAndIsDeterministic) {
  JointLatent z0 = RandomLatent(2, 11);
  torch::Tensor y = torch::tensor({3, 4}, torch::kInt64);
  SamplerOptions options;
  options.num_steps = 5;
  options.guidance_scale = 1.2;
  RecordingField f1, f2;
  JointLatent a = SampleEuler(f1.fn(), z0, y, kNull, options);
  JointLatent b = SampleEuler(f2.fn(), z0, y, kNull, options);
  EXPECT_EQ(f1.rows, std::vector<int64_t>(5, 4));
  EXPECT_TRUE(torch::equal(a.image, b.image));
  EXPECT_TRUE(torch::equal(a.gene, b.gene));
  EXPECT_FALSE(torch::equal(a.image, z0.image));

  options.guidance_scale = 1.0;
  RecordingField f3;
  JointLatent c = SampleEuler(f3.fn(), z0, y, kNull, options);
  EXPECT_EQ(f3.rows, std::vector<int64_t>(5, 2));
  EXPECT_FALSE(torch::allclose(a.image, c.image));
}

TEST(SamplerTest, RunsUnderInferenceMode) {
  c10::InferenceMode guard;
  JointLatent z0 = RandomLatent(2, 12);
  RecordingField field;
  SamplerOptions options;
  options.num_steps = 3;
  options.guidance_scale = 1.5;
  JointLatent z1 =
      SampleEuler(field.fn(), z0, torch::tensor({1, 2}, torch::kInt64), kNull, options);
  EXPECT_TRUE(z1.image.is_inference());
  EXPECT_EQ(field.rows.size(), 3u);
}

TEST(SamplerTest, BadShapesThrow) {
  JointLatent z = RandomLatent(2, 13);
  RecordingField field;
  EXPECT_THROW(GuidedVelocity(field.fn(), z, torch::zeros({3}), torch::zeros({2}, torch::kInt64),
                              torch::ones({2}), kNull),
               c10::Error);
  SamplerOptions options;
  options.num_steps = 0;
  EXPECT_THROW(SampleEuler(field.fn(), z, torch::zeros({2}, torch::kInt64), kNull, options),
               c10::Error);
}

TEST(SamplerTest, VelocityInAnotherDtypeIsCombinedInTheStatesDtype) {
  JointLatent z = RandomLatent(2, 3);
  torch::Tensor t = torch::tensor({0.1f, 0.7f});
  torch::Tensor y = torch::tensor({1, 2}, torch::kInt64);
  // A bfloat16 model: returns its velocity in bfloat16.
  VelocityFn bf16 = [](const JointLatent& zz, const torch::Tensor& tt, const torch::Tensor& yy) {
    JointLatent v = RecordingField::Eval(zz, tt, yy);
    return JointLatent{v.image.to(torch::kBFloat16), v.gene.to(torch::kBFloat16)};
  };
  for (double alpha : {1.0, 1.5}) {
    JointLatent g = GuidedVelocity(bf16, z, t, y, torch::full({2}, alpha), kNull);
    EXPECT_EQ(g.image.scalar_type(), torch::kFloat32) << alpha;
    EXPECT_EQ(g.gene.scalar_type(), torch::kFloat32) << alpha;
  }
  SamplerOptions options;
  options.num_steps = 3;
  options.guidance_scale = 2.0;
  JointLatent out = SampleEuler(bf16, z, y, kNull, options);
  EXPECT_EQ(out.image.scalar_type(), torch::kFloat32);
  EXPECT_EQ(out.gene.scalar_type(), torch::kFloat32);
}

double MaxDiff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// The measurement bench/RESULTS.md reports for the CPU: encode, 50 guided Euler steps and decode
// of the small test model in bf16 vs fp32 from the same weights and seeds.
TEST(SamplerPrecisionTest, Bfloat16ModelFor50StepsKeepsFloat32StateAndStaysNearFp32) {
  torch::manual_seed(2);
  const ModelConfig config = cellflux::testing::SmallModelConfig();
  CellFluxModel model(config);
  {
    torch::NoGradGuard no_grad;  // reference init zeroes adaLN and the heads
    for (auto& p : model->sit()->parameters()) p.normal_(0.0, 0.05);
  }
  model->eval();
  const TensorMap weights = StateDict(*model);
  CellFluxModel bf16_model(config);
  ASSERT_TRUE(LoadStateDict(*bf16_model, weights, "same weights").ok());
  bf16_model->eval();
  bf16_model->SetPrecision(Precision::kBf16);

  c10::InferenceMode guard;
  torch::Tensor images = torch::rand({4, 5, 16, 16}) * 2 - 1;
  torch::Tensor expression = torch::randn({4, 16});
  torch::Tensor y = torch::tensor({0, 1, 2, 3}, torch::kInt64);
  SamplerOptions options;
  options.num_steps = 50;
  options.guidance_scale = 1.5;
  auto run = [&](CellFluxModel& m) {
    JointLatent z0 =
        m->DrawSource(m->EncodeImages(images), m->EncodeExpression(expression), {1, 2, 3, 4});
    EXPECT_EQ(z0.image.scalar_type(), torch::kFloat32);
    JointLatent z1 = SampleEuler(m->velocity_fn(), z0, y, m->null_label(), options);
    return std::make_pair(z1, m->Decode(z1));
  };
  auto [z_fp32, out_fp32] = run(model);
  auto [z_bf16, out_bf16] = run(bf16_model);
  EXPECT_EQ(z_bf16.image.scalar_type(), torch::kFloat32);  // the Euler state
  EXPECT_EQ(z_bf16.gene.scalar_type(), torch::kFloat32);
  EXPECT_EQ(out_bf16.images.scalar_type(), torch::kFloat32);
  EXPECT_EQ(out_bf16.expression.scalar_type(), torch::kFloat32);
  for (const torch::Tensor& t : {z_bf16.image, z_bf16.gene, out_bf16.images, out_bf16.expression}) {
    EXPECT_TRUE(torch::isfinite(t).all().item<bool>());
  }
  const double d_image = MaxDiff(z_bf16.image, z_fp32.image);
  const double d_gene = MaxDiff(z_bf16.gene, z_fp32.gene);
  const double d_pixels = MaxDiff(out_bf16.images, out_fp32.images);
  const double d_expression = MaxDiff(out_bf16.expression, out_fp32.expression);
  std::cout << "bf16 vs fp32 after 50 steps (small test model): max |dz_image| " << d_image
            << " (|z_image| max " << z_fp32.image.abs().max().item<double>() << "), max |dz_gene| "
            << d_gene << ", max |d pixel| " << d_pixels << ", max |d expression| " << d_expression
            << "\n";
  EXPECT_GT(d_image, 0.0);
  EXPECT_LT(d_image, 0.05 * z_fp32.image.abs().max().item<double>());
  EXPECT_LT(d_gene, 0.05 * z_fp32.gene.abs().max().item<double>());
  EXPECT_LT(d_pixels, 0.05);  // pixels in [-1, 1]
}

}  // namespace
}  // namespace cellflux
