// The eval stage on a small synthetic run in which compounds move genes (issue 15): a trained
// model's predicted gene Δ correlates with the real Δ of held-out replicates better than the
// control-as-prediction baseline (whose Δ is 0), and an untrained model's does not. Also checks
// the files and the metrics.json shape the demo and `cellflux-tool evaluate` read.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <string>

#include "absl/strings/str_format.h"
#include "common/chem/chem.h"
#include "common/data/prepare.h"
#include "common/data/synth.h"
#include "common/util/files.h"
#include "common/util/logging.h"
#include "common/util/status_macros.h"
#include "nlohmann/json.hpp"
#include "tests/testing/tiny_dataset.h"
#include "trainer/distributed.h"
#include "trainer/stages.h"

namespace cellflux::trainer {
namespace {

namespace fs = std::filesystem;

class EvalStageTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SetMinLogLevel(LogLevel::kWARNING);
    root_ = new std::string(
        cellflux::testing::UniqueTempDir(::testing::TempDir(), "cellflux_eval_stage_test"));
    fs::remove_all(*root_);
    SynthOptions s;
    s.plates = 2;
    s.compounds = 16;
    s.image_width = 64;
    s.image_height = 64;
    s.sites = 1;
    s.wells_per_plate = 56;
    s.min_dmso_wells = 8;
    s.l1000_plates = 2;
    s.l1000_replicates = 3;
    s.l1000_dmso_per_plate = 8;
    s.seed = 5;
    ASSERT_TRUE(WriteSynthDataset(s, *root_ + "/synth").ok());
    data::PrepareOptions p;
    p.images_dir = *root_ + "/synth/images";
    p.platemaps_dir = *root_ + "/synth/platemaps";
    p.l1000_path = *root_ + "/synth/l1000/replicate_level_l1k.csv";
    p.out_dir = *root_ + "/prepared";
    p.test_perturbations = 4;
    p.val_fraction = 0.0;
    p.split_level = "pair";
    auto summary = data::PrepareDataset(p);
    ASSERT_TRUE(summary.ok()) << summary.status();
    // The same plates with whole compounds held out (issue 18): unseen by the model.
    p.out_dir = *root_ + "/prepared-unseen";
    p.split_level = "perturbation";
    p.parse_structure =
        [](const std::string& smiles) -> absl::StatusOr<data::PrepareOptions::StructureInfo> {
      CF_ASSIGN_OR_RETURN(chem::Structure st, chem::ParseStructure(smiles));
      return data::PrepareOptions::StructureInfo{st.canonical_smiles, st.scaffold};
    };
    summary = data::PrepareDataset(p);
    ASSERT_TRUE(summary.ok()) << summary.status();
    ASSERT_TRUE(summary->without_structure.empty()) << summary->ToText();
    // Pairs held out for validation too: what eval.guidance_candidates chooses on.
    p.out_dir = *root_ + "/prepared-val";
    p.split_level = "pair";
    p.val_fraction = 0.25;
    summary = data::PrepareDataset(p);
    ASSERT_TRUE(summary.ok()) << summary.status();
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete root_;
  }

