// Rectified-flow training objective (paper §3): straight paths between the control latent z_0
// and the perturbed latent z_1,
//
//   z_t = (1 − t)·z_0 + t·z_1,   t ~ U(0, 1) per sample,   target velocity = z_1 − z_0,
//   loss = MSE(image-latent elements) + β · MSE(gene-latent elements).
//
// All functions are pure tensor math on the inputs' device and dtype; they run under whatever
// grad mode the caller set (the trainer backpropagates through RectifiedFlowLoss). Shape errors
// throw c10::Error; callers convert at their boundary with TorchCall.
#ifndef CELLFLUX_COMMON_FLOW_RECTIFIED_FLOW_H_
#define CELLFLUX_COMMON_FLOW_RECTIFIED_FLOW_H_

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <cstdint>

#include "common/flow/joint_latent.h"

namespace cellflux {

// t: [n] ~ U(0, 1) with `options` (dtype and device). The numbers are drawn on the generator's
// device and then moved, so a CPU generator gives the same times whatever `options.device()` is.
torch::Tensor SampleTimes(int64_t n, torch::Generator gen, const torch::TensorOptions& options);

// z_t = (1 − t)·z_0 + t·z_1 row by row. t: [N]; z0/z1 image [N, C, h, w], gene [N, G] (gene may be
// undefined in both, then it stays undefined). t is cast to each part's dtype.
JointLatent Interpolate(const JointLatent& z0, const JointLatent& z1, const torch::Tensor& t);

// Scalar (0-dim) losses. `image` and `gene` are the unweighted MSEs; total = image + β·gene.
// For an image-only latent (gene undefined or empty) `gene` is a 0 of the image dtype/device.
struct FlowLoss {
  torch::Tensor total;
  torch::Tensor image;
  torch::Tensor gene;
};

// Evaluates v(z_t, t, y) once and regresses it onto z_1 − z_0. y: [N] int64 labels (already
// dropped to the null row where CFG training wants it), t: [N] float in [0, 1].
FlowLoss RectifiedFlowLoss(const VelocityFn& v, const JointLatent& z0, const JointLatent& z1,
                           const torch::Tensor& y, const torch::Tensor& t, double beta);

// z_0 + σ·ε, ε ~ N(0, I), on the image and (when defined) gene parts — the CellFlux source-noise
// option (FlowConfig::source_noise_sigma). σ ≤ 0 returns z0 unchanged (shallow copy). Noise is
// drawn on the generator's device and moved to z0's, so a seeded CPU generator is reproducible.
JointLatent AddSourceNoise(const JointLatent& z0, double sigma, torch::Generator gen);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_FLOW_RECTIFIED_FLOW_H_
