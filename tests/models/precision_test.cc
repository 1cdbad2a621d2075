// common/models/precision.h and the models' bf16 paths (SiT, VAE, CellFluxModel::SetPrecision)
// on the CPU: names, resolution by device, TF32 switches, autocast scope, and bf16 forwards that
// stay finite, return float32 and stay near float32 (the 50-step sampling run is in
// tests/flow/sampler_test.cc).
#include "common/models/precision.h"

#include <torch/torch.h>

#include "common/models/cellflux_model.h"
#include "gtest/gtest.h"
#include "tests/models/golden_util.h"
#include "tests/testing/small_model_config.h"

namespace cellflux {
namespace {

using testing::MaxAbsDiff;

TEST(PrecisionTest, ParseNamesAndResolve) {
  for (Precision p : {Precision::kAuto, Precision::kFp32, Precision::kTf32, Precision::kBf16}) {
    auto parsed = ParsePrecision(PrecisionName(p));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, p);
  }
  auto bad = ParsePrecision("fp16");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'fp16'"), std::string::npos) << bad.status();

  const c10::Device cpu(c10::kCPU), cuda(c10::kCUDA, 0);
  EXPECT_EQ(ResolvePrecision(Precision::kAuto, cpu), Precision::kFp32);
  EXPECT_EQ(ResolvePrecision(Precision::kAuto, cuda), Precision::kBf16);
  EXPECT_EQ(ResolvePrecision(Precision::kTf32, cpu), Precision::kTf32);
  EXPECT_EQ(ResolvePrecision(Precision::kFp32, cuda), Precision::kFp32);
  EXPECT_EQ(ComputeDtype(Precision::kBf16), torch::kBFloat16);
  EXPECT_EQ(ComputeDtype(Precision::kTf32), torch::kFloat32);
  EXPECT_EQ(ComputeDtype(Precision::kFp32), torch::kFloat32);
}

TEST(PrecisionTest, MatmulPrecisionSwitchesTf32) {
  SetMatmulPrecision(Precision::kTf32);
  EXPECT_TRUE(Tf32Enabled());
  SetMatmulPrecision(Precision::kBf16);
  EXPECT_FALSE(Tf32Enabled());
  SetMatmulPrecision(Precision::kTf32);
  SetMatmulPrecision(Precision::kFp32);
  EXPECT_FALSE(Tf32Enabled());
}

TEST(PrecisionTest, AutocastGuardScopesBfloat16AndRestores) {
  torch::nn::Linear linear(8, 4);
  torch::Tensor x = torch::randn({2, 8});
  {
    AutocastGuard off(c10::Device(c10::kCPU), Precision::kFp32);
    EXPECT_FALSE(off.active());
    EXPECT_EQ(linear->forward(x).scalar_type(), torch::kFloat32);
  }
  {
    AutocastGuard on(c10::Device(c10::kCPU), Precision::kBf16);
    EXPECT_TRUE(on.active());
    EXPECT_EQ(linear->forward(x).scalar_type(), torch::kBFloat16);
    EXPECT_EQ(linear->weight.scalar_type(), torch::kFloat32);  // master weights untouched
  }
  EXPECT_EQ(linear->forward(x).scalar_type(), torch::kFloat32);
}

// Every parameter a small random value (reference init zeroes adaLN and the heads).
void RandomiseForPrecision(torch::nn::Module& m, double std) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters()) p.normal_(0.0, std);
}

