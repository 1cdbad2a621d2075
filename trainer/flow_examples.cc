#include "trainer/flow_examples.h"

#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>

#include "common/flow/rectified_flow.h"
#include "common/util/seed.h"

namespace cellflux::trainer {

uint64_t MixSeed(uint64_t a, uint64_t b) {
  // Not MixSeeds (common/util/seed.h): this combination predates it and fixes every training
  // batch; the finaliser is the shared one.
  return SplitMix64Finalize(a * kSplitMix64Gamma + b + 0x632BE59BD9B4E019ULL);
}

FlowExamples::FlowExamples(const LatentCache* cache, FlowExampleOptions options)
    : cache_(cache), options_(std::move(options)) {
  const auto& pairs = cache_->index().pairs;
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (pairs[i].split == options_.split) pairs_.push_back(static_cast<int64_t>(i));
  }
}

int64_t FlowExamples::PairAt(int64_t g) const {
  const int64_t n = size();
  const int64_t epoch = g / n;
  std::lock_guard<std::mutex> lock(mu_);
  if (epoch != perm_epoch_) {
    perm_.resize(n);
    std::iota(perm_.begin(), perm_.end(), 0);
    std::mt19937_64 rng(MixSeed(options_.seed, 0xE90C0000ULL + static_cast<uint64_t>(epoch)));
    std::shuffle(perm_.begin(), perm_.end(), rng);
    perm_epoch_ = epoch;
  }
  return pairs_[perm_[g % n]];
}

FlowBatch FlowExamples::Batch(int64_t begin, int64_t end, const torch::Device& device) const {
  std::vector<std::pair<int64_t, uint64_t>> items;
  for (int64_t g = begin; g < end; ++g)
    items.emplace_back(PairAt(g), MixSeed(options_.seed, static_cast<uint64_t>(g)));
  return Build(items, device);
}

FlowBatch FlowExamples::PairsBatch(const std::vector<int64_t>& split_positions, uint64_t salt,
                                   const torch::Device& device) const {
  std::vector<std::pair<int64_t, uint64_t>> draws;
  std::map<int64_t, uint64_t> occurrences;
  for (int64_t i : split_positions) draws.emplace_back(i, occurrences[i]++);
  return DrawsBatch(draws, salt, device);
}

FlowBatch FlowExamples::DrawsBatch(const std::vector<std::pair<int64_t, uint64_t>>& draws,
                                   uint64_t salt, const torch::Device& device) const {
  std::vector<std::pair<int64_t, uint64_t>> items;
  for (const auto& [i, k] : draws) {
    uint64_t seed = MixSeed(options_.seed ^ salt, static_cast<uint64_t>(pairs_[i]));
    if (k > 0) seed = MixSeed(seed, k);
    items.emplace_back(pairs_[i], seed);
  }
  return Build(items, device);
}

FlowBatch FlowExamples::Build(const std::vector<std::pair<int64_t, uint64_t>>& items,
                              const torch::Device& device) const {
  const LatentIndex& ix = cache_->index();
  std::vector<int64_t> target_rows, control_rows, target_genes, control_genes, labels;
  std::vector<float> times;
  std::vector<uint64_t> noise_seeds;
  FlowBatch batch;
  for (const auto& [pair_index, seed] : items) {
    const CachedPair& pair = ix.pairs[pair_index];
    std::mt19937_64 rng(seed);
    auto pick = [&rng](const std::vector<int64_t>& v) {
      return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng)];
    };
    const CachedWell& well = ix.wells[pair.well];
    const int64_t control_well = pick(ix.cp_controls.at(pair.cp_plate));
    const CachedWell& control = ix.wells[control_well];
    batch.control_wells.push_back(control_well);
    // Crop 0 is the centre crop (evaluation); training draws among all cached crops.
    target_rows.push_back(options_.centre_crop_only ? well.crop_rows[0] : pick(well.crop_rows));
    control_rows.push_back(options_.centre_crop_only ? control.crop_rows[0]
                                                     : pick(control.crop_rows));
    target_genes.push_back(pair.gene_row);
    control_genes.push_back(pick(ix.l1000_controls.at(pair.l1000_plate)));
    const double u_drop = std::uniform_real_distribution<double>(0, 1)(rng);
    labels.push_back(u_drop < options_.condition_drop ? options_.null_label : pair.y);
    times.push_back(static_cast<float>(std::uniform_real_distribution<double>(0, 1)(rng)));
    noise_seeds.push_back(rng());
    batch.pairs.push_back(pair_index);
  }
  torch::Tensor m1, s1, m0, s0;
  cache_->GatherImages(target_rows, &m1, &s1);
  cache_->GatherImages(control_rows, &m0, &s0);
  if (options_.sample_posterior) {
    std::vector<torch::Tensor> e0, e1;
    std::vector<int64_t> row_shape = m1.sizes().vec();
    row_shape[0] = 1;
    for (uint64_t s : noise_seeds) {
      torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(s);
      e1.push_back(torch::randn(row_shape, gen, torch::kFloat32));
      e0.push_back(torch::randn(row_shape, gen, torch::kFloat32));
    }
    m1 = m1 + s1 * torch::cat(e1, 0);
    m0 = m0 + s0 * torch::cat(e0, 0);
  }
  batch.z1.image = m1.to(device);
  batch.z0.image = m0.to(device);
  if (ix.gene_latent_dim > 0) {
    const torch::Tensor& g = cache_->gene_latents();
    batch.z1.gene = g.index_select(0, torch::tensor(target_genes, torch::kInt64)).to(device);
    batch.z0.gene = g.index_select(0, torch::tensor(control_genes, torch::kInt64)).to(device);
  }
  batch.control = batch.z0;  // shallow: the noise below builds new tensors
  if (options_.source_noise_sigma > 0) {
    // The model config's source noise, as DrawSource adds it at inference: one generator per
    // sample (from its own seed), so a row's noise never depends on its batch.
    std::vector<JointLatent> rows;
    for (size_t i = 0; i < noise_seeds.size(); ++i) {
      const int64_t r = static_cast<int64_t>(i);
      JointLatent row;
      row.image = batch.z0.image.slice(0, r, r + 1);
      if (batch.z0.gene.defined()) row.gene = batch.z0.gene.slice(0, r, r + 1);
      torch::Generator gen =
          at::make_generator<at::CPUGeneratorImpl>(MixSeed(noise_seeds[i], 0x50C0ULL));
      rows.push_back(AddSourceNoise(row, options_.source_noise_sigma, gen));
    }
    std::vector<torch::Tensor> images, genes;
    for (const JointLatent& row : rows) {
      images.push_back(row.image);
      if (row.gene.defined()) genes.push_back(row.gene);
    }
    batch.z0.image = torch::cat(images, 0);
    if (!genes.empty()) batch.z0.gene = torch::cat(genes, 0);
  }
  batch.target_gene_rows = target_genes;
  batch.control_gene_rows = control_genes;
  batch.y = torch::tensor(labels, torch::kInt64).to(device);
  batch.t = torch::tensor(times, torch::kFloat32).to(device);
  return batch;
}

}  // namespace cellflux::trainer
