// Stage vae: either import pretrained diffusers AutoencoderKL weights (--pretrained, e.g. the real
// sd-vae-ft-mse safetensors) or train the configured (small) VAE from scratch on single-channel
// pseudo-RGB crops of the training images (reconstruction MSE + kl_weight · KL). Either way it
// reports reconstruction PSNR per Cell Painting channel on held-out centre crops.
#include <torch/torch.h>

#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/data/dataset.h"
#include "common/data/manifest.h"
#include "common/models/normalization.h"
#include "common/models/vae.h"
#include "common/torch/tensors.h"
#include "common/util/files.h"
#include "common/util/logging.h"
#include "common/util/progress.h"
#include "common/util/status_macros.h"
#include "nlohmann/json.hpp"
#include "trainer/stages.h"

namespace cellflux::trainer {
namespace {

// Normalized sites by id, kept in memory up to a budget (small datasets fit entirely).
class SiteSource {
 public:
  SiteSource(const data::Manifest* m, const ImageNormalization* norm, int64_t budget_bytes)
      : m_(m), norm_(norm), budget_(budget_bytes) {}
  absl::StatusOr<torch::Tensor> Get(int site_id) {
    auto it = cache_.find(site_id);
    if (it != cache_.end()) return it->second;
    CF_ASSIGN_OR_RETURN(torch::Tensor raw,
                        data::LoadSiteImage(m_->sites[site_id], /*check_12bit=*/true));
    torch::Tensor img = NormalizeImages(raw.unsqueeze(0), *norm_).squeeze(0);
    if (used_ + static_cast<int64_t>(img.nbytes()) <= budget_) {
      used_ += img.nbytes();
      cache_[site_id] = img;
    }
    return img;
  }

