// Stage eval (paper §4.1, DESIGN.md §7, issue 15): does the model predict each compound's effect?
//
// For every treatment (compound and dose) of the evaluated split, the EMA weights generate
// eval.samples_per_pair draws per pair (eval.num_steps steps of eval.sampler, Euler or Heun,
// guidance eval.guidance), each from another same-plate control and seed. Scored per treatment
// (common/metrics/compound_eval.h):
//   model        the mean of its draws' decoded expression (standardized) and morphology profiles
//                (common/metrics/cell_profile.h, standardized against the control wells), as a Δ
//                from the controls they started from passed through the same decoders (so the
//                decoders' own bias is not scored as an effect);
//   real         the held-out wells' mean expression and profile (each well's profile: the mean
//                over eval.crops_per_site crops of every site), as a Δ from the mean of the DMSO
//                wells/rows on the same plates;
//   baselines    control (the control as the prediction), train_mean (all perturbed training
//                wells, as a Δ from all DMSO wells: the average training effect), replicate
//                (another real replicate of the same treatment, a training well: the ceiling),
//                nearest_seen (for a compound outside the training vocabulary: the training
//                compound with the most similar structure — Tanimoto of Morgan fingerprints —
//                its training wells' mean Δ from their plates' controls).
// Compounds outside the vocabulary (held out by a perturbation or compound-scaffold split) are
// "unseen": an id model predicts them with the null condition; a structure model
// (sit.condition structure / id+structure) registers each unseen treatment's fingerprint and
// dose (SetExtraStructure) and conditions on it. metrics.json's "by_seen" scores the seen and
// unseen compounds separately.
// eval.ground_truth (synthetic data) adds the correlation with the generator's true shift.
// Writes work_dir/eval/: metrics.json ({metric: {predictor: value}}, intervals, "run"),
// per_compound.csv, compounds.json (the scorer's input: `cellflux-tool evaluate` re-scores it),
// report.html (self-contained), figure.png and grid/ (control / real / generated per compound),
// and the real/, fake/, control/ PNG folders with FID/KID (KID ×100) on DNA/RNA/ER as RGB
// (with eval.extractor = Inception; otherwise the random-conv fallback, not a headline metric).
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/checkpoint/checkpoint_dir.h"
#include "common/checkpoint/model_bundle.h"
#include "common/chem/chem.h"
#include "common/data/dataset.h"
#include "common/data/manifest.h"
#include "common/flow/sampler.h"
#include "common/metrics/cell_profile.h"
#include "common/metrics/compound_eval.h"
#include "common/metrics/eval_report.h"
#include "common/metrics/feature_extractor.h"
#include "common/metrics/image_folder.h"
#include "common/models/normalization.h"
#include "common/models/precision.h"
#include "common/util/files.h"
#include "common/util/logging.h"
#include "common/util/progress.h"
#include "common/util/status_macros.h"
#include "nlohmann/json.hpp"
#include "trainer/flow_examples.h"
#include "trainer/latent_cache.h"
#include "trainer/stages.h"

