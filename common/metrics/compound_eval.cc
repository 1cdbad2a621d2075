#include "common/metrics/compound_eval.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/metrics/cell_profile.h"

namespace cellflux {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
const char* const kPredictorOrder[] = {"model", "control", "train_mean", "nearest_seen",
                                       "replicate"};

bool Has(const std::vector<double>& v) { return !v.empty(); }

double Norm(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

std::vector<double> GeneDelta(const Prediction& p) { return Difference(p.gene, p.gene_control); }
std::vector<double> ProfileDelta(const Prediction& p) {
  return Difference(p.profile, p.profile_control);
}

// Retrieval of one predictor over all compounds for one modality (`delta` gives a compound's
// predicted Δ, `real` its real Δ; compounds without either are left out of the candidate set).
void ScoreRetrieval(const EvalInput& in, const std::string& predictor, const std::string& modality,
                    std::vector<MetricTable>& per) {
  std::vector<size_t> idx;
  std::vector<std::vector<double>> pred_g, real_g, pred_m, real_m;
  for (size_t i = 0; i < in.compounds.size(); ++i) {
    const CompoundRecord& c = in.compounds[i];
    auto it = c.predictions.find(predictor);
    if (it == c.predictions.end()) continue;
    const Prediction& p = it->second;
    const bool genes = Has(p.gene) && Has(c.gene_real);
    const bool morph = Has(p.profile) && Has(c.profile_real);
    if ((modality == "genes" && !genes) || (modality == "morph" && !morph) ||
        (modality == "both" && !(genes && morph)))
      continue;
    idx.push_back(i);
    if (genes) {
      pred_g.push_back(GeneDelta(p));
      real_g.push_back(Difference(c.gene_real, c.gene_real_control));
    }
    if (morph) {
      pred_m.push_back(ProfileDelta(p));
      real_m.push_back(Difference(c.profile_real, c.profile_real_control));
    }
  }
  if (idx.size() < 2) return;
  std::vector<std::vector<double>> sim;
  if (modality == "genes") {
    sim = CosineMatrix(pred_g, real_g);
  } else if (modality == "morph") {
    sim = CosineMatrix(pred_m, real_m);
  } else {
    sim = CosineMatrix(pred_g, real_g);
    const auto sm = CosineMatrix(pred_m, real_m);
    for (size_t i = 0; i < sim.size(); ++i)
      for (size_t j = 0; j < sim.size(); ++j) sim[i][j] = (sim[i][j] + sm[i][j]) / 2;
  }
  const std::vector<RetrievalScore> ranks = RetrievalRanks(sim);
  for (size_t k = 0; k < idx.size(); ++k) {
    MetricTable& t = per[idx[k]];
    t[absl::StrCat("retrieval_", modality, "_top1")][predictor] = ranks[k].top1;
    t[absl::StrCat("retrieval_", modality, "_top5")][predictor] = ranks[k].top5;
    t[absl::StrCat("retrieval_", modality, "_mean_rank")][predictor] = ranks[k].rank;
  }
}

std::vector<double> JsonVector(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return {};
  return j[key].get<std::vector<double>>();
}

}  // namespace

bool LowerIsBetter(const std::string& metric) {
  return metric.find("mae") != std::string::npos || metric.find("rank") != std::string::npos ||
         metric.find("frechet") != std::string::npos;
}

EvalResult ScoreCompounds(const EvalInput& in) {
  EvalResult r;
  std::set<std::string> seen;
  for (const CompoundRecord& c : in.compounds)
    for (const auto& [name, p] : c.predictions) seen.insert(name);
  for (const char* p : kPredictorOrder) {
    if (seen.erase(p)) r.predictors.push_back(p);
  }
  for (const std::string& p : seen) r.predictors.push_back(p);

  r.per_compound.resize(in.compounds.size());
  for (size_t i = 0; i < in.compounds.size(); ++i) {
    const CompoundRecord& c = in.compounds[i];
    MetricTable& t = r.per_compound[i];
    const std::vector<double> real_g = Difference(c.gene_real, c.gene_real_control);
    const std::vector<double> real_m = Difference(c.profile_real, c.profile_real_control);
    const std::string top = absl::StrCat(in.top_k);
    for (const auto& [name, p] : c.predictions) {
      if (Has(p.gene) && Has(c.gene_real)) {
        const std::vector<double> d = GeneDelta(p);
        const DeltaScore s = ScoreDelta(d, real_g, in.top_k);
        t["gene_pearson_delta"][name] = s.pearson;
        t[absl::StrCat("gene_pearson_delta_top", top)][name] = s.pearson_top;
        t[absl::StrCat("gene_sign_accuracy_top", top)][name] = s.sign_accuracy_top;
        t["gene_mae"][name] = MeanAbsoluteError(p.gene, c.gene_real);
        if (Has(c.gene_truth) && Norm(c.gene_truth) > 1e-9)
          t["gene_truth_pearson"][name] = Pearson(d, c.gene_truth);
      }
      if (Has(p.profile) && Has(c.profile_real)) {
        t["morph_pearson_delta"][name] = Pearson(ProfileDelta(p), real_m);
      }
    }
  }
  for (const std::string& p : r.predictors) {
    for (const char* m : {"genes", "morph", "both"}) ScoreRetrieval(in, p, m, r.per_compound);
  }

  // Summaries: the mean over the compounds a predictor was scored on, with intervals.
  std::set<std::string> metric_set;
  for (const MetricTable& t : r.per_compound)
    for (const auto& [m, v] : t) metric_set.insert(m);
  const std::string top = absl::StrCat(in.top_k);
  std::vector<std::string> order = {"gene_pearson_delta",
                                    absl::StrCat("gene_pearson_delta_top", top),
                                    absl::StrCat("gene_sign_accuracy_top", top),
                                    "gene_mae",
                                    "gene_truth_pearson",
                                    "morph_pearson_delta"};
  for (const char* m : {"genes", "morph", "both"})
    for (const char* s : {"top1", "top5", "mean_rank"})
      order.push_back(absl::StrCat("retrieval_", m, "_", s));
  uint64_t salt = 0;
  for (const std::string& m : order) {
    if (!metric_set.count(m)) continue;
    r.metrics.push_back(m);
    ++salt;
    for (const std::string& p : r.predictors) {
      std::vector<double> values;
      for (const MetricTable& t : r.per_compound) {
        auto mit = t.find(m);
        if (mit == t.end()) continue;
        auto pit = mit->second.find(p);
        if (pit != mit->second.end()) values.push_back(pit->second);
      }
      if (values.empty()) continue;
      const Interval ci = BootstrapMean(values, in.bootstrap_resamples, in.seed + salt);
      r.summary[m][p] = ci.mean;
      r.ci[m][p] = ci;
    }
    // Paired: model − baseline on the compounds both were scored on (same resamples).
    for (const std::string& p : r.predictors) {
      if (p == "model") continue;
      std::vector<double> diff;
      for (const MetricTable& t : r.per_compound) {
        auto mit = t.find(m);
        if (mit == t.end()) continue;
        auto a = mit->second.find("model"), b = mit->second.find(p);
        if (a != mit->second.end() && b != mit->second.end()) diff.push_back(a->second - b->second);
      }
      if (!diff.empty())
        r.vs_model[m][p] = BootstrapMean(diff, in.bootstrap_resamples, in.seed + salt);
    }
  }
  auto real = in.image_profiles.find("real");
  if (real != in.image_profiles.end()) {
    for (const auto& [name, rows] : in.image_profiles) {
      if (name == "real") continue;
      absl::StatusOr<double> fd = FrechetDistanceRows(rows, real->second);
      if (fd.ok()) r.summary["morph_frechet"][name] = *fd;
    }
    if (r.summary.count("morph_frechet")) r.metrics.push_back("morph_frechet");
  }
  return r;
}

nlohmann::json MetricsJson(const EvalResult& r, const nlohmann::json& run_info) {
  nlohmann::ordered_json j;
  for (const std::string& m : r.metrics) {
    nlohmann::ordered_json row;
    for (const std::string& p : r.predictors) {
      auto it = r.summary.at(m).find(p);
      if (it != r.summary.at(m).end()) row[p] = it->second;
    }
    j[m] = row;
  }
  nlohmann::ordered_json ci, diff, lower = nlohmann::ordered_json::array();
  for (const std::string& m : r.metrics) {
    if (LowerIsBetter(m)) lower.push_back(m);
    auto c = r.ci.find(m);
    if (c != r.ci.end()) {
      for (const std::string& p : r.predictors) {
        auto it = c->second.find(p);
        if (it != c->second.end()) ci[m][p] = {it->second.lo, it->second.hi};
      }
    }
    auto d = r.vs_model.find(m);
    if (d != r.vs_model.end()) {
      for (const std::string& p : r.predictors) {
        auto it = d->second.find(p);
        if (it != d->second.end()) diff[m][p] = {it->second.mean, it->second.lo, it->second.hi};
      }
    }
  }
  j["ci95"] = ci;
  j["model_minus_baseline_ci95"] = diff;
  j["lower_is_better"] = lower;
  j["run"] = run_info;
  return nlohmann::json::parse(j.dump());
}

EvalInput SubsetBySeen(const EvalInput& input, bool seen) {
  EvalInput out;
  out.profile_features = input.profile_features;
  out.top_k = input.top_k;
  out.bootstrap_resamples = input.bootstrap_resamples;
  out.seed = input.seed;
  for (const CompoundRecord& c : input.compounds) {
    if (c.seen == seen) out.compounds.push_back(c);
  }
  return out;
}

nlohmann::json SeenUnseenJson(const EvalInput& input) {
  nlohmann::json out = nlohmann::json::object();
  bool any_unseen = false;
  for (const CompoundRecord& c : input.compounds) any_unseen |= !c.seen;
  if (!any_unseen) return out;
  for (bool seen : {true, false}) {
    EvalInput sub = SubsetBySeen(input, seen);
    if (sub.compounds.empty()) continue;
    nlohmann::json j = MetricsJson(ScoreCompounds(sub), nlohmann::json::object());
    j.erase("run");
    j["compounds"] = sub.compounds.size();
    out[seen ? "seen" : "unseen"] = std::move(j);
  }
  return out;
}

std::string PerCompoundCsv(const EvalInput& in, const EvalResult& r) {
  std::vector<std::pair<std::string, std::string>> cols;
  for (const std::string& m : r.metrics) {
    if (m == "morph_frechet") continue;
    for (const std::string& p : r.predictors) cols.emplace_back(m, p);
  }
  std::string csv = "key,perturbation,name,samples,seen,nearest_seen,nearest_similarity";
  for (const auto& [m, p] : cols) absl::StrAppend(&csv, ",", m, ":", p);
  csv += "\n";
  for (size_t i = 0; i < in.compounds.size(); ++i) {
    const CompoundRecord& c = in.compounds[i];
    absl::StrAppend(&csv, c.key, ",", c.perturbation, ",", c.name, ",", c.samples, ",",
                    c.seen ? "yes" : "no", ",", c.nearest_seen, ",",
                    c.nearest_seen.empty() ? "" : absl::StrFormat("%.4f", c.nearest_similarity));
    for (const auto& [m, p] : cols) {
      double v = kNaN;
      auto mit = r.per_compound[i].find(m);
      if (mit != r.per_compound[i].end()) {
        auto pit = mit->second.find(p);
        if (pit != mit->second.end()) v = pit->second;
      }
      absl::StrAppend(&csv, ",", std::isnan(v) ? "" : absl::StrFormat("%.6g", v));
    }
    csv += "\n";
  }
  return csv;
}

nlohmann::json EvalInputToJson(const EvalInput& in) {
  nlohmann::json j;
  j["profile_features"] = in.profile_features;
  j["top_k"] = in.top_k;
  j["bootstrap_resamples"] = in.bootstrap_resamples;
  j["seed"] = in.seed;
  j["image_profiles"] = in.image_profiles;
  j["compounds"] = nlohmann::json::array();
  for (const CompoundRecord& c : in.compounds) {
    nlohmann::json cj = {{"key", c.key},
                         {"perturbation", c.perturbation},
                         {"name", c.name},
                         {"samples", c.samples},
                         {"gene_real", c.gene_real},
                         {"gene_real_control", c.gene_real_control},
                         {"profile_real", c.profile_real},
                         {"profile_real_control", c.profile_real_control},
                         {"gene_truth", c.gene_truth},
                         {"seen", c.seen}};
    if (!c.nearest_seen.empty()) {
      cj["nearest_seen"] = c.nearest_seen;
      cj["nearest_similarity"] = c.nearest_similarity;
    }
    for (const auto& [name, p] : c.predictions) {
      cj["predictions"][name] = {{"gene", p.gene},
                                 {"gene_control", p.gene_control},
                                 {"profile", p.profile},
                                 {"profile_control", p.profile_control}};
    }
    j["compounds"].push_back(std::move(cj));
  }
  return j;
}

absl::StatusOr<EvalInput> EvalInputFromJson(const nlohmann::json& j) {
  EvalInput in;
  try {
    in.profile_features = j.value("profile_features", std::vector<std::string>{});
    in.top_k = j.value("top_k", 50);
    in.bootstrap_resamples = j.value("bootstrap_resamples", 2000);
    in.seed = j.value("seed", uint64_t{0});
    if (j.contains("image_profiles"))
      in.image_profiles =
          j["image_profiles"].get<std::map<std::string, std::vector<std::vector<double>>>>();
    if (!j.contains("compounds") || !j["compounds"].is_array())
      return absl::InvalidArgumentError("evaluation input: no 'compounds' array");
    for (const nlohmann::json& cj : j["compounds"]) {
      CompoundRecord c;
      c.key = cj.at("key").get<std::string>();
      c.perturbation = cj.value("perturbation", "");
      c.name = cj.value("name", "");
      c.samples = cj.value("samples", int64_t{0});
      c.gene_real = JsonVector(cj, "gene_real");
      c.gene_real_control = JsonVector(cj, "gene_real_control");
      c.profile_real = JsonVector(cj, "profile_real");
      c.profile_real_control = JsonVector(cj, "profile_real_control");
      c.gene_truth = JsonVector(cj, "gene_truth");
      c.seen = cj.value("seen", true);
      c.nearest_seen = cj.value("nearest_seen", "");
      c.nearest_similarity = cj.value("nearest_similarity", 0.0);
      if (cj.contains("predictions")) {
        for (const auto& [name, pj] : cj["predictions"].items()) {
          Prediction p;
          p.gene = JsonVector(pj, "gene");
          p.gene_control = JsonVector(pj, "gene_control");
          p.profile = JsonVector(pj, "profile");
          p.profile_control = JsonVector(pj, "profile_control");
          if (p.gene.size() != p.gene_control.size() ||
              p.profile.size() != p.profile_control.size() ||
              (Has(p.gene) && p.gene.size() != c.gene_real.size()) ||
              (Has(p.profile) && p.profile.size() != c.profile_real.size())) {
            return absl::InvalidArgumentError(
                absl::StrCat("evaluation input: compound ", c.key, " predictor ", name, ": gene ",
                             p.gene.size(), "/", p.gene_control.size(), " and profile ",
                             p.profile.size(), "/", p.profile_control.size(), " values; expected ",
                             c.gene_real.size(), " and ", c.profile_real.size()));
          }
          c.predictions[name] = std::move(p);
        }
      }
      in.compounds.push_back(std::move(c));
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("evaluation input: ", e.what()));
  }
  return in;
}

}  // namespace cellflux
