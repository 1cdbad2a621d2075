// The per-compound scorer on three compounds whose answers are known: a perfect model, the
// control baseline (Δ = 0) and a train-mean baseline that predicts one shared direction.
#include "common/metrics/compound_eval.h"

#include <gtest/gtest.h>

#include <cmath>

namespace cellflux {
namespace {

EvalInput ThreeCompounds() {
  EvalInput in;
  in.top_k = 2;
  in.bootstrap_resamples = 200;
  const std::vector<std::vector<double>> deltas = {{2, 0, 0, -1}, {0, 3, 1, 0}, {-1, 0, 2, 2}};
  const std::vector<double> control = {1, 1, 1, 1}, shared = {1, 1, 1, 1.5};
  for (int i = 0; i < 3; ++i) {
    CompoundRecord c;
    c.key = "BRD-" + std::to_string(i) + "_10.0";
    c.perturbation = "BRD-" + std::to_string(i);
    c.samples = 4;
    c.gene_real_control = control;
    c.gene_real = Difference(control, {0, 0, 0, 0});
    for (size_t g = 0; g < 4; ++g) c.gene_real[g] += deltas[i][g];
    c.profile_real_control = {0, 0, 0};
    c.profile_real = {deltas[i][0], deltas[i][1], deltas[i][2]};
    c.gene_truth = deltas[i];
    c.predictions["model"] = {c.gene_real, control, c.profile_real, c.profile_real_control};
    c.predictions["control"] = {control, control, {0, 0, 0}, {0, 0, 0}};
    c.predictions["train_mean"] = {shared, {0.5, 0.5, 0.5, 0.5}, {}, {}};
    in.compounds.push_back(c);
  }
  in.image_profiles["real"] = {{0, 0}, {2, 0}};
  in.image_profiles["model"] = {{0, 0}, {2, 0}};
  in.image_profiles["control"] = {{1, 0}, {3, 0}};
  return in;
}

TEST(CompoundEvalTest, PerfectModelBeatsTheBaselines) {
  const EvalInput in = ThreeCompounds();
  const EvalResult r = ScoreCompounds(in);
  ASSERT_EQ(r.predictors, (std::vector<std::string>{"model", "control", "train_mean"}));
  EXPECT_NEAR(r.summary.at("gene_pearson_delta").at("model"), 1.0, 1e-12);
  EXPECT_EQ(r.summary.at("gene_pearson_delta").at("control"), 0.0);
  EXPECT_NEAR(r.summary.at("gene_truth_pearson").at("model"), 1.0, 1e-12);
  EXPECT_NEAR(r.summary.at("gene_mae").at("model"), 0.0, 1e-12);
  // Control: |Δ| averaged over genes and compounds: (3 + 4 + 5) / 4 / 3 = 1.
  EXPECT_NEAR(r.summary.at("gene_mae").at("control"), 1.0, 1e-12);
  EXPECT_NEAR(r.summary.at("gene_sign_accuracy_top2").at("model"), 1.0, 1e-12);
  EXPECT_NEAR(r.summary.at("gene_sign_accuracy_top2").at("control"), 0.5, 1e-12);
  EXPECT_NEAR(r.summary.at("morph_pearson_delta").at("model"), 1.0, 1e-12);
  EXPECT_FALSE(r.summary.at("morph_pearson_delta").count("train_mean"))
      << "a predictor without profiles is not scored on them";
  // Retrieval: the perfect model finds each compound first; the control's Δ = 0 ties all three.
  EXPECT_EQ(r.summary.at("retrieval_genes_top1").at("model"), 1.0);
  EXPECT_EQ(r.summary.at("retrieval_genes_mean_rank").at("model"), 1.0);
  EXPECT_EQ(r.summary.at("retrieval_genes_mean_rank").at("control"), 2.0);
  EXPECT_NEAR(r.summary.at("retrieval_both_top1").at("control"), 1.0 / 3, 1e-12);
  // Paired differences: model − control on gene Pearson-Δ is exactly 1 on every compound.
  EXPECT_NEAR(r.vs_model.at("gene_pearson_delta").at("control").lo, 1.0, 1e-12);
  // Fréchet: model profiles equal the real ones; the controls are shifted by 1.
  EXPECT_NEAR(r.summary.at("morph_frechet").at("model"), 0.0, 1e-9);
  EXPECT_NEAR(r.summary.at("morph_frechet").at("control"), 1.0, 1e-9);
}

TEST(CompoundEvalTest, MetricsJsonAndCsvShape) {
  const EvalInput in = ThreeCompounds();
  const EvalResult r = ScoreCompounds(in);
  const nlohmann::json j = MetricsJson(r, {{"split", "test"}});
  ASSERT_TRUE(j.contains("gene_pearson_delta"));
  EXPECT_TRUE(j["gene_pearson_delta"].contains("model"));
  EXPECT_TRUE(j["gene_pearson_delta"].contains("control"));
  EXPECT_EQ(j["ci95"]["gene_pearson_delta"]["model"].size(), 2u);
  EXPECT_EQ(j["model_minus_baseline_ci95"]["gene_mae"]["control"].size(), 3u);
  EXPECT_EQ(j["run"]["split"], "test");
  bool mae_lower = false;
  for (const auto& m : j["lower_is_better"]) mae_lower |= m == "gene_mae";
  EXPECT_TRUE(mae_lower);
  const std::string csv = PerCompoundCsv(in, r);
  EXPECT_EQ(csv.substr(0, csv.find('\n'))
                .find("key,perturbation,name,samples,seen,nearest_seen,nearest_similarity,"),
            0u)
      << csv;
  EXPECT_NE(csv.find("gene_pearson_delta:model"), std::string::npos);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4);
}

TEST(CompoundEvalTest, JsonRoundTripScoresTheSame) {
  const EvalInput in = ThreeCompounds();
  auto back = EvalInputFromJson(nlohmann::json::parse(EvalInputToJson(in).dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  const EvalResult a = ScoreCompounds(in), b = ScoreCompounds(*back);
  EXPECT_EQ(a.summary, b.summary);
  nlohmann::json bad = EvalInputToJson(in);
  bad["compounds"][0]["predictions"]["model"]["gene"] = {1, 2};
  auto err = EvalInputFromJson(bad);
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.status().message().find("BRD-0_10.0"), std::string::npos) << err.status();
}

}  // namespace
}  // namespace cellflux