 private:
  const data::Manifest* m_;
  const ImageNormalization* norm_;
  int64_t budget_, used_ = 0;
  std::map<int, torch::Tensor> cache_;
};

std::string FileFingerprint(const std::string& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  return ec ? path : absl::StrCat(path, ":", size);
}

// PSNR (data range 2, images in [-1, 1]) per channel of decode(mean(encode(x))).
absl::StatusOr<std::vector<double>> ChannelPsnr(AutoencoderKL& ae, const torch::Tensor& crops,
                                                const torch::Device& device) {
  std::vector<double> out;
  CF_RETURN_IF_ERROR(TorchCall("VAE PSNR", [&] {
    c10::InferenceMode guard;
    ae->eval();
    for (int64_t c = 0; c < crops.size(1); ++c) {
      torch::Tensor x =
          crops.select(1, c).unsqueeze(1).expand({-1, 3, -1, -1}).to(device);  // [N, 3, S, S]
      torch::Tensor rec = ae->Decode(ae->Encode(x).mean).mean(1, /*keepdim=*/true).clamp(-1, 1);
      double mse = (rec - x.narrow(1, 0, 1)).pow(2).mean().item<double>();
      out.push_back(10.0 * std::log10(4.0 / std::max(mse, 1e-12)));
    }
  }));
  return out;
}

}  // namespace

absl::Status RunVaeStage(const StageContext& ctx) {
  const std::string dir = StageDir(ctx, "vae");
  const VaeStageConfig& c = ctx.config.vae;
  CF_ASSIGN_OR_RETURN(std::string summary,
                      ReadFile(absl::StrCat(ctx.config.data_dir, "/summary.json")));
  const std::string hash = HashStrings(
      // v2: the KL weighted as LDM does (VaeTrainingLoss); v1 VAEs were near their prior.
      {"vae/v2", ctx.model.vae.ToJson().dump(), ctx.model.normalization.ToJson().dump(), summary,
       absl::StrCat(ctx.model.image_size, "/", c.steps, "/", c.batch_size, "/", c.lr, "/",
                    c.kl_weight, "/", ctx.config.seed,
                    // vae.loss came later: mse (the default) keeps the stamps written before it
                    c.loss == "mse" ? "" : absl::StrCat("/", c.loss)),
       c.pretrained.empty() ? "" : FileFingerprint(c.pretrained)});
  if (!ctx.force && StampMatches(dir, hash)) {
    CF_LOG(INFO) << "vae: up to date (" << dir << ")";
    return absl::OkStatus();
  }
  if (!ctx.dist->is_main()) return ctx.dist->Barrier();
  CF_RETURN_IF_ERROR(RemoveStamp(dir));

  CF_ASSIGN_OR_RETURN(data::Manifest m,
                      data::LoadManifest(ctx.config.data_dir, /*load_expression=*/false));
  const int64_t size = ctx.model.image_size;
  SiteSource sites(&m, &ctx.model.normalization, /*budget_bytes=*/int64_t{2} << 30);
  std::vector<int> train_sites, held_sites;
  for (const auto& p : m.pairs) {
    auto& dst = p.split == data::Split::kTrain ? train_sites : held_sites;
    dst.insert(dst.end(), p.site_ids.begin(), p.site_ids.end());
  }
  for (const auto& w : m.cp_controls)
    train_sites.insert(train_sites.end(), w.site_ids.begin(), w.site_ids.end());
  if (held_sites.empty()) held_sites = train_sites;
  if (train_sites.empty())
    return absl::FailedPreconditionError("vae: the prepared data has no training sites");

  // Held-out centre crops for PSNR (first sites of held-out wells, up to 16).
  std::vector<torch::Tensor> eval_crops;
  for (size_t i = 0; i < held_sites.size() && eval_crops.size() < 16;
       i += std::max<size_t>(1, held_sites.size() / 16)) {
    CF_ASSIGN_OR_RETURN(torch::Tensor img, sites.Get(held_sites[i]));
    if (img.size(1) < size || img.size(2) < size) {
      return absl::InvalidArgumentError(
          absl::StrFormat("vae: site %s is %dx%d, smaller than image_size %d",
                          m.sites[held_sites[i]].paths[0], img.size(2), img.size(1), size));
    }
    eval_crops.push_back(data::CropImage(img, size, /*random=*/false, nullptr).contiguous());
  }
  torch::Tensor eval_batch = torch::stack(eval_crops);

  torch::manual_seed(ctx.config.seed);
  AutoencoderKL ae(ctx.model.vae);
  ae->to(ctx.device);
  nlohmann::json metrics;
  if (!c.pretrained.empty()) {
    CF_ASSIGN_OR_RETURN(TensorMap weights, LoadSafetensors(c.pretrained));
    CF_RETURN_IF_ERROR(LoadVaeWeights(ae, weights, c.pretrained));
    metrics["source"] = c.pretrained;
  } else {
    torch::optim::AdamW opt(ae->parameters(), torch::optim::AdamWOptions(c.lr).weight_decay(0.0));
    std::mt19937_64 rng(ctx.config.seed);
    ProgressOptions po;
    po.label = "vae";
    po.unit = "step";
    ProgressBar bar(c.steps, po);
    double last = 0;
    for (int64_t step = 0; step < c.steps; ++step) {
      std::vector<torch::Tensor> batch;
      for (int64_t b = 0; b < c.batch_size; ++b) {
        const int site = train_sites[data::UniformIndex(&rng, train_sites.size())];
        CF_ASSIGN_OR_RETURN(torch::Tensor img, sites.Get(site));
        const int64_t channel = static_cast<int64_t>(data::UniformIndex(&rng, img.size(0)));
        batch.push_back(data::CropImage(img.narrow(0, channel, 1), size, /*random=*/true, &rng));
      }
      CF_RETURN_IF_ERROR(TorchCall("vae step", [&] {
        ae->train();
        torch::Tensor x =
            torch::stack(batch).expand({-1, 3, -1, -1}).to(ctx.device);  // [B, 3, S, S]
        VaePosterior post = ae->Encode(x);
        torch::Tensor z = post.mean + torch::exp(0.5 * post.logvar) * torch::randn_like(post.mean);
        torch::Tensor rec = ae->Decode(z);
        torch::Tensor loss =
            VaeTrainingLoss(rec, x, post.mean, post.logvar, c.kl_weight, c.loss == "l1");
        opt.zero_grad();
        loss.backward();
        opt.step();
        last = loss.item<double>();
      }));
      if (!std::isfinite(last))
        return absl::DataLossError(absl::StrCat("vae: loss became non-finite at step ", step + 1));
      bar.Update(step + 1, absl::StrFormat("loss=%.5f", last));
    }
    bar.Finish();
    metrics["source"] = "trained";
    metrics["steps"] = c.steps;
    metrics["final_loss"] = last;
  }
  CF_ASSIGN_OR_RETURN(std::vector<double> psnr, ChannelPsnr(ae, eval_batch, ctx.device));
  for (size_t i = 0; i < psnr.size(); ++i) metrics["psnr_db"][ctx.model.channel_names[i]] = psnr[i];
  CF_LOG(INFO) << "vae: reconstruction PSNR per channel (dB, " << eval_batch.size(0)
               << " held-out centre crops): " << metrics["psnr_db"].dump();
  CF_RETURN_IF_ERROR(MakeDirs(dir));
  CF_RETURN_IF_ERROR(SaveSafetensors(absl::StrCat(dir, "/image_vae.safetensors"), StateDict(*ae)));
  CF_RETURN_IF_ERROR(WriteFileAtomic(absl::StrCat(dir, "/metrics.json"), metrics.dump(2)));
  CF_RETURN_IF_ERROR(WriteStamp(dir, hash));
  return ctx.dist->Barrier();
}

}  // namespace cellflux::trainer
