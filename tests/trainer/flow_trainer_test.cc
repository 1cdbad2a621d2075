#include "trainer/flow_trainer.h"

#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "common/util/logging.h"
#include "gtest/gtest.h"
#include "tests/testing/small_model_config.h"
#include "trainer/flow_examples.h"
#include "trainer/latent_cache.h"

namespace cellflux::trainer {
namespace {

namespace fs = std::filesystem;

ModelConfig TinyConfig() { return cellflux::testing::SmallModelConfig(); }

// A cache where perturbation y shifts every latent by (y + 1) · 0.5: learnable, known answer.
// Two plates; 4 control wells and 8 perturbed wells per plate; 2 crops per well.
std::string MakeCache(const std::string& dir, bool poison = false) {
  fs::remove_all(dir);
  torch::manual_seed(11);
  LatentCacheWriter w(dir, /*rows_per_shard=*/16);
  LatentIndex index;
  std::vector<torch::Tensor> genes;
  int64_t gene_row = 0;
  for (int plate = 0; plate < 2; ++plate) {
    const std::string p = "P" + std::to_string(plate);
    for (int i = 0; i < 12; ++i) {
      const bool control = i < 4;
      const int64_t y = control ? -1 : i % 4;
      const double shift = control ? 0.0 : 0.5 * (y + 1);
      torch::Tensor mean = torch::randn({2, 20, 8, 8}) * 0.3 + shift;
      if (poison && plate == 1 && i == 7) mean.fill_(std::numeric_limits<float>::quiet_NaN());
      auto first = w.AppendImages(mean, torch::full({2, 20, 8, 8}, 0.05));
      const int64_t wi = static_cast<int64_t>(index.wells.size());
      index.wells.push_back({p, "A" + std::to_string(i), {*first, *first + 1}});
      genes.push_back(torch::randn({1, 8}) * 0.3 + shift);
      if (control) {
        index.cp_controls[p].push_back(wi);
        index.l1000_controls["L" + p].push_back(gene_row);
      } else {
        index.pairs.push_back({y, wi, gene_row, "train", p, "L" + p});
      }
      ++gene_row;
    }
  }
  torch::Tensor g = torch::cat(genes);
  EXPECT_TRUE(w.Finish(index, g, torch::randn({g.size(0), 16})).ok());
  return dir;
}

FlowTrainerOptions Options(int64_t steps, int64_t global_batch) {
  FlowTrainerOptions o;
  o.config.steps = steps;
  o.config.global_batch = global_batch;
  o.config.micro_batch = 4;
  o.config.lr = 3e-3;
  o.config.checkpoint_every = 1000;
  o.config.val_every = 1000;
  o.ema_decay = 0.9;
  o.seed = 5;
  o.show_progress = false;
  return o;
}

CellFluxModel NewModel() {
  torch::manual_seed(0);
  return CellFluxModel(TinyConfig());
}

class FlowTrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetMinLogLevel(LogLevel::kWARNING);
    unsetenv("WORLD_SIZE");
    unsetenv("RANK");
    dir_ = (fs::temp_directory_path() / ("cellflux_flow_trainer_" + std::to_string(getpid())))
               .string();
    MakeCache(dir_);
    auto cache = LatentCache::Open(dir_);
    ASSERT_TRUE(cache.ok()) << cache.status();
    cache_ = std::move(*cache);
    auto d = Distributed::FromEnv(torch::kCPU);
    ASSERT_TRUE(d.ok());
    dist_ = std::move(*d);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
  std::unique_ptr<LatentCache> cache_;
  std::unique_ptr<Distributed> dist_;
};

TEST_F(FlowTrainerTest, LossFalls) {
  FlowTrainer trainer(NewModel(), cache_.get(), dist_.get(), Options(40, 8));
  ASSERT_TRUE(trainer.Run({}).ok());
  const auto& h = trainer.history();
  ASSERT_EQ(h.size(), 40u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += h[i].loss / 5;
  for (int i = 35; i < 40; ++i) last += h[i].loss / 5;
  EXPECT_LT(last, 0.7 * first) << "loss " << first << " -> " << last;
  EXPECT_GT(h.back().gene_loss, 0.0);
}

TEST_F(FlowTrainerTest, Bfloat16AutocastTrainsWithFloat32MasterWeightsAndEma) {
  FlowTrainerOptions o = Options(40, 8);
  o.precision = Precision::kBf16;
  FlowTrainer bf16(NewModel(), cache_.get(), dist_.get(), o);
  ASSERT_TRUE(bf16.Run({}).ok());
  const auto& h = bf16.history();
  ASSERT_EQ(h.size(), 40u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += h[i].loss / 5;
  for (int i = 35; i < 40; ++i) last += h[i].loss / 5;
  EXPECT_LT(last, 0.7 * first) << "bf16 loss " << first << " -> " << last;
  EXPECT_GT(h.back().samples_per_second, 0.0);
  FlowTrainerState state = bf16.State();
  for (const auto& [name, t] : state.raw) EXPECT_EQ(t.scalar_type(), torch::kFloat32) << name;
  for (const auto& [name, t] : state.ema) EXPECT_EQ(t.scalar_type(), torch::kFloat32) << name;
  for (const auto& [name, t] : state.optimizer) {
    if (t.is_floating_point()) EXPECT_EQ(t.scalar_type(), torch::kFloat32) << name;
  }
  // Same data and seed in fp32: the second step's loss (the first one's adaLN-Zero output is
  // exactly 0 in any precision) agrees to bfloat16 accuracy but not in its bits (it really ran in
  // bfloat16), and autocast was left off after the run.
  FlowTrainer fp32(NewModel(), cache_.get(), dist_.get(), Options(2, 8));
  ASSERT_TRUE(fp32.Run({}).ok());
  EXPECT_EQ(fp32.history()[0].loss, h[0].loss);
  EXPECT_NE(fp32.history()[1].loss, h[1].loss);
  EXPECT_NEAR(fp32.history()[1].loss, h[1].loss, 0.02 * h[1].loss);
  torch::nn::Linear probe(4, 4);
  EXPECT_EQ(probe->forward(torch::randn({1, 4})).scalar_type(), torch::kFloat32);
}

TEST_F(FlowTrainerTest, ResumeIsBitIdentical) {
  FlowTrainer straight(NewModel(), cache_.get(), dist_.get(), Options(6, 8));
  ASSERT_TRUE(straight.Run({}).ok());

  FlowTrainer first(NewModel(), cache_.get(), dist_.get(), Options(3, 8));
  ASSERT_TRUE(first.Run({}).ok());
  FlowTrainerState state = first.State();
  FlowTrainer second(NewModel(), cache_.get(), dist_.get(), Options(6, 8));
  ASSERT_TRUE(second.Restore(state).ok());
  ASSERT_TRUE(second.Run({}).ok());

  TensorMap a = straight.State().raw, b = second.State().raw;
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
  TensorMap ea = straight.State().ema, eb = second.State().ema;
  for (const auto& [name, t] : ea) EXPECT_TRUE(torch::equal(t, eb.at(name))) << "ema " << name;
}

TEST_F(FlowTrainerTest, NonFiniteLossStopsWithTheStep) {
  std::string bad = dir_ + "_nan";
  MakeCache(bad, /*poison=*/true);
  auto cache = LatentCache::Open(bad);
  ASSERT_TRUE(cache.ok());
  FlowTrainer trainer(NewModel(), cache->get(), dist_.get(), Options(50, 16));
  int checkpoints = 0;
  FlowHooks hooks;
  hooks.checkpoint = [&](int64_t, bool) {
    ++checkpoints;
    return absl::OkStatus();
  };
  absl::Status s = trainer.Run(hooks);
  fs::remove_all(bad);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(s.message()).find("non-finite loss at step"), std::string::npos) << s;
  EXPECT_EQ(checkpoints, 0) << "no checkpoint may be written from a non-finite step";
}

// Two Gloo ranks (fork) with global batch 8 end with identical parameters, equal (1e-5) to one
// process trained on the same global batch.
TEST_F(FlowTrainerTest, TwoRanksMatchOneProcess) {
  const std::string out = dir_ + "_rank1.safetensors";
  const int port = 29900 + (getpid() % 90);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    setenv("WORLD_SIZE", "2", 1);
    setenv("RANK", "1", 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
    auto d = Distributed::FromEnv(torch::kCPU);
    if (!d.ok()) _exit(2);
    FlowTrainer t(NewModel(), cache_.get(), d->get(), Options(3, 8));
    if (!t.Run({}).ok()) _exit(3);
    _exit(SaveSafetensors(out, t.State().raw).ok() ? 0 : 4);
  }
  setenv("WORLD_SIZE", "2", 1);
  setenv("RANK", "0", 1);
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
  auto d = Distributed::FromEnv(torch::kCPU);
  unsetenv("WORLD_SIZE");
  unsetenv("RANK");
  ASSERT_TRUE(d.ok()) << d.status();
  FlowTrainer rank0(NewModel(), cache_.get(), d->get(), Options(3, 8));
  ASSERT_TRUE(rank0.Run({}).ok());
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  auto rank1 = LoadSafetensors(out);
  ASSERT_TRUE(rank1.ok());
  fs::remove(out);

  FlowTrainer single(NewModel(), cache_.get(), dist_.get(), Options(3, 8));
  ASSERT_TRUE(single.Run({}).ok());
  TensorMap r0 = rank0.State().raw, one = single.State().raw;
  for (const auto& [name, t] : r0) {
    EXPECT_TRUE(torch::equal(t, rank1->at(name))) << "ranks differ at " << name;
    EXPECT_TRUE(torch::allclose(t, one.at(name), /*rtol=*/1e-5, /*atol=*/1e-5))
        << "rank 0 vs single process at " << name;
  }
}

// The examples behind validation and eval: a repeated pair position draws another control (so a
// small split still gives many samples), its first draw is what a single draw was, and
// control_wells names the well each source latent came from.
TEST_F(FlowTrainerTest, PairsBatchRepeatsDrawAgainAndNameTheirControls) {
  FlowExamples examples(cache_.get(),
                        FlowExampleOptions{"train", 5, 0.0, 4, /*sample_posterior=*/false,
                                           /*centre_crop_only=*/true});
  FlowBatch once = examples.PairsBatch({3}, /*salt=*/7, torch::kCPU);
  FlowBatch many = examples.PairsBatch({3, 3, 3, 3, 3, 3, 3, 3}, /*salt=*/7, torch::kCPU);
  ASSERT_EQ(many.control_wells.size(), 8u);
  EXPECT_TRUE(torch::equal(many.z0.image[0], once.z0.image[0]));
  EXPECT_EQ(many.control_wells[0], once.control_wells[0]);
  std::set<int64_t> controls(many.control_wells.begin(), many.control_wells.end());
  EXPECT_GT(controls.size(), 1u)
      << "8 draws of one pair all used the same of its plate's 4 controls";
  EXPECT_FALSE(torch::equal(many.t[0], many.t[1])) << "repeats must not reuse the seed";
  for (size_t i = 0; i < many.control_wells.size(); ++i) {
    // Without posterior sampling the source is exactly the cached mean of the control's crop 0.
    torch::Tensor mean, std;
    cache_->GatherImages({cache_->index().wells[many.control_wells[i]].crop_rows[0]}, &mean, &std);
    EXPECT_TRUE(torch::equal(many.z0.image[i], mean[0])) << "row " << i;
  }
}

TEST_F(FlowTrainerTest, PosteriorSamplingIsASwitch) {
  for (bool sample : {true, false}) {
    FlowExamples examples(
        cache_.get(), FlowExampleOptions{"train", 5, 0.0, 4, sample, /*centre_crop_only=*/true});
    FlowBatch b = examples.PairsBatch({0, 1}, /*salt=*/1, torch::kCPU);
    torch::Tensor mean, std;
    cache_->GatherImages(
        {cache_->index().wells[cache_->index().pairs[examples.pair_index(0)].well].crop_rows[0]},
        &mean, &std);
    EXPECT_EQ(torch::equal(b.z1.image[0], mean[0]), !sample) << "sample_posterior=" << sample;
  }
}

// The model config's flow.source_noise_sigma is part of training (it was only applied by
// DrawSource at inference, so a σ > 0 model was sampled from sources it never trained on).
TEST_F(FlowTrainerTest, SourceNoiseOfTheModelConfigIsTrainedOn) {
  FlowExampleOptions plain{
      "train", 5, 0.0, 4, /*sample_posterior=*/false, /*centre_crop_only=*/true};
  FlowExampleOptions noisy = plain;
  noisy.source_noise_sigma = 0.3;
  FlowBatch a = FlowExamples(cache_.get(), plain).PairsBatch({0, 1, 2, 3}, 9, torch::kCPU);
  FlowBatch b = FlowExamples(cache_.get(), noisy).PairsBatch({0, 1, 2, 3}, 9, torch::kCPU);
  FlowBatch b_again = FlowExamples(cache_.get(), noisy).PairsBatch({2}, 9, torch::kCPU);
  EXPECT_NEAR((b.z0.image - a.z0.image).std().item<double>(), 0.3, 0.03);
  EXPECT_NEAR((b.z0.gene - a.z0.gene).std().item<double>(), 0.3, 0.1);
  EXPECT_TRUE(torch::equal(b.z1.image, a.z1.image));  // targets untouched
  EXPECT_TRUE(torch::equal(b_again.z0.image[0], b.z0.image[2]))
      << "noise must be per sample, not per batch";

  auto first_loss = [&](double sigma) {
    ModelConfig c = TinyConfig();
    c.flow.source_noise_sigma = sigma;
    torch::manual_seed(0);
    FlowTrainer trainer(CellFluxModel(c), cache_.get(), dist_.get(), Options(1, 8));
    EXPECT_TRUE(trainer.Run({}).ok());
    return trainer.history().at(0).loss;
  };
  EXPECT_NE(first_loss(0.0), first_loss(0.5));
}

// The eval's Δ reference is the control as it is (its latents without the source noise, which
// only seeds the flow). Decoding the noisy source darkened the DNA background by ~5 SD of the
// control wells, and every predicted Δ counted that as an effect of the compound.
TEST_F(FlowTrainerTest, BatchKeepsTheControlWithoutTheSourceNoise) {
  FlowExampleOptions plain{
      "train", 5, 0.0, 4, /*sample_posterior=*/false, /*centre_crop_only=*/true};
  FlowExampleOptions noisy = plain;
  noisy.source_noise_sigma = 0.3;
  FlowBatch a = FlowExamples(cache_.get(), plain).DrawsBatch({{0, 0}, {1, 2}}, 7, torch::kCPU);
  FlowBatch b = FlowExamples(cache_.get(), noisy).DrawsBatch({{0, 0}, {1, 2}}, 7, torch::kCPU);
  ASSERT_TRUE(b.control.image.defined());
  EXPECT_TRUE(torch::equal(b.control.image, a.z0.image));
  EXPECT_TRUE(torch::equal(b.control.gene, a.z0.gene));
  EXPECT_TRUE(torch::equal(a.control.image, a.z0.image));  // no noise: the source itself
  EXPECT_FALSE(torch::equal(b.z0.image, b.control.image));
}

}  // namespace
}  // namespace cellflux::trainer
