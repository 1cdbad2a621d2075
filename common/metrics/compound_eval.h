// Per-compound evaluation of perturbation predictions against real data and baselines
// (`cellflux-train eval`, `cellflux-tool evaluate`). LibTorch-free.
//
// Input: one CompoundRecord per evaluated treatment (compound and dose). It holds the real
// perturbed wells' mean expression (standardized units) and mean morphology profile (standardized
// against the training controls, cell_profile.h), each beside the mean of their matched controls,
// and the answers of every predictor: "model" (the mean of its samples, beside the mean of the
// controls those samples started from, passed through the same decoders) and the baselines
//   control      the control itself as the prediction (Δ = 0; MAE of the control's expression),
//   train_mean   the mean of all perturbed training wells (Δ from the real controls),
//   nearest_seen the nearest compound seen in training (only where the compound was held out),
//   replicate    another real replicate of the same treatment predicting this one: the ceiling.
// On synthetic data gene_truth holds the generator's true expression shift (standardized), which
// has no sampling noise.
//
// Output (ScoreCompounds): per compound and predictor, and their means over compounds with
// percentile bootstrap 95% intervals (resampling compounds) and paired model − baseline intervals:
//   gene_pearson_delta          Pearson over genes of predicted Δ vs real Δ
//   gene_pearson_delta_top50    the same on the real Δ's 50 largest |Δ| genes
//   gene_sign_accuracy_top50    fraction of those whose sign is predicted right
//   gene_mae                    mean |predicted − real expression|
//   gene_truth_pearson          Pearson of predicted Δ with the true shift (compounds with one)
//   morph_pearson_delta         Pearson over profile features of predicted Δ vs real Δ
//   retrieval_<m>_{top1,top5,mean_rank}  rank of the compound's own real Δ among all evaluated
//       compounds' real Δs by cosine to its predicted Δ; m = genes, morph, both (mean of the two
//       cosines)
// and, over images rather than compounds (no interval), morph_frechet: the Fréchet distance of
// the predictors' per-image profiles to the real images' profiles.
#ifndef CELLFLUX_COMMON_METRICS_COMPOUND_EVAL_H_
#define CELLFLUX_COMMON_METRICS_COMPOUND_EVAL_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/metrics/delta_metrics.h"
#include "nlohmann/json.hpp"

namespace cellflux {

// One predictor's answer for one compound: means over its draws. A modality left empty is not
// scored for this predictor.
struct Prediction {
  std::vector<double> gene, gene_control;        // expression and its matched control
  std::vector<double> profile, profile_control;  // profile and its matched control
};

struct CompoundRecord {
  std::string key;           // treatment (pert_sample_dose)
  std::string perturbation;  // compound id
  std::string name;          // display name (may be empty)
  int64_t samples = 0;       // model draws pooled into predictions["model"]
  std::vector<double> gene_real, gene_real_control;
  std::vector<double> profile_real, profile_real_control;
  std::vector<double> gene_truth;  // empty when unknown
  std::map<std::string, Prediction> predictions;
  // Whether the compound is in the model's training vocabulary. An unseen one (a held-out
  // compound, issue 18) is predicted from its structure, and nearest_seen names the training
  // compound most similar to it (Tanimoto of Morgan fingerprints), whose effect is the
  // nearest_seen baseline.
  bool seen = true;
  std::string nearest_seen;
  double nearest_similarity = 0.0;
};

struct EvalInput {
  std::vector<CompoundRecord> compounds;
  std::vector<std::string> profile_features;
  // Standardized per-image profiles for the Fréchet distance: "real", and per predictor.
  std::map<std::string, std::vector<std::vector<double>>> image_profiles;
  int top_k = 50;
  int bootstrap_resamples = 2000;
  uint64_t seed = 0;
};

// metric → predictor → value.
using MetricTable = std::map<std::string, std::map<std::string, double>>;

struct EvalResult {
  std::vector<std::string> predictors;  // "model" first, then baselines in a fixed order
  std::vector<std::string> metrics;     // in report order
  MetricTable summary;                  // means over compounds (morph_frechet: over images)
  std::map<std::string, std::map<std::string, Interval>> ci;        // metric → predictor
  std::map<std::string, std::map<std::string, Interval>> vs_model;  // metric → baseline: model − it
  std::vector<MetricTable> per_compound;  // parallel to EvalInput::compounds
};

// Whether a lower value is better (MAE, rank, Fréchet distance).
bool LowerIsBetter(const std::string& metric);

EvalResult ScoreCompounds(const EvalInput& input);

// eval/metrics.json: {metric: {predictor: value}} at the top level, plus "ci95" {metric:
// {predictor: [lo, hi]}}, "model_minus_baseline_ci95" {metric: {baseline: [mean, lo, hi]}},
// "lower_is_better" [metrics] and "run" (run_info, e.g. checkpoint, split, compounds).
nlohmann::json MetricsJson(const EvalResult& result, const nlohmann::json& run_info);

// The compounds of `input` with CompoundRecord::seen == seen (no per-image profiles: the Fréchet
// distance is over all images only).
EvalInput SubsetBySeen(const EvalInput& input, bool seen);
// {"seen": {...}, "unseen": {...}}: for each non-empty group, "compounds" (its count) and the
// summary, "ci95" and "model_minus_baseline_ci95" of ScoreCompounds on that group alone. Empty
// when every compound is seen (nothing to split).
nlohmann::json SeenUnseenJson(const EvalInput& input);
// eval/per_compound.csv: key,perturbation,name,samples,seen,nearest_seen,nearest_similarity, then
// <metric>:<predictor> columns.
std::string PerCompoundCsv(const EvalInput& input, const EvalResult& result);

// The scorer's input as JSON (eval/compounds.json), so `cellflux-tool evaluate` can re-score it.
nlohmann::json EvalInputToJson(const EvalInput& input);
absl::StatusOr<EvalInput> EvalInputFromJson(const nlohmann::json& j);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_METRICS_COMPOUND_EVAL_H_