namespace cellflux::trainer {
namespace {

using Vec = std::vector<double>;

// [5, S, S] in [-1, 1] → 8-bit RGB (DNA, RNA, ER), as a [3, S, S] uint8 tensor.
torch::Tensor Rgb(const torch::Tensor& img) {
  return ((img.narrow(0, 0, 3).clamp(-1, 1) + 1) * 127.5).round().to(torch::kUInt8).cpu();
}

cv::Mat ToMat(const torch::Tensor& rgb) {  // [3, H, W] uint8 → BGR Mat
  torch::Tensor hwc = rgb.permute({1, 2, 0}).contiguous();
  cv::Mat m(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), CV_8UC3, hwc.data_ptr());
  cv::Mat bgr;
  cv::cvtColor(m, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}

std::string PngBytes(const torch::Tensor& rgb) {
  std::vector<uchar> buf;
  cv::imencode(".png", ToMat(rgb), buf);
  return std::string(buf.begin(), buf.end());
}

// The raw profile of one [5, S, S] image in [-1, 1].
absl::StatusOr<Vec> RawProfile(const torch::Tensor& img) {
  torch::Tensor x = ((img.clamp(-1, 1) + 1) / 2).to(torch::kFloat32).cpu().contiguous();
  std::array<cv::Mat, kProfileChannels> ch;
  for (int c = 0; c < kProfileChannels; ++c) {
    ch[c] = cv::Mat(static_cast<int>(x.size(1)), static_cast<int>(x.size(2)), CV_32F,
                    x[c].data_ptr<float>())
                .clone();
  }
  return ComputeProfile(ch);
}

std::string SplitForEval(const LatentCache& cache) {
  for (const char* s : {"test", "val", "train"}) {
    for (const auto& p : cache.index().pairs) {
      if (p.split == s) return s;
    }
  }
  return "test";
}

Vec Rows(const torch::Tensor& expr, const std::vector<int64_t>& rows) {
  torch::Tensor m =
      expr.index_select(0, torch::tensor(rows, torch::kInt64)).mean(0).to(torch::kFloat64);
  return Vec(m.data_ptr<double>(), m.data_ptr<double>() + m.numel());
}

// Per-well morphology profiles of real wells, standardized against the control wells, cached.
class WellProfiles {
 public:
  WellProfiles(const data::Manifest& m, const ModelConfig& config, int64_t crops_per_site)
      : m_(m), config_(config) {
    grid_ = std::max<int64_t>(1, static_cast<int64_t>(std::sqrt(double(crops_per_site)) + 1e-9));
  }
  // Raw crop profiles of one well (every site, grid_ × grid_ crops each).
  absl::StatusOr<std::vector<Vec>> Crops(const std::vector<int>& site_ids) const {
    std::vector<Vec> out;
    const int64_t s = config_.image_size;
    for (int site : site_ids) {
      CF_ASSIGN_OR_RETURN(torch::Tensor raw, data::LoadSiteImage(m_.sites[site], true));
      torch::Tensor norm = NormalizeImages(raw.unsqueeze(0), config_.normalization).squeeze(0);
      const int64_t h = norm.size(1), w = norm.size(2);
      for (int64_t gy = 0; gy < grid_; ++gy) {
        for (int64_t gx = 0; gx < grid_; ++gx) {
          const int64_t y = grid_ == 1 ? (h - s) / 2 : gy * (h - s) / (grid_ - 1);
          const int64_t x = grid_ == 1 ? (w - s) / 2 : gx * (w - s) / (grid_ - 1);
          CF_ASSIGN_OR_RETURN(Vec p, RawProfile(norm.narrow(1, y, s).narrow(2, x, s)));
          out.push_back(std::move(p));
        }
      }
    }
    return out;
  }
  absl::Status FitControls() {
    std::vector<Vec> all;
    for (const auto& w : m_.cp_controls) {
      CF_ASSIGN_OR_RETURN(std::vector<Vec> crops, Crops(w.site_ids));
      all.insert(all.end(), crops.begin(), crops.end());
      raw_[{w.plate, w.well}] = MeanRows(crops);
    }
    CF_ASSIGN_OR_RETURN(std_, ProfileStandardizer::Fit(all));
    return absl::OkStatus();
  }
  const ProfileStandardizer& standardizer() const { return std_; }
  // Standardized mean profile of a well.
  absl::StatusOr<Vec> Well(const std::string& plate, const std::string& well,
                           const std::vector<int>& site_ids) {
    auto it = raw_.find({plate, well});
    if (it == raw_.end()) {
      CF_ASSIGN_OR_RETURN(std::vector<Vec> crops, Crops(site_ids));
      it = raw_.emplace(std::make_pair(plate, well), MeanRows(crops)).first;
    }
    return std_.Apply(it->second);
  }
  // Standardized mean profile of the DMSO wells on `plates`.
  absl::StatusOr<Vec> Controls(const std::set<std::string>& plates) {
    std::vector<Vec> rows;
    for (const auto& w : m_.cp_controls) {
      if (!plates.count(w.plate)) continue;
      CF_ASSIGN_OR_RETURN(Vec p, Well(w.plate, w.well, w.site_ids));
      rows.push_back(std::move(p));
    }
    return MeanRows(rows);
  }

