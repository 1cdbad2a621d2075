#include "common/models/gene_autoencoder.h"

#include <torch/torch.h>

#include <filesystem>
#include <limits>

#include "common/torch/tensors.h"
#include "gtest/gtest.h"

namespace cellflux {
namespace {

GeneAutoencoderConfig TinyGeneConfig() {
  GeneAutoencoderConfig c;
  c.num_genes = 12;
  c.hidden_dims = {16, 8};
  c.latent_dim = 4;
  return c;
}

TEST(GeneAutoencoderTest, RegistersCheckpointNamesAndShapes) {
  GeneAutoencoder ae(TinyGeneConfig());
  TensorMap sd = StateDict(*ae);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
      {"encoder.0.weight", {16, 12}},
      {"encoder.2.weight", {8, 16}},
      {"encoder.4.weight", {4, 8}},
      {"encoder.4.bias", {4}},
      {"decoder.0.weight", {8, 4}},
      {"decoder.2.weight", {16, 8}},
      {"decoder.4.weight", {12, 16}},
      {"decoder.4.bias", {12}},
      {"gene_mean", {12}},
      {"gene_std", {12}}};
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(sd.count(name)) << name;
    EXPECT_EQ(sd.at(name).sizes().vec(), shape) << name;
  }
  EXPECT_EQ(sd.size(), 14u);  // 6 Linear × (weight, bias) + 2 buffers
  torch::Tensor raw = torch::randn({3, 12});
  EXPECT_EQ(ae->Encode(raw).sizes().vec(), std::vector<int64_t>({3, 4}));
  EXPECT_EQ(ae->Decode(ae->Encode(raw)).sizes().vec(), std::vector<int64_t>({3, 12}));
}

TEST(GeneAutoencoderTest, StandardizeRoundTripsAndFloorsStd) {
  GeneAutoencoder ae(TinyGeneConfig());
  torch::Tensor mean = torch::linspace(-3, 3, 12);
  torch::Tensor std = torch::linspace(0.5, 2, 12);
  std[4] = 0.0f;  // a constant gene
  ASSERT_TRUE(ae->SetStatistics(mean, std).ok());
  EXPECT_FLOAT_EQ(ae->gene_std()[4].item<float>(), static_cast<float>(kMinGeneStd));
  EXPECT_FLOAT_EQ(ae->gene_std()[0].item<float>(), 0.5f);

  torch::Tensor raw = mean + std * torch::randn({5, 12});
  torch::Tensor z = ae->Standardize(raw);
  EXPECT_TRUE(torch::allclose(z.select(1, 0), (raw.select(1, 0) + 3) / 0.5));
  EXPECT_TRUE(torch::allclose(ae->Unstandardize(z), raw, 1e-5, 1e-5));
  EXPECT_TRUE(torch::isfinite(z).all().item<bool>());
}

TEST(GeneAutoencoderTest, SetStatisticsRejectsWrongShape) {
  GeneAutoencoder ae(TinyGeneConfig());
  absl::Status s = ae->SetStatistics(torch::zeros({11}), torch::ones({12}));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("gene_mean: expected shape [12], got [11]"), std::string::npos) << s;
  EXPECT_EQ(ae->gene_std()[0].item<float>(), 1.0f);  // unchanged
}

TEST(GeneAutoencoderTest, StatisticsSurviveSafetensorsRoundTrip) {
  torch::manual_seed(0);
  GeneAutoencoder ae(TinyGeneConfig());
  ASSERT_TRUE(ae->SetStatistics(torch::randn({12}), torch::rand({12}) + 0.1).ok());
  const std::string path =
      (std::filesystem::temp_directory_path() / "cellflux_gene_ae_test.safetensors").string();
  ASSERT_TRUE(SaveSafetensors(path, StateDict(*ae)).ok());
  auto loaded = LoadSafetensors(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  std::filesystem::remove(path);

  GeneAutoencoder other(TinyGeneConfig());
  ASSERT_TRUE(LoadStateDict(*other, *loaded, path).ok());
  EXPECT_TRUE(torch::equal(other->gene_mean(), ae->gene_mean()));
  EXPECT_TRUE(torch::equal(other->gene_std(), ae->gene_std()));
  torch::Tensor raw = torch::randn({4, 12});
  EXPECT_TRUE(torch::equal(other->Encode(raw), ae->Encode(raw)));
  EXPECT_TRUE(torch::equal(other->forward(raw), ae->forward(raw)));
}

TEST(GeneAutoencoderTest, AdamWReducesReconstructionLoss) {
  torch::manual_seed(1);
  GeneAutoencoderConfig config = TinyGeneConfig();
  GeneAutoencoder ae(config);
  // Low-rank data (rank 3 < latent 4) with gene-specific offsets and scales.
  torch::Tensor raw = torch::matmul(torch::randn({64, 3}), torch::randn({3, 12})) * 2 + 5;
  ASSERT_TRUE(ae->SetStatistics(raw.mean(0), raw.std(0)).ok());
  torch::optim::AdamW opt(ae->parameters(), torch::optim::AdamWOptions(1e-2));
  const float initial = ae->ReconstructionLoss(raw).item<float>();
  for (int step = 0; step < 100; ++step) {
    opt.zero_grad();
    torch::Tensor loss = ae->ReconstructionLoss(raw);
    loss.backward();
    opt.step();
  }
  const float final_loss = ae->ReconstructionLoss(raw).item<float>();
  EXPECT_LT(final_loss, 0.5f * initial) << "initial " << initial << " final " << final_loss;
  // The statistics are buffers, not trained.
  EXPECT_TRUE(torch::allclose(ae->gene_mean(), raw.mean(0)));
}

TEST(GeneAutoencoderTest, CheckExpressionNamesExpectedAndActual) {
  GeneAutoencoder ae(TinyGeneConfig());
  EXPECT_TRUE(ae->CheckExpression(torch::randn({2, 12})).ok());

  absl::Status wrong = ae->CheckExpression(torch::randn({2, 11}));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.message().find("expected shape [N, 12], got [2, 11]"), std::string::npos)
      << wrong;

  EXPECT_FALSE(ae->CheckExpression(torch::randn({12})).ok());
  EXPECT_FALSE(ae->CheckExpression(torch::zeros({2, 12}, torch::kInt64)).ok());

  torch::Tensor nan = torch::randn({3, 12});
  nan[1][5] = std::numeric_limits<float>::quiet_NaN();
  nan[2][0] = std::numeric_limits<float>::infinity();
  absl::Status bad = ae->CheckExpression(nan);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("2 non-finite values (NaN/Inf), first at row 1, gene 5"),
            std::string::npos)
      << bad;
}

}  // namespace
}  // namespace cellflux
