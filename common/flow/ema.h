// Exponential moving average of a module's parameters (the weights the server runs).
//
//   shadow ← decay·shadow + (1 − decay)·param        after every optimizer step
//
// The shadows start as copies of the parameters at construction (as in the reference SiT/DiT
// trainer, which initialises the EMA with decay 0), live on the parameters' device and dtype, and
// never require grad. There is no warm-up: the decay is constant from the first update (SiT uses
// 0.9999). num_updates() counts Update calls for logging; it is not part of state() — the trainer
// saves it with its own step counter.
//
// Only parameters are averaged; buffers (fixed position embeddings, gene statistics) are neither
// tracked nor touched by CopyTo. Construct the Ema after moving the module to its device. The
// module passed to Update/CopyTo must have the same parameter names, in the same order, and
// shapes as the one the Ema was built from (a mismatch throws c10::Error naming the parameter).
//
// Not thread-safe: call from the training thread only.
#ifndef CELLFLUX_COMMON_FLOW_EMA_H_
#define CELLFLUX_COMMON_FLOW_EMA_H_

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/torch/tensors.h"

namespace cellflux {

class Ema {
 public:
  // decay in [0, 1].
  Ema(const torch::nn::Module& module, double decay);

  // shadow = decay·shadow + (1 − decay)·param for every parameter, under NoGradGuard.
  void Update(const torch::nn::Module& module);

  // Copies the shadows into the module's parameters (no grad).
  void CopyTo(torch::nn::Module& module) const;

  // Shadows by parameter name (the module's dotted names, so the map is a loadable weights file
  // for the module's parameters). The tensors are the live shadows: clone before mutating.
  TensorMap state() const;

  // Replaces the shadows from a state() map (e.g. read back with LoadSafetensors), converting to
  // each shadow's dtype and device. INVALID_ARGUMENT listing every missing, extra or mis-shaped
  // name; on error nothing is changed.
  absl::Status LoadState(const TensorMap& state);

  double decay() const { return decay_; }
  int64_t num_updates() const { return num_updates_; }
  void set_num_updates(int64_t n) { num_updates_ = n; }

 private:
  // Parameters of `module` in registration order, checked against the shadows' names/shapes.
  std::vector<torch::Tensor> MatchedParameters(const torch::nn::Module& module) const;

  double decay_;
  int64_t num_updates_ = 0;
  std::vector<std::pair<std::string, torch::Tensor>> shadows_;  // registration order
};

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_FLOW_EMA_H_
