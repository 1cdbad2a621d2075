// The trainer's stages end to end, as `cellflux-train all` runs them, on a small synthetic
// prepared dataset with the tiny model: every stage writes what the next one and the server read,
// a finished stage is skipped on re-run, and the gene autoencoder keeps its best held-out weights.
#include "trainer/stages.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/data/manifest.h"
#include "common/models/gene_autoencoder.h"
#include "common/torch/tensors.h"
#include "common/util/files.h"
#include "common/util/logging.h"
#include "nlohmann/json.hpp"
#include "tests/testing/tiny_dataset.h"
#include "trainer/distributed.h"

namespace cellflux::trainer {
namespace {

namespace fs = std::filesystem;

nlohmann::json ReadJson(const std::string& path) {
  auto text = ReadFile(path);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? nlohmann::json::parse(*text) : nlohmann::json();
}

class StagesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SetMinLogLevel(LogLevel::kWARNING);
    root_ = new std::string(
        cellflux::testing::UniqueTempDir(::testing::TempDir(), "cellflux_stages_test"));
    fs::remove_all(*root_);
    auto dir = cellflux::testing::MakeTinyPreparedDataset(*root_);
    ASSERT_TRUE(dir.ok()) << dir.status();
    data_dir_ = new std::string(*dir);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete data_dir_;
    delete root_;
  }

  StageContext Context(const std::string& work) {
    TrainConfig c;
    c.model_config = "configs/tiny.json";
    c.data_dir = *data_dir_;
    c.work_dir = work;
    c.gene_ae.steps = 300;  // far past the point where ~40 rows are memorised
    c.gene_ae.batch_size = 32;
    c.gene_ae.lr = 3e-3;
    c.vae.steps = 3;
    c.vae.batch_size = 4;
    c.encode.crops_per_site = 1;
    c.encode.batch_size = 16;
    c.flow.steps = 4;
    c.flow.global_batch = 8;
    c.flow.micro_batch = 8;
    c.flow.checkpoint_every = 2;
    c.flow.val_every = 4;
    c.flow.val_pairs = 4;
    c.flow.val_num_steps = 2;
    c.flow.log_every = 2;
    c.eval.num_steps = 2;
    c.eval.max_pairs = 8;
    c.eval.samples_per_pair = 2;
    c.eval.sample_sizes = {4};
    c.eval.grid_perturbations = 2;
    c.eval.batch_size = 8;
    EXPECT_TRUE(c.Validate().ok()) << c.Validate();
    auto dist = Distributed::FromEnv(torch::kCPU);
    EXPECT_TRUE(dist.ok()) << dist.status();
    dist_ = *std::move(dist);
    auto ctx = MakeStageContext(c, torch::kCPU, dist_.get());
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return *std::move(ctx);
  }

  static std::string* root_;
  static std::string* data_dir_;
  std::unique_ptr<Distributed> dist_;
};

std::string* StagesTest::root_ = nullptr;
std::string* StagesTest::data_dir_ = nullptr;

TEST_F(StagesTest, GeneAeKeepsTheBestHeldOutWeights) {
  const std::string work = *root_ + "/gene_ae_run";
  StageContext ctx = Context(work);
  ASSERT_TRUE(RunGeneAeStage(ctx).ok());
  nlohmann::json m = ReadJson(work + "/gene_ae/metrics.json");
  ASSERT_TRUE(m.contains("holdout_row_ids")) << m.dump();
  const int64_t best_step = m["best_step"];
  EXPECT_GT(best_step, 0);
  EXPECT_LT(best_step, 300) << "no overfitting on 40 rows in 300 steps at lr 3e-3?";
  EXPECT_LT(m["reconstruction_mae_holdout"].get<double>(),
            m["reconstruction_mae_untrained_holdout"].get<double>());

  // The saved weights are the best ones: their held-out error is the reported best.
  auto manifest = data::LoadManifest(*data_dir_);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  std::vector<int64_t> rows = m["holdout_row_ids"].get<std::vector<int64_t>>();
  const int64_t g = static_cast<int64_t>(manifest->gene_ids.size());
  torch::Tensor all = torch::from_blob(manifest->expression.data(),
                                       {static_cast<int64_t>(manifest->expression_rows.size()), g},
                                       torch::kFloat32);
  torch::Tensor holdout = all.index_select(0, torch::tensor(rows, torch::kInt64)).clone();
  GeneAutoencoder ae(ctx.model.gene_ae);
  auto weights = LoadSafetensors(work + "/gene_ae/gene_autoencoder.safetensors");
  ASSERT_TRUE(weights.ok()) << weights.status();
  ASSERT_TRUE(LoadStateDict(*ae, *weights, "gene_autoencoder.safetensors").ok());
  ae->eval();
  EXPECT_NEAR(StandardizedMae(ae, holdout), m["reconstruction_mae_holdout"].get<double>(), 1e-5);
}

