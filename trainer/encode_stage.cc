// Stage encode: run the frozen image VAE and gene autoencoder once over the prepared dataset and
// cache the latents (latent_cache.h), so flow training reads latents, not TIFFs.
//
// Per well (perturbed wells of every pair and every DMSO control well): crop 0 is the centre crop
// of its first site (evaluation), crops 1..K are random crops of random sites (training
// augmentation), all drawn from a generator seeded by (seed, well index). Per L1000 row: the gene
// latent and the standardized expression.
#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/data/dataset.h"
#include "common/data/manifest.h"
#include "common/models/normalization.h"
#include "common/util/files.h"
#include "common/util/logging.h"
#include "common/util/progress.h"
#include "common/util/status_macros.h"
#include "trainer/components.h"
#include "trainer/latent_cache.h"
#include "trainer/stages.h"

namespace cellflux::trainer {
namespace {

struct WellKey {
  std::string plate, well;
  bool operator<(const WellKey& o) const {
    return std::tie(plate, well) < std::tie(o.plate, o.well);
  }
};

std::string FileOr(const std::string& path) {
  absl::StatusOr<std::string> s = ReadFile(path);
  return s.ok() ? *s : "";
}

}  // namespace

absl::Status RunEncodeStage(const StageContext& ctx) {
  const std::string dir = StageDir(ctx, "latents");
  const EncodeStageConfig& c = ctx.config.encode;
  const std::string hash = HashStrings(
      {"encode/v1", ctx.model.ToJson().dump(), FileOr(ctx.config.data_dir + "/summary.json"),
       FileOr(StageDir(ctx, "gene_ae") + "/stamp.json"),
       FileOr(StageDir(ctx, "vae") + "/stamp.json"),
       absl::StrCat(c.crops_per_site, "/", ctx.config.seed, "/", ctx.config.on_bad_sample)});
  if (!ctx.force && StampMatches(dir, hash)) {
    CF_LOG(INFO) << "encode: up to date (" << dir << ")";
    return absl::OkStatus();
  }
  if (!ctx.dist->is_main()) return ctx.dist->Barrier();

  CF_ASSIGN_OR_RETURN(CellFluxModel model, BuildModelWithComponents(ctx));
  CF_ASSIGN_OR_RETURN(data::Manifest m,
                      data::LoadManifest(ctx.config.data_dir, /*load_expression=*/true));
  const bool skip_bad = ctx.config.on_bad_sample == "skip";
  const int64_t size = ctx.model.image_size;

  // Wells in a fixed order: perturbed wells of the pairs, then the controls.
  std::map<WellKey, std::vector<int>> well_sites;
  for (const auto& p : m.pairs) well_sites[{p.cp_plate, p.well}] = p.site_ids;
  for (const auto& w : m.cp_controls) well_sites[{w.plate, w.well}] = w.site_ids;

  std::filesystem::remove_all(dir);
  LatentCacheWriter writer(dir, /*rows_per_shard=*/4096);
  LatentIndex index;
  std::map<WellKey, int64_t> well_index;
  std::map<std::string, int64_t> bad;
  ProgressOptions po;
  po.label = "encode";
  po.unit = "well";
  ProgressBar bar(static_cast<int64_t>(well_sites.size()), po);

  std::vector<torch::Tensor> pending;           // crops [5, S, S] in [-1, 1]
  std::vector<std::pair<int64_t, int>> owners;  // (cached well, crop slot) of each pending crop
  auto flush = [&]() -> absl::Status {
    if (pending.empty()) return absl::OkStatus();
    LatentPosterior post;
    CF_RETURN_IF_ERROR(TorchCall("encoding images", [&] {
      c10::InferenceMode guard;
      post = model->EncodeImages(torch::stack(pending).to(ctx.device));
    }));
    CF_ASSIGN_OR_RETURN(int64_t first, writer.AppendImages(post.mean, post.std));
    for (size_t i = 0; i < owners.size(); ++i) {
      index.wells[owners[i].first].crop_rows[owners[i].second] = first + static_cast<int64_t>(i);
    }
    pending.clear();
    owners.clear();
    return absl::OkStatus();
  };

  int64_t done = 0, well_no = 0;
  for (const auto& [key, sites] : well_sites) {
    ++well_no;
    std::mt19937_64 rng(data::MixSeeds(ctx.config.seed, static_cast<uint64_t>(well_no)));
    std::map<int, torch::Tensor> loaded;  // site → normalized [5, H, W]
    absl::Status well_status;
    auto site_image = [&](int site_id) -> absl::StatusOr<torch::Tensor> {
      auto it = loaded.find(site_id);
      if (it != loaded.end()) return it->second;
      CF_ASSIGN_OR_RETURN(torch::Tensor raw,
                          data::LoadSiteImage(m.sites[site_id], /*check_12bit=*/true));
      if (raw.size(1) < size || raw.size(2) < size) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "site %s (plate %s well %s): %dx%d is smaller than the %d px crop",
            m.sites[site_id].paths[0], key.plate, key.well, raw.size(2), raw.size(1), size));
      }
      torch::Tensor norm = NormalizeImages(raw.unsqueeze(0), ctx.model.normalization).squeeze(0);
      loaded[site_id] = norm;
      return norm;
    };
    std::vector<torch::Tensor> crops;
    for (int64_t k = 0; k <= c.crops_per_site && well_status.ok(); ++k) {
      const int site = k == 0 ? sites[0] : sites[data::UniformIndex(&rng, sites.size())];
      absl::StatusOr<torch::Tensor> img = site_image(site);
      if (!img.ok()) {
        well_status = img.status();
        break;
      }
      crops.push_back(data::CropImage(*img, size, /*random=*/k > 0, &rng).contiguous());
    }
    if (!well_status.ok()) {
      if (!skip_bad) return well_status;
      ++bad[std::string(well_status.message()).substr(0, 80)];
      CF_LOG(WARNING) << "encode: skipping well " << key.plate << "/" << key.well << ": "
                      << well_status.message();
      bar.Update(++done);
      continue;
    }
    const int64_t w = static_cast<int64_t>(index.wells.size());
    well_index[key] = w;
    index.wells.push_back({key.plate, key.well, std::vector<int64_t>(crops.size(), -1)});
    for (size_t k = 0; k < crops.size(); ++k) {
      pending.push_back(crops[k]);
      owners.emplace_back(w, static_cast<int>(k));
      if (static_cast<int64_t>(pending.size()) >= c.batch_size) CF_RETURN_IF_ERROR(flush());
    }
    bar.Update(++done);
  }
  CF_RETURN_IF_ERROR(flush());

  // Genes: every expression row (gene_row = l1000_row).
  const int64_t rows = static_cast<int64_t>(m.expression_rows.size());
  const int64_t g = static_cast<int64_t>(m.gene_ids.size());
  torch::Tensor raw = torch::from_blob(m.expression.data(), {rows, g}, torch::kFloat32).clone();
  torch::Tensor gene_latents, standardized;
  CF_RETURN_IF_ERROR(TorchCall("encoding expression", [&] {
    c10::InferenceMode guard;
    torch::Tensor x = raw.to(ctx.device);
    gene_latents = model->EncodeExpression(x).cpu();
    standardized = model->gene_ae()->Standardize(x).cpu();
  }));

  int64_t dropped_pairs = 0;
  for (const auto& p : m.pairs) {
    auto it = well_index.find({p.cp_plate, p.well});
    if (it == well_index.end()) {
      ++dropped_pairs;
      continue;
    }
    CachedPair cp;
    const int row = m.VocabRow(p.perturbation);
    cp.y = row >= 0 ? row : ctx.model.sit.num_classes;  // not in the vocabulary → null label
    cp.well = it->second;
    cp.gene_row = p.l1000_row;
    cp.split = data::SplitName(p.split);
    cp.cp_plate = p.cp_plate;
    cp.l1000_plate = p.l1000_plate;
    index.pairs.push_back(cp);
  }
  for (const auto& w : m.cp_controls) {
    auto it = well_index.find({w.plate, w.well});
    if (it != well_index.end()) index.cp_controls[w.plate].push_back(it->second);
  }
  for (const auto& [plate, r] : m.l1000_controls) index.l1000_controls[plate] = r;
  // A pair whose plate lost all its control wells cannot be trained on.
  std::vector<CachedPair> kept;
  for (auto& p : index.pairs) {
    if (index.cp_controls.count(p.cp_plate) && index.l1000_controls.count(p.l1000_plate))
      kept.push_back(p);
    else
      ++dropped_pairs;
  }
  index.pairs = std::move(kept);
  CF_RETURN_IF_ERROR(writer.Finish(std::move(index), gene_latents, standardized));
  int64_t skipped = 0;
  for (const auto& [reason, n] : bad) skipped += n;
  bar.Finish(absl::StrFormat("%d wells, %d bad wells skipped, %d pairs dropped", done - skipped,
                             skipped, dropped_pairs));
  CF_RETURN_IF_ERROR(WriteStamp(dir, hash));
  return ctx.dist->Barrier();
}

}  // namespace cellflux::trainer