  // Trains gene AE, a barely trained VAE (images are not what this test scores), the latent cache
  // and `flow_steps` flow steps at `lr`, then evaluates; returns metrics.json.
  // `reuse` names an earlier run whose gene AE, VAE and latent cache are copied first (their stamps
  // match, so those stages are skipped: the flow is all that differs).
  nlohmann::json TrainAndEvaluate(const std::string& name, int64_t flow_steps, double lr,
                                  const std::string& reuse = "",
                                  const std::string& prepared = "prepared",
                                  const std::string& model_config = "configs/tiny.json",
                                  const std::function<void(TrainConfig&)>& tweak = {}) {
    for (const char* stage : {"gene_ae", "vae", "latents"}) {
      if (reuse.empty()) break;
      fs::create_directories(*root_ + "/" + name);
      fs::copy(*root_ + "/" + reuse + "/" + stage, *root_ + "/" + name + "/" + stage,
               fs::copy_options::recursive);
    }
    TrainConfig c;
    c.model_config = model_config;
    c.data_dir = *root_ + "/" + prepared;
    c.work_dir = *root_ + "/" + name;
    c.gene_ae.steps = 300;
    c.gene_ae.batch_size = 64;
    c.gene_ae.lr = 1e-3;
    c.vae.steps = 2;
    c.vae.batch_size = 4;
    c.encode.crops_per_site = 1;
    c.flow.steps = flow_steps;
    c.flow.global_batch = 32;
    c.flow.micro_batch = 32;
    c.flow.lr = lr;
    c.flow.beta = 3.0;  // as configs/demo.yaml: the gene loss is noisy, its weight matters
    c.flow.ema_decay = 0.9;
    c.flow.checkpoint_every = flow_steps;
    c.flow.val_every = flow_steps;
    c.flow.val_pairs = 4;
    c.flow.val_num_steps = 2;
    c.flow.log_every = flow_steps;
    c.eval.num_steps = 10;
    c.eval.samples_per_pair = 4;
    c.eval.sample_sizes = {16};
    c.eval.grid_perturbations = 2;
    c.eval.crops_per_site = 1;
    c.eval.ground_truth = *root_ + "/synth/ground_truth.json";
    if (tweak) tweak(c);
    EXPECT_TRUE(c.Validate().ok()) << c.Validate();
    auto dist = Distributed::FromEnv(torch::kCPU);
    EXPECT_TRUE(dist.ok()) << dist.status();
    dist_ = *std::move(dist);
    auto ctx = MakeStageContext(c, torch::kCPU, dist_.get());
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    for (auto stage : {RunGeneAeStage, RunVaeStage, RunEncodeStage}) {
      absl::Status s = stage(*ctx);
      EXPECT_TRUE(s.ok()) << s;
    }
    absl::Status s = RunFlowStage(*ctx, /*resume=*/false);
    EXPECT_TRUE(s.ok()) << s;
    eval_status_ = RunEvalStage(*ctx, CheckpointsRoot(*ctx));
    if (!eval_status_.ok()) return nlohmann::json();
    auto text = ReadFile(c.work_dir + "/eval/metrics.json");
    EXPECT_TRUE(text.ok()) << text.status();
    return text.ok() ? nlohmann::json::parse(*text) : nlohmann::json();
  }

  static std::string* root_;
  std::unique_ptr<Distributed> dist_;
  absl::Status eval_status_;  // of the last TrainAndEvaluate
};

std::string* EvalStageTest::root_ = nullptr;

TEST_F(EvalStageTest, TrainedModelBeatsControlOnGenePearsonDeltaAndUntrainedDoesNot) {
  const nlohmann::json trained = TrainAndEvaluate("trained", 500, 1e-3);
  ASSERT_TRUE(eval_status_.ok()) << eval_status_;
  ASSERT_TRUE(trained.contains("gene_pearson_delta")) << trained.dump();
  const auto& g = trained["gene_pearson_delta"];
  EXPECT_EQ(g["control"].get<double>(), 0.0) << "the control's Δ is 0: no correlation";
  EXPECT_GT(g["model"].get<double>(), 0.1) << trained.dump();
  // Paired over the held-out compounds: the whole interval of model − control is above 0.
  EXPECT_GT(trained["model_minus_baseline_ci95"]["gene_pearson_delta"]["control"][1].get<double>(),
            0.0)
      << trained.dump();
  EXPECT_GT(trained["gene_truth_pearson"]["model"].get<double>(), 0.2) << trained.dump();

  // Same pipeline, flow weights left at their initialisation (lr 0).
  const nlohmann::json untrained = TrainAndEvaluate("untrained", 1, 0.0, "trained");
  ASSERT_TRUE(eval_status_.ok()) << eval_status_;
  ASSERT_TRUE(untrained.contains("gene_pearson_delta")) << untrained.dump();
  EXPECT_LT(untrained["gene_pearson_delta"]["model"].get<double>(), 0.1) << untrained.dump();
  EXPECT_LT(untrained["gene_pearson_delta"]["model"].get<double>(), g["model"].get<double>() - 0.1);

  // What the demo and `cellflux-tool evaluate` read.
  for (const char* f : {"metrics.json", "per_compound.csv", "compounds.json", "report.html",
                        "figure.png", "grid/labels.txt"}) {
    EXPECT_TRUE(fs::exists(*root_ + "/trained/eval/" + f)) << f;
  }
  EXPECT_TRUE(trained["run"].contains("checkpoint"));
  for (const char* m : {"gene_mae", "morph_pearson_delta", "retrieval_genes_mean_rank",
                        "retrieval_both_top1", "morph_frechet"}) {
    EXPECT_TRUE(trained.contains(m)) << m;
  }
  EXPECT_TRUE(trained["gene_mae"].contains("train_mean"));
  EXPECT_TRUE(trained["gene_mae"].contains("replicate"));
}