TEST_F(StagesTest, EveryStageRunsAndFeedsTheNext) {
  const std::string work = *root_ + "/full_run";
  StageContext ctx = Context(work);
  ctx.config.gene_ae.steps = 20;
  ASSERT_TRUE(RunGeneAeStage(ctx).ok());
  absl::Status s = RunVaeStage(ctx);
  ASSERT_TRUE(s.ok()) << s;
  s = RunEncodeStage(ctx);
  ASSERT_TRUE(s.ok()) << s;
  s = RunFlowStage(ctx, /*resume=*/true);  // as scripts/demo.sh runs it: nothing to resume yet
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(fs::exists(CheckpointsRoot(ctx) + "/latest")) << CheckpointsRoot(ctx);
  s = RunEvalStage(ctx, "");
  ASSERT_TRUE(s.ok()) << s;
  nlohmann::json eval = ReadJson(work + "/eval/metrics.json");
  EXPECT_FALSE(eval.empty());
  EXPECT_TRUE(fs::exists(work + "/eval/figure.png"));
  // Each generated sample is written beside its real target and the control it started from, and
  // the controls' own score is the image baseline.
  const int pairs = eval["run"].value("pairs", 0), samples = eval["run"].value("samples", 0);
  ASSERT_GT(pairs, 0);
  EXPECT_EQ(samples, 2 * pairs);  // eval.samples_per_pair = 2
  for (const char* sub : {"real", "fake", "control"}) {
    const auto files =
        std::distance(fs::directory_iterator(work + "/eval/" + sub), fs::directory_iterator());
    EXPECT_EQ(files, samples) << sub;
  }
  const std::string fd = "image_fd_fallback_" + std::to_string(samples);
  ASSERT_TRUE(eval.contains(fd)) << eval.dump();
  EXPECT_TRUE(eval[fd].contains("model")) << eval.dump();
  EXPECT_TRUE(eval[fd].contains("control")) << eval.dump();
  EXPECT_TRUE(eval["image_kd_fallback_x100_" + std::to_string(samples)].contains("control"))
      << eval.dump();

  // Re-running a finished stage is a no-op (its stamp matches): the weights file is untouched.
  const auto before = fs::last_write_time(work + "/vae/image_vae.safetensors");
  ASSERT_TRUE(RunVaeStage(ctx).ok());
  EXPECT_EQ(fs::last_write_time(work + "/vae/image_vae.safetensors"), before);
}

// Issue 19.1: `flow --resume` never discards progress. With `latest` empty, dangling or naming a
// directory without config.json it used to log "starting from step 0" and replace the intact
// step directories.
TEST_F(StagesTest, FlowResumeNeverDiscardsProgress) {
  const std::string work = *root_ + "/resume_run";
  StageContext ctx = Context(work);
  ctx.config.gene_ae.steps = 5;
  ctx.config.flow.val_every = 1000;  // validation only at the end: keep this test short
  for (auto* stage : {&RunGeneAeStage, &RunVaeStage, &RunEncodeStage}) {
    absl::Status s = (*stage)(ctx);
    ASSERT_TRUE(s.ok()) << s;
  }
  absl::Status s = RunFlowStage(ctx, /*resume=*/true);
  ASSERT_TRUE(s.ok()) << s;
  const std::string root = CheckpointsRoot(ctx);
  const std::string step2 = root + "/step-0000002", step4 = root + "/step-0000004";
  ASSERT_TRUE(fs::exists(step2 + "/config.json"));
  ASSERT_TRUE(fs::exists(step4 + "/config.json"));
  const auto written2 = fs::last_write_time(step2 + "/model.safetensors");
  const auto written4 = fs::last_write_time(step4 + "/model.safetensors");

  // A fresh run would overwrite them: refused, nothing touched.
  s = RunFlowStage(ctx, /*resume=*/false);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("--resume"));

  // latest empty: resume from step 4 (the newest that loads), so step 2 and 4 are untouched and
  // the run continues to step 6.
  ASSERT_TRUE(WriteFileAtomic(root + "/latest", "").ok());
  ctx.config.flow.steps = 6;
  s = RunFlowStage(ctx, /*resume=*/true);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(fs::last_write_time(step2 + "/model.safetensors"), written2);
  EXPECT_EQ(fs::last_write_time(step4 + "/model.safetensors"), written4);
  EXPECT_TRUE(fs::exists(root + "/step-0000006/config.json"));
  auto latest = ReadFile(root + "/latest");
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(*latest, "step-0000006\n");

  // latest names the newest step directory, which lost its config.json: a clear error, and
  // nothing is overwritten.
  fs::remove(root + "/step-0000006/config.json");
  ctx.config.flow.steps = 8;
  s = RunFlowStage(ctx, /*resume=*/true);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("step-0000006"));
  EXPECT_EQ(fs::last_write_time(step4 + "/model.safetensors"), written4);
  EXPECT_FALSE(fs::exists(root + "/step-0000008"));
}

