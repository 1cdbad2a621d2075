// Training examples for the flow stage, as a pure function of (seed, global sample index g).
//
// Sample g of the run lives in epoch e = g / P (P = pairs in the split) at position g % P of a
// permutation seeded by (seed, e). Everything random about it — the perturbed and control crops,
// the control well and L1000 row from the same plates, t, the condition drop, the posterior noise —
// comes from a generator seeded by (seed, g). Hence:
//   * resuming at step s needs no RNG state: it rebuilds exactly the samples of an unbroken run;
//   * rank r of W takes samples [s·B + r·B/W, s·B + (r+1)·B/W) of step s: ranks never overlap, and
//     W ranks see the same global batch as one process with the same global batch B.
#ifndef CELLFLUX_TRAINER_FLOW_EXAMPLES_H_
#define CELLFLUX_TRAINER_FLOW_EXAMPLES_H_

#include <torch/types.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "common/flow/joint_latent.h"
#include "trainer/latent_cache.h"

namespace cellflux::trainer {

struct FlowBatch {
  JointLatent z0;                          // control latents (source), with the source noise
  JointLatent control;                     // the same control latents before the source noise:
                                           // what the control looks like (eval's Δ reference)
  JointLatent z1;                          // perturbed latents (target)
  torch::Tensor y;                         // [n] int64 perturbation rows, dropped ones = null label
  torch::Tensor t;                         // [n] float in [0, 1)
  std::vector<int64_t> pairs;              // pair index of each row (for evaluation)
  std::vector<int64_t> control_wells;      // cached well of each row's control (the source z0)
  std::vector<int64_t> target_gene_rows;   // gene rows of z1.gene (real perturbed expression)
  std::vector<int64_t> control_gene_rows;  // gene rows of z0.gene (the drawn control)
};

struct FlowExampleOptions {
  std::string split = "train";
  uint64_t seed = 0;
  double condition_drop = 0.0;  // probability that y becomes the null label
  int64_t null_label = 0;
  bool sample_posterior = true;     // z = mean + std·ε; false: the posterior means
  bool centre_crop_only = false;    // evaluation: crop 0 of every well
  double source_noise_sigma = 0.0;  // z0 += σ·ε (the model config's flow.source_noise_sigma)
};

class FlowExamples {
 public:
  FlowExamples(const LatentCache* cache, FlowExampleOptions options);

  int64_t size() const { return static_cast<int64_t>(pairs_.size()); }
  // Samples g ∈ [begin, end) as one batch on `device`.
  FlowBatch Batch(int64_t begin, int64_t end, const torch::Device& device) const;
  // The given pairs (indices into the split), deterministic, no shuffling: for validation. A
  // position may repeat: its k-th occurrence draws another control, crop and noise (k = 0 draws
  // what a single occurrence draws), so a small split can give many samples.
  FlowBatch PairsBatch(const std::vector<int64_t>& split_positions, uint64_t salt,
                       const torch::Device& device) const;
  // The same with explicit draws (split position, repeat k): PairsBatch's k-th occurrence of a
  // position is the draw (position, k), so batches of one long list can be built piecewise.
  FlowBatch DrawsBatch(const std::vector<std::pair<int64_t, uint64_t>>& draws, uint64_t salt,
                       const torch::Device& device) const;
  // Index into cache->index().pairs of split position i.
  int64_t pair_index(int64_t i) const { return pairs_[i]; }

 private:
  int64_t PairAt(int64_t g) const;
  FlowBatch Build(const std::vector<std::pair<int64_t, uint64_t>>& items,
                  const torch::Device& device) const;

  const LatentCache* cache_;
  FlowExampleOptions options_;
  std::vector<int64_t> pairs_;  // indices of the split's pairs
  mutable std::mutex mu_;
  mutable int64_t perm_epoch_ = -1;    // guarded by mu_
  mutable std::vector<int64_t> perm_;  // guarded by mu_
};

// splitmix64 of (a, b): independent-looking seeds for sample g of run seed a.
uint64_t MixSeed(uint64_t a, uint64_t b);

}  // namespace cellflux::trainer

#endif  // CELLFLUX_TRAINER_FLOW_EXAMPLES_H_
