// CellFluxModel::DrawSource: the source latent z0 the sampler starts from, per seed.
#include "common/models/cellflux_model.h"

#include <torch/torch.h>

#include "common/models/config.h"
#include "common/torch/random.h"
#include "gtest/gtest.h"
#include "tests/testing/small_model_config.h"

namespace cellflux {
namespace {

ModelConfig SmallConfig(bool sample_posterior) {
  ModelConfig c = cellflux::testing::SmallModelConfig();
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

// Issue 19.3: seeds s and s + 2³² drew identical samples (LibTorch seeds its generator with 32
// bits) while responses reported different seeds.
TEST(CellFluxModelTest, DrawSourceUsesAll64BitsOfTheSeed) {
  torch::manual_seed(0);
  LatentPosterior post{torch::randn({1, 20, 8, 8}), torch::full({1, 20, 8, 8}, 0.5)};
  torch::Tensor gene = torch::randn({1, 8});
  CellFluxModel model(SmallConfig(/*sample_posterior=*/true));
  const uint64_t s = 12345;
  JointLatent z = model->DrawSource(post, gene, {s, s + (uint64_t{1} << 32), s, ~uint64_t{0}});
  EXPECT_FALSE(torch::equal(z.image[0], z.image[1])) << "s and s + 2^32 collide";
  EXPECT_TRUE(torch::equal(z.image[0], z.image[2])) << "the same seed must draw the same noise";
  EXPECT_FALSE(torch::equal(z.image[0], z.image[3]));
}

TEST(CpuGeneratorTest, SeedsDifferingAbove32BitsDrawDifferentStreams) {
  const uint64_t s = 7;
  at::Generator a = MakeCpuGenerator(s), b = MakeCpuGenerator(s + (uint64_t{1} << 32)),
                c = MakeCpuGenerator(s);
  torch::Tensor x = torch::randn({64}, a), y = torch::randn({64}, b), z = torch::randn({64}, c);
  EXPECT_FALSE(torch::equal(x, y));
  EXPECT_TRUE(torch::equal(x, z));
  EXPECT_EQ(MakeCpuGenerator(s + (uint64_t{1} << 32)).current_seed(), s + (uint64_t{1} << 32));
  // Still standard normal draws.
  torch::Tensor big = torch::randn({20000}, MakeCpuGenerator(~uint64_t{0}));
  EXPECT_NEAR(big.mean().item<double>(), 0.0, 0.05);
  EXPECT_NEAR(big.std().item<double>(), 1.0, 0.05);
}

}  // namespace
}  // namespace cellflux