// After the VAE (and so the latent cache) changed, --resume must not continue — or, with the steps
// done, silently keep — a flow trained on the old latents (the demo did, after vae.steps changed).
TEST_F(StagesTest, FlowResumeRefusesCheckpointsOfAnotherLatentCache) {
  const std::string work = *root_ + "/relatent_run";
  StageContext ctx = Context(work);
  ctx.config.gene_ae.steps = 5;
  ctx.config.flow.steps = 2;
  ctx.config.flow.val_every = 1000;
  for (auto* stage : {&RunGeneAeStage, &RunVaeStage, &RunEncodeStage}) {
    ASSERT_TRUE((*stage)(ctx).ok());
  }
  ASSERT_TRUE(RunFlowStage(ctx, /*resume=*/true).ok());
  const std::string root = CheckpointsRoot(ctx);
  ASSERT_TRUE(fs::exists(root + "/latents/stamp.json"));
  // Same latents: resuming (steps already done) is fine.
  ASSERT_TRUE(RunFlowStage(ctx, /*resume=*/true).ok());

  ctx.config.vae.steps = 4;  // a new VAE, a new latent cache
  ASSERT_TRUE(RunVaeStage(ctx).ok());
  ASSERT_TRUE(RunEncodeStage(ctx).ok());
  absl::Status s = RunFlowStage(ctx, /*resume=*/true);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("latent cache"));
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr(root));

  // Moved away: a fresh run on the new latents.
  fs::rename(root, work + "/old-checkpoints");
  EXPECT_TRUE(RunFlowStage(ctx, /*resume=*/true).ok());
}

// vae.loss is one of the VAE's inputs: changing it trains the VAE again (it kept the old one).
TEST_F(StagesTest, VaeLossIsPartOfTheVaeStamp) {
  const std::string work = *root_ + "/vae_loss_run";
  StageContext ctx = Context(work);
  ASSERT_TRUE(RunVaeStage(ctx).ok());
  const std::string mse = StampInputs(work + "/vae");
  ASSERT_FALSE(mse.empty());
  ASSERT_TRUE(RunVaeStage(ctx).ok());
  EXPECT_EQ(StampInputs(work + "/vae"), mse) << "same inputs: up to date";
  ctx.config.vae.loss = "l1";
  ASSERT_TRUE(RunVaeStage(ctx).ok());
  EXPECT_NE(StampInputs(work + "/vae"), mse);
}

// Issue 19.1's audit of the stamps: a stage that starts redoing its work drops its stamp first,
// so an interrupted redo cannot leave the old stamp beside half-new outputs.
TEST_F(StagesTest, AnInterruptedRedoLeavesNoStaleStamp) {
  const std::string work = *root_ + "/stamp_run";
  StageContext ctx = Context(work);
  ctx.config.gene_ae.steps = 2;
  ASSERT_TRUE(RunGeneAeStage(ctx).ok());
  ASSERT_TRUE(fs::exists(work + "/gene_ae/stamp.json"));
  // Redo with other inputs, interrupted once underway (the expression matrix is unreadable).
  const std::string data = *root_ + "/stamp_data";
  fs::copy(*data_dir_, data, fs::copy_options::recursive);
  fs::remove(data + "/expression.f32");
  ctx.config.data_dir = data;
  ctx.config.gene_ae.steps = 3;
  EXPECT_FALSE(RunGeneAeStage(ctx).ok());
  EXPECT_FALSE(fs::exists(work + "/gene_ae/stamp.json"));
}

}  // namespace
}  // namespace cellflux::trainer