 private:
  const data::Manifest& m_;
  const ModelConfig& config_;
  int64_t grid_ = 3;
  std::map<std::pair<std::string, std::string>, Vec> raw_;
  ProfileStandardizer std_;
};

// key → the generator's true expression shift, standardized with the prepared gene statistics.
absl::StatusOr<std::map<std::string, Vec>> LoadTruth(const std::string& path,
                                                     const data::Manifest& m) {
  CF_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::map<std::string, Vec> out;
  try {
    nlohmann::json j = nlohmann::json::parse(text);
    std::map<std::string, size_t> gene_at;
    const auto& genes = j.at("genes");
    for (size_t g = 0; g < genes.size(); ++g) gene_at[genes[g].at("probe_id")] = g;
    for (const auto& c : j.at("compounds")) {
      for (const auto& d : c.at("doses")) {
        const std::vector<double> shift = d.at("expression_shift").get<std::vector<double>>();
        Vec v(m.gene_ids.size(), 0.0);
        for (size_t g = 0; g < m.gene_ids.size(); ++g) {
          auto it = gene_at.find(m.gene_ids[g]);
          if (it != gene_at.end() && m.gene_std[g] > 1e-6) v[g] = shift[it->second] / m.gene_std[g];
        }
        out[d.at("pert_sample_dose").get<std::string>()] = std::move(v);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("eval: ground truth ", path, ": ", e.what()));
  }
  return out;
}

// Sums of one treatment's draws.
struct Accumulated {
  int64_t n = 0;
  std::vector<Vec> gene, gene_control, gene_input, profile, profile_control, profile_input;
};

// One evaluation of a checkpoint: which split, at which guidance, written where.
struct EvalPass {
  std::string split;  // "" = test if the cache has it, else val, else train
  double guidance = 1.2;
  std::string out;           // directory for metrics.json, report.html, ...
  nlohmann::json selection;  // how the guidance was chosen on val (null: it was configured)
};

// Generates, scores and writes one pass; returns its metrics.json.
absl::StatusOr<nlohmann::json> EvaluatePass(const StageContext& ctx, const std::string& checkpoint,
                                            const EvalPass& pass) {
  const EvalStageConfig& c = ctx.config.eval;
  const std::string& out = pass.out;
  CF_RETURN_IF_ERROR(MakeDirs(out));
  CF_ASSIGN_OR_RETURN(Precision precision, ParsePrecision(c.precision));
  CF_ASSIGN_OR_RETURN(LoadedModel loaded, LoadCheckpointModel(checkpoint, ctx.device, precision));
  CF_LOG(INFO) << "eval: " << checkpoint << " in " << PrecisionName(loaded.model->precision());
  CellFluxModel& model = loaded.model;
  CF_ASSIGN_OR_RETURN(std::unique_ptr<LatentCache> cache,
                      LatentCache::Open(StageDir(ctx, "latents")));
  CF_ASSIGN_OR_RETURN(data::Manifest m,
                      data::LoadManifest(ctx.config.data_dir, /*load_expression=*/false));
  std::map<std::pair<std::string, std::string>, std::vector<int>> well_sites;
  for (const auto& p : m.pairs) well_sites[{p.cp_plate, p.well}] = p.site_ids;
  for (const auto& w : m.cp_controls) well_sites[{w.plate, w.well}] = w.site_ids;
  // Cached pair → its manifest pair (same plate, well and L1000 row), for the treatment key.
  std::map<std::tuple<std::string, std::string, int64_t>, const data::ManifestPair*> by_pair;
  for (const auto& p : m.pairs) by_pair[{p.cp_plate, p.well, p.l1000_row}] = &p;
  const LatentIndex& index = cache->index();
  auto manifest_pair = [&](int64_t cached) -> const data::ManifestPair* {
    const CachedPair& p = index.pairs[cached];
    auto it = by_pair.find({p.cp_plate, index.wells[p.well].well, p.gene_row});
    return it == by_pair.end() ? nullptr : it->second;
  };

  // Structures: every compound with a SMILES (vocabulary and held out), parsed once.
  std::map<std::string, chem::Structure> structure_of;
  {
    std::map<std::string, std::string> smiles = m.structures;
    for (const auto& v : m.vocabulary) {
      if (!v.smiles.empty()) smiles.emplace(v.perturbation_id, v.smiles);
    }
    for (const auto& [pert, text] : smiles) {
      absl::StatusOr<chem::Structure> st =
          chem::ParseStructure(text, chem::kDefaultRadius, model->config().sit.fingerprint_bits);
      if (st.ok()) structure_of.emplace(pert, *std::move(st));
    }
  }
  const std::string split = pass.split.empty() ? SplitForEval(*cache) : pass.split;
  FlowExamples examples(
      cache.get(),
      FlowExampleOptions{split, ctx.config.seed, 0.0, model->null_label(),
                         model->config().flow.sample_posterior, /*centre_crop_only=*/true,
                         model->config().flow.source_noise_sigma});
  const int64_t pairs = std::min<int64_t>(c.max_pairs, examples.size());
  const int64_t n = pairs * c.samples_per_pair;  // draw s: pair s % pairs, repeat s / pairs
  if (n < 2)
    return absl::FailedPreconditionError(
        absl::StrCat("eval: only ", n, " ", split, " samples from the latent cache"));
  for (const char* sub : {"real", "fake", "control", "grid"}) {
    std::filesystem::remove_all(absl::StrCat(out, "/", sub));
    CF_RETURN_IF_ERROR(MakeDirs(absl::StrCat(out, "/", sub)));
  }
  CF_ASSIGN_OR_RETURN(std::unique_ptr<FeatureExtractor> extractor,
                      MakeFeatureExtractor(c.extractor, ctx.device));
  WellProfiles profiles(m, model->config(), c.crops_per_site);
  CF_RETURN_IF_ERROR(profiles.FitControls());
  const ProfileStandardizer& standardizer = profiles.standardizer();
  torch::Tensor expr = cache->expression();

  // Treatments of the evaluated pairs, in split order.
  std::map<std::string, size_t> key_slot;
  std::vector<std::string> keys;
  std::vector<const data::ManifestPair*> pair_info(pairs);
  for (int64_t i = 0; i < pairs; ++i) {
    pair_info[i] = manifest_pair(examples.pair_index(i));
    if (pair_info[i] == nullptr)
      return absl::InternalError(absl::StrCat("eval: cached pair ", examples.pair_index(i),
                                              " is not in the manifest of ", ctx.config.data_dir));
    if (key_slot.emplace(pair_info[i]->key, keys.size()).second) keys.push_back(pair_info[i]->key);
  }
  std::vector<Accumulated> acc(keys.size());
  // A structure model conditions unseen treatments on their structure and dose.
  std::map<std::string, int64_t> structure_label;  // treatment key → registered label
  if (model->config().sit.uses_structure()) {
    for (int64_t i = 0; i < pairs; ++i) {
      const data::ManifestPair& p = *pair_info[i];
      if (m.VocabRow(p.perturbation) >= 0 || structure_label.count(p.key)) continue;
      auto st = structure_of.find(p.perturbation);
      if (st == structure_of.end()) continue;  // no structure: the null condition, as id models
      double dose = std::numeric_limits<double>::quiet_NaN();
      absl::SimpleAtod(p.dose, &dose);
      CF_ASSIGN_OR_RETURN(int64_t label,
                          model->sit()->structure_embedder->SetExtraStructure(
                              static_cast<int64_t>(structure_label.size()), st->second.bits, dose));
      structure_label[p.key] = label;
    }
    CF_LOG(INFO) << "eval: " << structure_label.size()
                 << " unseen treatments conditioned on their structure";
  }

  std::vector<torch::Tensor> real_feats, fake_feats, control_feats;
  std::vector<Vec> real_images, model_images, control_images;  // standardized, for the FD
  std::vector<ReportGridColumn> grid;
  std::vector<std::array<torch::Tensor, 3>> figure;
  ProgressOptions po;
  po.label = "eval";
  po.unit = "draw";
  ProgressBar bar(n, po);
  SamplerOptions so;
  so.num_steps = static_cast<int>(c.num_steps);
  so.guidance_scale = pass.guidance;
  so.sampler = c.sampler == "heun" ? SamplerKind::kHeun : SamplerKind::kEuler;
  auto centre_crop = [&](int64_t well) -> absl::StatusOr<torch::Tensor> {
    const CachedWell& w = index.wells[well];
    CF_ASSIGN_OR_RETURN(torch::Tensor raw,
                        data::LoadSiteImage(m.sites[well_sites.at({w.plate, w.well})[0]], true));
    torch::Tensor norm =
        NormalizeImages(raw.unsqueeze(0), model->config().normalization).squeeze(0);
    return data::CropImage(norm, model->config().image_size, /*random=*/false, nullptr);
  };
  for (int64_t start = 0; start < n; start += c.batch_size) {
    std::vector<int64_t> positions;
    std::vector<std::pair<int64_t, uint64_t>> draws;
    for (int64_t i = start; i < std::min(n, start + c.batch_size); ++i) {
      positions.push_back(i);
      draws.emplace_back(i % pairs, static_cast<uint64_t>(i / pairs));
    }
    FlowBatch b = examples.DrawsBatch(draws, /*salt=*/0xE7A1ULL, model->device());
    if (!structure_label.empty()) {
      torch::Tensor y = b.y.cpu().clone();
      for (size_t i = 0; i < draws.size(); ++i) {
        auto it = structure_label.find(pair_info[draws[i].first]->key);
        if (it != structure_label.end()) y[static_cast<int64_t>(i)] = it->second;
      }
      b.y = y.to(model->device());
    }
    DecodedSample gen, source;
    torch::Tensor gen_expr, source_expr;
    CF_RETURN_IF_ERROR(TorchCall("eval sampling", [&] {
      c10::InferenceMode guard;
      JointLatent z = SampleFlow(model->velocity_fn(), b.z0, b.y, model->null_label(), so);
      gen = model->Decode(z);
      // The controls through the same decoders: their latents without the source noise, which
      // only seeds the flow (decoded with it, the DNA background read ~5 SD darker and every
      // model Δ gained that as an effect).
      source = model->Decode(b.control);
      if (z.gene.defined()) {
        gen_expr = model->gene_ae()->DecodeStandardized(z.gene).cpu().to(torch::kFloat64);
        source_expr =
            model->gene_ae()->DecodeStandardized(b.control.gene).cpu().to(torch::kFloat64);
      }
    }));
    std::vector<torch::Tensor> real_rgb, fake_rgb, control_rgb;
    for (size_t i = 0; i < positions.size(); ++i) {
      const data::ManifestPair& info = *pair_info[draws[i].first];
      Accumulated& a = acc[key_slot.at(info.key)];
      const CachedPair& pair = index.pairs[b.pairs[i]];
      CF_ASSIGN_OR_RETURN(torch::Tensor real, centre_crop(pair.well));
      // The control is the well the sample started from (z0): a same-plate DMSO well's centre crop.
      CF_ASSIGN_OR_RETURN(torch::Tensor control, centre_crop(b.control_wells[i]));
      torch::Tensor fake = gen.images[i].cpu();
      CF_ASSIGN_OR_RETURN(Vec p_fake, RawProfile(fake));
      CF_ASSIGN_OR_RETURN(Vec p_source, RawProfile(source.images[i].cpu()));
      CF_ASSIGN_OR_RETURN(Vec p_control, RawProfile(control));
      CF_ASSIGN_OR_RETURN(Vec p_real, RawProfile(real));
      a.profile.push_back(standardizer.Apply(p_fake));
      a.profile_control.push_back(standardizer.Apply(p_source));
      a.profile_input.push_back(standardizer.Apply(p_control));
      model_images.push_back(a.profile.back());
      control_images.push_back(a.profile_input.back());
      real_images.push_back(standardizer.Apply(p_real));
      if (gen_expr.defined()) {
        a.gene.push_back(
            Vec(gen_expr[i].data_ptr<double>(), gen_expr[i].data_ptr<double>() + gen_expr.size(1)));
        a.gene_control.push_back(Vec(source_expr[i].data_ptr<double>(),
                                     source_expr[i].data_ptr<double>() + source_expr.size(1)));
        a.gene_input.push_back(Rows(expr, {b.control_gene_rows[i]}));
      }
      ++a.n;
      real_rgb.push_back(Rgb(real));
      fake_rgb.push_back(Rgb(fake));
      control_rgb.push_back(Rgb(control));
      const std::string stem = absl::StrFormat("%06d", positions[i]);
      cv::imwrite(absl::StrCat(out, "/real/", stem, ".png"), ToMat(real_rgb.back()));
      cv::imwrite(absl::StrCat(out, "/fake/", stem, ".png"), ToMat(fake_rgb.back()));
      cv::imwrite(absl::StrCat(out, "/control/", stem, ".png"), ToMat(control_rgb.back()));
      if (positions[i] < pairs && static_cast<int64_t>(grid.size()) < c.grid_perturbations) {
        // First draw of each of the first pairs: one column per treatment.
        const std::string col = absl::StrFormat("%s/%02d", out + "/grid", grid.size());
        cv::imwrite(col + "_control.png", ToMat(control_rgb.back()));
        cv::imwrite(col + "_real.png", ToMat(real_rgb.back()));
        cv::imwrite(col + "_generated.png", ToMat(fake_rgb.back()));
        grid.push_back({info.key, PngBytes(control_rgb.back()), PngBytes(real_rgb.back()),
                        PngBytes(fake_rgb.back())});
        figure.push_back({control_rgb.back(), real_rgb.back(), fake_rgb.back()});
      }
    }
    CF_ASSIGN_OR_RETURN(torch::Tensor rf, extractor->Features(torch::stack(real_rgb)));
    CF_ASSIGN_OR_RETURN(torch::Tensor ff, extractor->Features(torch::stack(fake_rgb)));
    CF_ASSIGN_OR_RETURN(torch::Tensor cf, extractor->Features(torch::stack(control_rgb)));
    real_feats.push_back(rf);
    fake_feats.push_back(ff);
    control_feats.push_back(cf);
    bar.Update(start + static_cast<int64_t>(positions.size()));
  }
  bar.Finish();

  // Real wells, baselines and truth per treatment.
  std::map<std::string, Vec> truth;
  if (!c.ground_truth.empty()) {
    CF_ASSIGN_OR_RETURN(truth, LoadTruth(c.ground_truth, m));
  }
  std::map<std::string, std::vector<const data::ManifestPair*>> by_key;
  std::vector<int64_t> train_rows;
  std::set<std::pair<std::string, std::string>> train_wells;
  std::map<std::string, std::vector<const data::ManifestPair*>> train_pairs_of;  // by compound
  for (const auto& p : m.pairs) {
    by_key[p.key].push_back(&p);
    if (p.split == data::Split::kTrain) {
      train_pairs_of[p.perturbation].push_back(&p);
      train_rows.push_back(p.l1000_row);
      train_wells.insert({p.cp_plate, p.well});
    }
  }
  std::sort(train_rows.begin(), train_rows.end());
  train_rows.erase(std::unique(train_rows.begin(), train_rows.end()), train_rows.end());
  const Vec gene_train_mean = train_rows.empty() ? Vec() : Rows(expr, train_rows);
  std::vector<Vec> train_profiles;
  {
    // At most 256 training wells, evenly spaced, for the train-mean profile.
    const size_t step = std::max<size_t>(1, train_wells.size() / 256);
    size_t k = 0;
    for (const auto& w : train_wells) {
      if (k++ % step) continue;
      CF_ASSIGN_OR_RETURN(Vec p, profiles.Well(w.first, w.second, well_sites.at(w)));
      train_profiles.push_back(std::move(p));
    }
  }
  const Vec profile_train_mean = MeanRows(train_profiles);
  // The train-mean baseline's Δ is the average training effect: from the mean of ALL DMSO wells.
  // Taken from the evaluated wells' own plate controls it would share their noise with the real Δ
  // and score a correlation without predicting anything (measured: gene Pearson-Δ 0.2-0.3 on
  // compounds with no effect at all).
  std::set<std::string> all_cp_plates, all_l1000_plates;
  for (const auto& w : m.cp_controls) all_cp_plates.insert(w.plate);
  for (const auto& [plate, rows] : index.l1000_controls) all_l1000_plates.insert(plate);
  CF_ASSIGN_OR_RETURN(const Vec profile_all_controls, profiles.Controls(all_cp_plates));
  auto l1000_controls = [&](const std::set<std::string>& plates) {
    std::vector<int64_t> rows;
    for (const std::string& p : plates) {
      auto it = index.l1000_controls.find(p);
      if (it != index.l1000_controls.end())
        rows.insert(rows.end(), it->second.begin(), it->second.end());
    }
    return rows;
  };
  const bool genes = model->has_genes();
  EvalInput input;
  input.profile_features = ProfileFeatureNames();
  input.seed = ctx.config.seed;
  for (size_t k = 0; k < keys.size(); ++k) {
    const Accumulated& a = acc[k];
    CompoundRecord rec;
    rec.key = keys[k];
    rec.samples = a.n;
    // Real: the evaluated split's wells / rows of this treatment; the replicate: one training
    // well and row of the same treatment that the evaluated pairs do not use.
    std::set<std::pair<std::string, std::string>> wells;
    std::set<int64_t> rows;
    std::set<std::string> cp_plates, l1000_plates;
    for (const data::ManifestPair* p : by_key.at(rec.key)) {
      if (data::SplitName(p->split) != split) continue;
      rec.perturbation = p->perturbation;
      wells.insert({p->cp_plate, p->well});
      rows.insert(p->l1000_row);
      cp_plates.insert(p->cp_plate);
      l1000_plates.insert(p->l1000_plate);
    }
    const data::ManifestPair* rep_well = nullptr;
    const data::ManifestPair* rep_row = nullptr;
    for (const data::ManifestPair* p : by_key.at(rec.key)) {
      if (p->split != data::Split::kTrain) continue;
      if (!rep_well && !wells.count({p->cp_plate, p->well})) rep_well = p;
      if (!rep_row && !rows.count(p->l1000_row)) rep_row = p;
    }
    const int row = m.VocabRow(rec.perturbation);
    if (row >= 0) rec.name = m.vocabulary[row].name;
    rec.seen = row >= 0;
    // Unseen: the most similar training compound by structure, whose effect is a baseline.
    const std::vector<const data::ManifestPair*>* nearest_pairs = nullptr;
    if (!rec.seen) {
      auto st = structure_of.find(rec.perturbation);
      double best = -1;
      for (const auto& v : m.vocabulary) {
        auto other = structure_of.find(v.perturbation_id);
        auto train = train_pairs_of.find(v.perturbation_id);
        if (st == structure_of.end() || other == structure_of.end() ||
            train == train_pairs_of.end())
          continue;
        const double sim = chem::Tanimoto(st->second.bits, other->second.bits);
        if (sim > best) {
          best = sim;
          rec.nearest_seen = v.perturbation_id;
          rec.nearest_similarity = sim;
          nearest_pairs = &train->second;
        }
      }
    }
    std::vector<Vec> real_p;
    for (const auto& w : wells) {
      CF_ASSIGN_OR_RETURN(Vec p, profiles.Well(w.first, w.second, well_sites.at(w)));
      real_p.push_back(std::move(p));
    }
    rec.profile_real = MeanRows(real_p);
    CF_ASSIGN_OR_RETURN(rec.profile_real_control, profiles.Controls(cp_plates));
    Prediction model_pred, control_pred, train_pred, rep_pred, nearest_pred;
    std::set<std::string> nearest_cp_plates, nearest_l1000_plates;
    std::vector<int64_t> nearest_rows;
    if (nearest_pairs) {
      std::vector<Vec> ps;
      std::set<std::pair<std::string, std::string>> seen_wells;
      for (const data::ManifestPair* p : *nearest_pairs) {
        nearest_rows.push_back(p->l1000_row);
        nearest_l1000_plates.insert(p->l1000_plate);
        if (!seen_wells.insert({p->cp_plate, p->well}).second) continue;
        CF_ASSIGN_OR_RETURN(Vec v, profiles.Well(p->cp_plate, p->well, p->site_ids));
        ps.push_back(std::move(v));
        nearest_cp_plates.insert(p->cp_plate);
      }
      nearest_pred.profile = MeanRows(ps);
      CF_ASSIGN_OR_RETURN(nearest_pred.profile_control, profiles.Controls(nearest_cp_plates));
    }
    model_pred.profile = MeanRows(a.profile);
    model_pred.profile_control = MeanRows(a.profile_control);
    control_pred.profile = control_pred.profile_control = MeanRows(a.profile_input);
    train_pred.profile = profile_train_mean;
    train_pred.profile_control = profile_all_controls;
    if (rep_well) {
      CF_ASSIGN_OR_RETURN(rep_pred.profile,
                          profiles.Well(rep_well->cp_plate, rep_well->well, rep_well->site_ids));
      CF_ASSIGN_OR_RETURN(rep_pred.profile_control, profiles.Controls({rep_well->cp_plate}));
    }
    if (genes) {
      rec.gene_real = Rows(expr, std::vector<int64_t>(rows.begin(), rows.end()));
      rec.gene_real_control = Rows(expr, l1000_controls(l1000_plates));
      model_pred.gene = MeanRows(a.gene);
      model_pred.gene_control = MeanRows(a.gene_control);
      control_pred.gene = control_pred.gene_control = MeanRows(a.gene_input);
      train_pred.gene = gene_train_mean;
      train_pred.gene_control = Rows(expr, l1000_controls(all_l1000_plates));
      if (rep_row) {
        rep_pred.gene = Rows(expr, {rep_row->l1000_row});
        rep_pred.gene_control = Rows(expr, l1000_controls({rep_row->l1000_plate}));
      }
      if (nearest_pairs) {
        std::sort(nearest_rows.begin(), nearest_rows.end());
        nearest_rows.erase(std::unique(nearest_rows.begin(), nearest_rows.end()),
                           nearest_rows.end());
        nearest_pred.gene = Rows(expr, nearest_rows);
        nearest_pred.gene_control = Rows(expr, l1000_controls(nearest_l1000_plates));
      }
      auto t = truth.find(rec.key);
      if (t != truth.end()) rec.gene_truth = t->second;
    }
    rec.predictions["model"] = std::move(model_pred);
    rec.predictions["control"] = std::move(control_pred);
    if (!train_rows.empty()) rec.predictions["train_mean"] = std::move(train_pred);
    if (rep_well || rep_row) rec.predictions["replicate"] = std::move(rep_pred);
    if (nearest_pairs) rec.predictions["nearest_seen"] = std::move(nearest_pred);
    input.compounds.push_back(std::move(rec));
  }
  input.image_profiles["real"] = real_images;
  input.image_profiles["model"] = model_images;
  input.image_profiles["control"] = control_images;
  const EvalResult result = ScoreCompounds(input);

  nlohmann::json run;
  run["checkpoint"] = loaded.dir;
  run["model_id"] = loaded.metadata.model_id;
  run["split"] = split;
  run["compounds"] = keys.size();
  run["pairs"] = pairs;
  run["samples"] = n;
  run["num_steps"] = c.num_steps;
  run["guidance"] = pass.guidance;
  if (!pass.selection.is_null()) run["guidance_selection"] = pass.selection;
  run["sampler"] = c.sampler;
  run["extractor"] = extractor->name();
  run["gene_units"] = "standardized per gene with the training statistics";
  run["ground_truth"] = c.ground_truth;
  int64_t unseen = 0;
  for (const CompoundRecord& rec : input.compounds) unseen += rec.seen ? 0 : 1;
  run["unseen_compounds"] = unseen;
  run["condition"] = model->config().sit.condition;
  run["structure_conditioned"] = structure_label.size();  // unseen treatments given their structure
  nlohmann::json j = MetricsJson(result, run);
  nlohmann::json by_seen = SeenUnseenJson(input);
  if (!by_seen.empty()) j["by_seen"] = std::move(by_seen);

  // Image-feature distances beside them: FID/KID with Inception, else the fallback extractor.
  torch::Tensor real_all = torch::cat(real_feats), fake_all = torch::cat(fake_feats);
  torch::Tensor control_all = torch::cat(control_feats);
  const std::string fd = extractor->is_inception() ? "fid" : "fd_fallback";
  const std::string kd = extractor->is_inception() ? "kid_x100" : "kd_fallback_x100";
  std::vector<int64_t> sizes;
  for (int64_t s : c.sample_sizes) {
    if (s <= n) sizes.push_back(s);
  }
  if (sizes.empty() || sizes.back() < n) sizes.push_back(n);
  for (int64_t s : sizes) {
    CF_ASSIGN_OR_RETURN(FolderScores model_sc,
                        ScoreFeatures(real_all.narrow(0, 0, s), fake_all.narrow(0, 0, s),
                                      /*kid_subset_size=*/std::min<int64_t>(1000, s),
                                      extractor->is_inception(), extractor->name()));
    CF_ASSIGN_OR_RETURN(
        FolderScores base,
        ScoreFeatures(real_all.narrow(0, 0, s), control_all.narrow(0, 0, s),
                      std::min<int64_t>(1000, s), extractor->is_inception(), extractor->name()));
    j[absl::StrCat("image_", fd, "_", s)] = {{"model", model_sc.fid}, {"control", base.fid}};
    j[absl::StrCat("image_", kd, "_", s)] = {{"model", model_sc.kid}, {"control", base.kid}};
  }
  CF_RETURN_IF_ERROR(WriteFileAtomic(absl::StrCat(out, "/metrics.json"), j.dump(2)));
  CF_RETURN_IF_ERROR(
      WriteFileAtomic(absl::StrCat(out, "/per_compound.csv"), PerCompoundCsv(input, result)));
  CF_RETURN_IF_ERROR(
      WriteFileAtomic(absl::StrCat(out, "/compounds.json"), EvalInputToJson(input).dump()));
  std::string labels;
  for (const ReportGridColumn& col : grid) absl::StrAppend(&labels, col.label, "\n");
  CF_RETURN_IF_ERROR(WriteFileAtomic(absl::StrCat(out, "/grid/labels.txt"), labels));
  EvalReportOptions ro;
  ro.title = absl::StrCat("cellflux evaluation: ", loaded.metadata.model_id);
  ro.run_info = run;
  ro.grid = grid;
  CF_RETURN_IF_ERROR(
      WriteFileAtomic(absl::StrCat(out, "/report.html"), RenderEvalReport(input, result, ro)));

  // Figure: one column per treatment, rows control / real / generated.
  if (!figure.empty()) {
    const int s = static_cast<int>(figure[0][0].size(1)), pad = 4;
    cv::Mat fig(3 * s + 4 * pad, static_cast<int>(figure.size()) * (s + pad) + pad, CV_8UC3,
                cv::Scalar(255, 255, 255));
    for (size_t col = 0; col < figure.size(); ++col) {
      for (int row = 0; row < 3; ++row) {
        ToMat(figure[col][row])
            .copyTo(fig(
                cv::Rect(pad + static_cast<int>(col) * (s + pad), pad + row * (s + pad), s, s)));
      }
    }
    cv::imwrite(absl::StrCat(out, "/figure.png"), fig);
  }
  return j;
}

// eval.guidance_candidates: each candidate evaluated on the val split (never on the split that is
// reported); the best mean of gene and morphology Pearson-Δ wins (the first on a tie). Returns the
// choice and the table, which metrics.json's run.guidance_selection keeps.
absl::StatusOr<std::pair<double, nlohmann::json>> SelectGuidance(const StageContext& ctx,
                                                                 const std::string& checkpoint) {
  const EvalStageConfig& c = ctx.config.eval;
  CF_ASSIGN_OR_RETURN(std::unique_ptr<LatentCache> cache,
                      LatentCache::Open(StageDir(ctx, "latents")));
  const auto& pairs = cache->index().pairs;
  if (std::none_of(pairs.begin(), pairs.end(),
                   [](const CachedPair& p) { return p.split == "val"; }))
    return absl::FailedPreconditionError(absl::StrCat(
        "eval.guidance_candidates: the latent cache of ", ctx.config.data_dir,
        " has no val pairs to choose the guidance on (prepare with --val-fraction > 0, or set "
        "eval.guidance and leave eval.guidance_candidates empty)"));
  nlohmann::json table = nlohmann::json::array();
  double best = c.guidance_candidates.front(),
         best_score = -std::numeric_limits<double>::infinity();
  for (double g : c.guidance_candidates) {
    EvalPass pass{"val", g, absl::StrFormat("%s/guidance/%g", StageDir(ctx, "eval"), g), {}};
    CF_ASSIGN_OR_RETURN(nlohmann::json j, EvaluatePass(ctx, checkpoint, pass));
    nlohmann::json row = {{"guidance", g}, {"compounds", j["run"]["compounds"]}};
    double sum = 0;
    int terms = 0;
    for (const char* metric : {"gene_pearson_delta", "morph_pearson_delta"}) {
      if (!j.contains(metric)) continue;
      const double v = j[metric]["model"].get<double>();
      row[metric] = v;
      sum += v;
      ++terms;
    }
    const double score = terms ? sum / terms : 0.0;
    row["score"] = score;
    CF_LOG(INFO) << "eval: guidance " << g << " on val: " << row.dump();
    if (score > best_score) {
      best_score = score;
      best = g;
    }
    table.push_back(std::move(row));
  }
  CF_LOG(INFO) << "eval: guidance " << best << " chosen on val (mean of gene and morphology "
               << "Pearson-Δ " << best_score << ")";
  nlohmann::json selection = {{"split", "val"},
                              {"criterion", "mean of gene and morph Pearson-Δ (model)"},
                              {"chosen", best},
                              {"candidates", std::move(table)}};
  return std::make_pair(best, std::move(selection));
}

}  // namespace

absl::Status RunEvalStage(const StageContext& ctx, const std::string& checkpoint_arg) {
  if (!ctx.dist->is_main()) return ctx.dist->Barrier();
  const EvalStageConfig& c = ctx.config.eval;
  std::string checkpoint = checkpoint_arg;
  if (checkpoint.empty()) {
    const std::string root = CheckpointsRoot(ctx);
    absl::StatusOr<std::string> best = ReadCheckpointPointer(root, kBestPointer);
    checkpoint = best.ok() ? absl::StrCat(root, "/", *best) : root;
  }
  EvalPass pass{"", c.guidance, StageDir(ctx, "eval"), {}};
  if (!c.guidance_candidates.empty()) {
    CF_ASSIGN_OR_RETURN(std::tie(pass.guidance, pass.selection), SelectGuidance(ctx, checkpoint));
  }
  CF_ASSIGN_OR_RETURN(nlohmann::json j, EvaluatePass(ctx, checkpoint, pass));
  CF_LOG(INFO) << "eval: " << j.dump();
  std::cout << j.dump(2) << "\n";
  return absl::OkStatus();
}

}  // namespace cellflux::trainer
