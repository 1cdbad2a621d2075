// CellFluxModel::DrawSource: the source latent z0 the sampler starts from, per seed.
#include "common/models/cellflux_model.h"

#include <torch/torch.h>

#include "common/models/config.h"
#include "gtest/gtest.h"

namespace cellflux {
namespace {

ModelConfig SmallConfig(bool sample_posterior) {
  ModelConfig c;
  c.image_size = 16;
  c.vae.block_out_channels = {8, 8};
  c.vae.layers_per_block = 1;
  c.vae.norm_num_groups = 4;
  c.sit.input_size = 8;
  c.sit.patch_size = 4;
  c.sit.in_channels = 20;
  c.sit.hidden_size = 32;
  c.sit.depth = 1;
  c.sit.num_heads = 2;
  c.sit.num_classes = 4;
  c.sit.gene_latent_dim = 8;
  c.sit.gene_tokens = 2;
  c.gene_ae.num_genes = 16;
  c.gene_ae.hidden_dims = {16};
  c.gene_ae.latent_dim = 8;
  c.flow.sample_posterior = sample_posterior;
  return c;
}

TEST(CellFluxModelTest, SamplePosteriorTravelsInTheConfig) {
  EXPECT_TRUE(ModelConfig().flow.sample_posterior);  // latent diffusion's default
  auto tiny = ModelConfig::Load("configs/tiny.json");
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  EXPECT_FALSE(tiny->flow.sample_posterior);
  auto back = ModelConfig::FromJson(tiny->ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->flow.sample_posterior);
}

TEST(CellFluxModelTest, DrawSourceSamplesThePosteriorOnlyWhenConfigured) {
  torch::manual_seed(0);
  LatentPosterior post{torch::randn({1, 20, 8, 8}), torch::full({1, 20, 8, 8}, 0.5)};
  torch::Tensor gene = torch::randn({1, 8});
  const std::vector<uint64_t> seeds = {1, 2};

  CellFluxModel mean_model(SmallConfig(/*sample_posterior=*/false));
  JointLatent z = mean_model->DrawSource(post, gene, seeds);
  ASSERT_EQ(z.image.size(0), 2);
  EXPECT_TRUE(torch::equal(z.image[0], post.mean[0]));
  EXPECT_TRUE(torch::equal(z.image[1], post.mean[0]));
  EXPECT_TRUE(torch::equal(z.gene, gene.expand({2, 8})));

  CellFluxModel sample_model(SmallConfig(/*sample_posterior=*/true));
  JointLatent s = sample_model->DrawSource(post, gene, seeds);
  EXPECT_FALSE(torch::allclose(s.image[0], post.mean[0]));
  EXPECT_FALSE(torch::allclose(s.image[0], s.image[1])) << "two seeds drew the same noise";
  const double spread = (s.image - post.mean).std().item<double>();
  EXPECT_NEAR(spread, 0.5, 0.05);  // mean + std·ε with std 0.5
}

}  // namespace
}  // namespace cellflux
