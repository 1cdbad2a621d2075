// Stage eval (paper §4.1, DESIGN.md §7): generate for the test pairs with the EMA weights
// (eval.num_steps Euler steps, guidance eval.guidance), then report FID/KID (KID ×100) on DNA/RNA/ER
// as RGB at 1K/2.5K/5K samples (or as many as exist), gene MAE against the real perturbed
// expression beside its two baselines (the control's own expression; the mean perturbed expression
// of the training pairs), all in standardized units, and the image baseline (the controls scored
// as if generated), as work_dir/eval/metrics.json, plus work_dir/eval/figure.png (control / real /
// generated per perturbation, like the paper's Fig. 2) and the real/, fake/ and control/ PNG
// folders (for `cellflux-tool fid`). eval.samples_per_pair > 1 draws each pair again with
// another control and seed (a small split still gives a usable FD).
#include <torch/torch.h>

#include <array>
#include <filesystem>
#include <iostream>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/checkpoint/checkpoint_dir.h"
#include "common/checkpoint/model_bundle.h"
#include "common/data/dataset.h"
#include "common/data/manifest.h"
#include "common/flow/sampler.h"
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

std::string SplitForEval(const LatentCache& cache) {
  for (const char* s : {"test", "val", "train"}) {
    for (const auto& p : cache.index().pairs) {
      if (p.split == s) return s;
    }
  }
  return "test";
}

}  // namespace