// Issue 18: held-out compounds are unseen; a structure model conditions them on their structure,
// and the nearest_seen baseline (the most similar training compound's effect) sits beside it.
TEST_F(EvalStageTest, UnseenCompoundsGetTheirStructureAndTheNearestSeenBaseline) {
  const nlohmann::json j =
      TrainAndEvaluate("unseen-chem", 100, 1e-3, "", "prepared-unseen", "configs/tiny-chem.json");
  ASSERT_TRUE(eval_status_.ok()) << eval_status_;
  ASSERT_TRUE(j.contains("run")) << j.dump();
  EXPECT_EQ(j["run"]["condition"], "structure");
  const int64_t unseen = j["run"]["unseen_compounds"].get<int64_t>();
  EXPECT_GE(unseen, 4) << "every test treatment is of a held-out compound";
  EXPECT_EQ(unseen, j["run"]["compounds"].get<int64_t>());
  EXPECT_EQ(j["run"]["structure_conditioned"].get<int64_t>(), unseen);
  for (const char* m : {"gene_pearson_delta", "morph_pearson_delta", "gene_mae"}) {
    EXPECT_TRUE(j[m].contains("nearest_seen")) << m << " " << j.dump();
    EXPECT_TRUE(j["model_minus_baseline_ci95"][m].contains("nearest_seen")) << m;
  }
  ASSERT_TRUE(j.contains("by_seen")) << j.dump();
  EXPECT_FALSE(j["by_seen"].contains("seen"));
  EXPECT_EQ(j["by_seen"]["unseen"]["compounds"].get<int64_t>(), unseen);
  auto compounds = ReadFile(*root_ + "/unseen-chem/eval/compounds.json");
  ASSERT_TRUE(compounds.ok());
  for (const auto& c : nlohmann::json::parse(*compounds)["compounds"]) {
    EXPECT_FALSE(c["seen"].get<bool>());
    EXPECT_FALSE(c.value("nearest_seen", "").empty()) << c["key"];
    EXPECT_GT(c["nearest_similarity"].get<double>(), 0.0) << c["key"];
    EXPECT_LE(c["nearest_similarity"].get<double>(), 1.0) << c["key"];
  }
}

// eval.guidance_candidates: the guidance is chosen on the val split (each candidate scored there,
// the best mean of gene and morphology Pearson-Δ wins), and the test split is evaluated with it;
// the choice and its table are in run.guidance_selection. Without val pairs it is an error that
// says what to do, not a silent fallback to eval.guidance.
TEST_F(EvalStageTest, GuidanceIsChosenOnTheValSplit) {
  const std::vector<double> candidates = {0.0, 1.0, 4.0};
  const nlohmann::json j = TrainAndEvaluate(
      "guidance", 100, 1e-3, "", "prepared-val", "configs/tiny.json", [&](TrainConfig& c) {
        c.eval.guidance = 7.5;  // unused when candidates are given
        c.eval.guidance_candidates = candidates;
      });
  ASSERT_TRUE(eval_status_.ok()) << eval_status_;
  ASSERT_TRUE(j["run"].contains("guidance_selection")) << j["run"].dump();
  const nlohmann::json& sel = j["run"]["guidance_selection"];
  EXPECT_EQ(j["run"]["split"], "test");
  EXPECT_EQ(sel["split"], "val");
  ASSERT_EQ(sel["candidates"].size(), candidates.size()) << sel.dump();
  double best = -1e9, best_g = -1;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const nlohmann::json& row = sel["candidates"][i];
    EXPECT_EQ(row["guidance"].get<double>(), candidates[i]);
    const double mean =
        0.5 * (row["gene_pearson_delta"].get<double>() + row["morph_pearson_delta"].get<double>());
    EXPECT_NEAR(row["score"].get<double>(), mean, 1e-12);
    if (mean > best) best = mean, best_g = candidates[i];
    // Each candidate's own evaluation, on val, is kept beside the test one.
    auto text = ReadFile(
        absl::StrFormat("%s/guidance/eval/guidance/%g/metrics.json", *root_, candidates[i]));
    ASSERT_TRUE(text.ok()) << text.status();
    const nlohmann::json val = nlohmann::json::parse(*text);
    EXPECT_EQ(val["run"]["split"], "val");
    EXPECT_EQ(val["run"]["guidance"].get<double>(), candidates[i]);
    EXPECT_NEAR(val["gene_pearson_delta"]["model"].get<double>(),
                row["gene_pearson_delta"].get<double>(), 1e-12);
  }
  EXPECT_EQ(sel["chosen"].get<double>(), best_g);
  EXPECT_EQ(j["run"]["guidance"].get<double>(), best_g);

  // The first dataset has no val pairs.
  TrainAndEvaluate("guidance-noval", 1, 0.0, "", "prepared", "configs/tiny.json",
                   [&](TrainConfig& c) { c.eval.guidance_candidates = candidates; });
  EXPECT_EQ(eval_status_.code(), absl::StatusCode::kFailedPrecondition) << eval_status_;
  EXPECT_THAT(std::string(eval_status_.message()), ::testing::HasSubstr("no val pairs"));
}

}  // namespace
}  // namespace cellflux::trainer