TEST(PrecisionTest, SiTInBfloat16KeepsTheGeneHeadAndOutputsInFloat32) {
  torch::manual_seed(0);
  const ModelConfig config = cellflux::testing::SmallModelConfig();
  SiT sit(config.sit);
  RandomiseForPrecision(*sit, 0.05);
  sit->eval();
  torch::Tensor x = torch::randn({3, 20, 8, 8}), t = torch::rand({3});
  torch::Tensor y = torch::tensor({0, 2, 4}, torch::kInt64), g = torch::randn({3, 8});
  c10::InferenceMode guard;
  SiTOutput fp32 = sit->forward(x, t, y, g);
  sit->SetComputeDtype(torch::kBFloat16);
  EXPECT_EQ(sit->compute_dtype(), torch::kBFloat16);
  EXPECT_EQ(sit->blocks[0]->as<SiTBlockImpl>()->attn->qkv->weight.scalar_type(), torch::kBFloat16);
  for (const auto& p : sit->gene_final_layer->parameters()) {
    EXPECT_EQ(p.scalar_type(), torch::kFloat32);
  }
  SiTOutput bf16 = sit->forward(x, t, y, g);
  EXPECT_EQ(bf16.image.scalar_type(), torch::kFloat32);
  EXPECT_EQ(bf16.gene.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::isfinite(bf16.image).all().item<bool>());
  const double scale = fp32.image.abs().max().item<double>();
  EXPECT_GT(scale, 1e-2);
  EXPECT_LT(MaxAbsDiff(bf16.image, fp32.image), 0.05 * scale);
  EXPECT_LT(MaxAbsDiff(bf16.gene, fp32.gene), 0.05 * fp32.gene.abs().max().item<double>());
  EXPECT_GT(MaxAbsDiff(bf16.image, fp32.image), 0.0) << "bf16 changed nothing: not running bf16?";
}

TEST(PrecisionTest, VaeInBfloat16TakesAndGivesFloat32) {
  torch::manual_seed(1);
  VaeConfig c;
  c.block_out_channels = {8, 16};
  c.layers_per_block = 1;
  c.norm_num_groups = 4;
  AutoencoderKL vae(c);
  vae->eval();
  torch::Tensor x = torch::rand({2, 3, 16, 16}) * 2 - 1;
  c10::InferenceMode guard;
  VaePosterior fp32 = vae->Encode(x);
  torch::Tensor fp32_decoded = vae->Decode(fp32.mean);
  vae->SetComputeDtype(torch::kBFloat16);
  EXPECT_EQ(vae->compute_dtype(), torch::kBFloat16);
  VaePosterior bf16 = vae->Encode(x);
  torch::Tensor bf16_decoded = vae->Decode(fp32.mean);
  EXPECT_EQ(bf16.mean.scalar_type(), torch::kFloat32);
  EXPECT_EQ(bf16.logvar.scalar_type(), torch::kFloat32);
  EXPECT_EQ(bf16_decoded.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::isfinite(bf16_decoded).all().item<bool>());
  EXPECT_LT(MaxAbsDiff(bf16.mean, fp32.mean), 0.05 * fp32.mean.abs().max().item<double>());
  EXPECT_LT(MaxAbsDiff(bf16_decoded, fp32_decoded), 0.05 * fp32_decoded.abs().max().item<double>());
}

TEST(PrecisionTest, SetPrecisionResolvesAutoByDevice) {
  CellFluxModel model(cellflux::testing::SmallModelConfig());
  EXPECT_EQ(model->precision(), Precision::kFp32);
  EXPECT_EQ(model->SetPrecision(Precision::kAuto), Precision::kFp32);  // on the CPU
  EXPECT_EQ(model->sit()->compute_dtype(), torch::kFloat32);
  EXPECT_EQ(model->SetPrecision(Precision::kBf16), Precision::kBf16);
  EXPECT_EQ(model->sit()->compute_dtype(), torch::kBFloat16);
  EXPECT_EQ(model->vae()->autoencoder()->compute_dtype(), torch::kBFloat16);
  for (const auto& p : model->gene_ae()->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat32);
  EXPECT_FALSE(Tf32Enabled());
  EXPECT_EQ(model->SetPrecision(Precision::kTf32), Precision::kTf32);
  EXPECT_EQ(model->sit()->compute_dtype(), torch::kFloat32);
  EXPECT_TRUE(Tf32Enabled());
  model->SetPrecision(Precision::kFp32);
  EXPECT_FALSE(Tf32Enabled());
}

}  // namespace
}  // namespace cellflux