absl::Status RunEvalStage(const StageContext& ctx, const std::string& checkpoint_arg) {
  if (!ctx.dist->is_main()) return ctx.dist->Barrier();
  const EvalStageConfig& c = ctx.config.eval;
  const std::string out = StageDir(ctx, "eval");
  std::string checkpoint = checkpoint_arg;
  if (checkpoint.empty()) {
    const std::string root = CheckpointsRoot(ctx);
    absl::StatusOr<std::string> best = ReadCheckpointPointer(root, kBestPointer);
    checkpoint = best.ok() ? absl::StrCat(root, "/", *best) : root;
  }
  CF_ASSIGN_OR_RETURN(Precision precision, ParsePrecision(c.precision));
  CF_ASSIGN_OR_RETURN(LoadedModel loaded, LoadCheckpointModel(checkpoint, ctx.device, precision));
  CF_LOG(INFO) << "eval: " << checkpoint << " in " << PrecisionName(loaded.model->precision());
  CellFluxModel& model = loaded.model;
  CF_ASSIGN_OR_RETURN(std::unique_ptr<LatentCache> cache,
                      LatentCache::Open(StageDir(ctx, "latents")));
  CF_ASSIGN_OR_RETURN(data::Manifest m,
                      data::LoadManifest(ctx.config.data_dir, /*load_expression=*/false));
  std::map<std::pair<std::string, std::string>, int> first_site;
  for (const auto& p : m.pairs) first_site[{p.cp_plate, p.well}] = p.site_ids[0];
  for (const auto& w : m.cp_controls) first_site[{w.plate, w.well}] = w.site_ids[0];

  const std::string split = SplitForEval(*cache);
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
  for (const char* sub : {"real", "fake", "control"}) {
    std::filesystem::remove_all(absl::StrCat(out, "/", sub));
    CF_RETURN_IF_ERROR(MakeDirs(absl::StrCat(out, "/", sub)));
  }
  CF_ASSIGN_OR_RETURN(std::unique_ptr<FeatureExtractor> extractor,
                      MakeFeatureExtractor(c.extractor, ctx.device));

  // Train-mean baseline: the mean standardized expression of the training pairs' targets.
  std::vector<int64_t> train_rows;
  for (const auto& p : cache->index().pairs) {
    if (p.split == "train") train_rows.push_back(p.gene_row);
  }
  torch::Tensor expr = cache->expression();
  torch::Tensor train_mean =
      train_rows.empty() ? torch::Tensor()
                         : expr.index_select(0, torch::tensor(train_rows, torch::kInt64)).mean(0);

  std::vector<torch::Tensor> real_feats, fake_feats, control_feats;
  double mae_sum = 0, mae_control = 0, mae_train_mean = 0;
  int64_t gene_rows = 0;
  std::vector<std::array<torch::Tensor, 3>> grid;  // control, real, generated per perturbation
  std::set<int64_t> grid_perts;
  ProgressOptions po;
  po.label = "eval";
  po.unit = "pair";
  ProgressBar bar(n, po);
  SamplerOptions so;
  so.num_steps = static_cast<int>(c.num_steps);
  so.guidance_scale = c.guidance;
  auto real_crop = [&](int64_t well) -> absl::StatusOr<torch::Tensor> {
    const CachedWell& w = cache->index().wells[well];
    CF_ASSIGN_OR_RETURN(torch::Tensor raw,
                        data::LoadSiteImage(m.sites[first_site.at({w.plate, w.well})], true));
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
    DecodedSample gen;
    CF_RETURN_IF_ERROR(TorchCall("eval sampling", [&] {
      c10::InferenceMode guard;
      JointLatent z = SampleEuler(model->velocity_fn(), b.z0, b.y, model->null_label(), so);
      gen = model->Decode(z);
      if (z.gene.defined()) gen.expression = model->gene_ae()->DecodeStandardized(z.gene).cpu();
    }));
    std::vector<torch::Tensor> real_rgb, fake_rgb, control_rgb;
    for (size_t i = 0; i < positions.size(); ++i) {
      const CachedPair& pair = cache->index().pairs[b.pairs[i]];
      CF_ASSIGN_OR_RETURN(torch::Tensor real, real_crop(pair.well));
      // The control is the well the sample started from (z0): a same-plate DMSO well's centre crop.
      CF_ASSIGN_OR_RETURN(torch::Tensor control, real_crop(b.control_wells[i]));
      torch::Tensor fake = gen.images[i].cpu();
      real_rgb.push_back(Rgb(real));
      fake_rgb.push_back(Rgb(fake));
      control_rgb.push_back(Rgb(control));
      const std::string stem = absl::StrFormat("%06d", positions[i]);
      cv::imwrite(absl::StrCat(out, "/real/", stem, ".png"), ToMat(real_rgb.back()));
      cv::imwrite(absl::StrCat(out, "/fake/", stem, ".png"), ToMat(fake_rgb.back()));
      cv::imwrite(absl::StrCat(out, "/control/", stem, ".png"), ToMat(control_rgb.back()));
      if (static_cast<int64_t>(grid.size()) < c.grid_perturbations && !grid_perts.count(pair.y)) {
        grid_perts.insert(pair.y);
        grid.push_back({control_rgb.back(), real_rgb.back(), fake_rgb.back()});
      }
    }
    CF_ASSIGN_OR_RETURN(torch::Tensor rf, extractor->Features(torch::stack(real_rgb)));
    CF_ASSIGN_OR_RETURN(torch::Tensor ff, extractor->Features(torch::stack(fake_rgb)));
    CF_ASSIGN_OR_RETURN(torch::Tensor cf, extractor->Features(torch::stack(control_rgb)));
    real_feats.push_back(rf);
    fake_feats.push_back(ff);
    control_feats.push_back(cf);
    if (gen.expression.defined()) {
      torch::Tensor real_e = expr.index_select(0, torch::tensor(b.target_gene_rows, torch::kInt64));
      torch::Tensor ctrl_e =
          expr.index_select(0, torch::tensor(b.control_gene_rows, torch::kInt64));
      mae_sum += (gen.expression - real_e).abs().mean(1).sum().item<double>();
      mae_control += (ctrl_e - real_e).abs().mean(1).sum().item<double>();
      if (train_mean.defined())
        mae_train_mean += (train_mean.unsqueeze(0) - real_e).abs().mean(1).sum().item<double>();
      gene_rows += real_e.size(0);
    }
    bar.Update(start + static_cast<int64_t>(positions.size()));
  }
  bar.Finish();

  torch::Tensor real_all = torch::cat(real_feats), fake_all = torch::cat(fake_feats);
  torch::Tensor control_all = torch::cat(control_feats);
  nlohmann::json j;
  j["checkpoint"] = loaded.dir;
  j["model_id"] = loaded.metadata.model_id;
  j["split"] = split;
  j["pairs"] = pairs;
  j["samples"] = n;
  j["num_steps"] = c.num_steps;
  j["guidance"] = c.guidance;
  j["extractor"] = extractor->name();
  const char* fd = extractor->is_inception() ? "fid" : "fd_fallback";
  const char* kd = extractor->is_inception() ? "kid_x100" : "kd_fallback_x100";
  std::vector<int64_t> sizes;
  for (int64_t s : c.sample_sizes) {
    if (s <= n) sizes.push_back(s);
  }
  if (sizes.empty() || sizes.back() < n) sizes.push_back(n);
  for (int64_t s : sizes) {
    CF_ASSIGN_OR_RETURN(FolderScores sc,
                        ScoreFeatures(real_all.narrow(0, 0, s), fake_all.narrow(0, 0, s),
                                      /*kid_subset_size=*/std::min<int64_t>(1000, s),
                                      extractor->is_inception(), extractor->name()));
    j[fd][std::to_string(s)] = sc.fid;
    j[kd][std::to_string(s)] = sc.kid;
  }
  // Image baseline, like the gene baselines: the control itself as the prediction (the score a
  // model that learned nothing gets: z1 = z0 at step 0, where the velocity is zero).
  CF_ASSIGN_OR_RETURN(FolderScores base,
                      ScoreFeatures(real_all, control_all, std::min<int64_t>(1000, n),
                                    extractor->is_inception(), extractor->name()));
  j[absl::StrCat(fd, "_baseline_control")][std::to_string(n)] = base.fid;
  j[absl::StrCat(kd, "_baseline_control")][std::to_string(n)] = base.kid;
  if (gene_rows > 0) {
    j["gene_mae"] = mae_sum / gene_rows;
    j["gene_mae_baseline_control"] = mae_control / gene_rows;
    if (train_mean.defined()) j["gene_mae_baseline_train_mean"] = mae_train_mean / gene_rows;
    j["gene_normalization"] = "standardized per gene with the training statistics";
  }
  CF_RETURN_IF_ERROR(WriteFileAtomic(absl::StrCat(out, "/metrics.json"), j.dump(2)));

  // Figure: one column per perturbation, rows control / real / generated.
  if (!grid.empty()) {
    const int s = static_cast<int>(grid[0][0].size(1)), pad = 4;
    cv::Mat fig(3 * s + 4 * pad, static_cast<int>(grid.size()) * (s + pad) + pad, CV_8UC3,
                cv::Scalar(255, 255, 255));
    for (size_t col = 0; col < grid.size(); ++col) {
      for (int row = 0; row < 3; ++row) {
        ToMat(grid[col][row])
            .copyTo(fig(
                cv::Rect(pad + static_cast<int>(col) * (s + pad), pad + row * (s + pad), s, s)));
      }
    }
    cv::imwrite(absl::StrCat(out, "/figure.png"), fig);
  }
  CF_LOG(INFO) << "eval: " << j.dump();
  std::cout << j.dump(2) << "\n";
  return absl::OkStatus();
}

}  // namespace cellflux::trainer
