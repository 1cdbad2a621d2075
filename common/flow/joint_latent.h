// The joint CellFluxMM latent: image latents and gene latent of the same samples, and the
// velocity-function signature every sampler and loss works with.
#ifndef CELLFLUX_COMMON_FLOW_JOINT_LATENT_H_
#define CELLFLUX_COMMON_FLOW_JOINT_LATENT_H_

#include <torch/types.h>

#include <functional>

namespace cellflux {

struct JointLatent {
  torch::Tensor image;  // [N, C, h, w] scaled image latents (C = channels × latent_channels)
  torch::Tensor gene;   // [N, G] gene latents; undefined for an image-only model
};

// v(z, t, y): velocity of each row. t: [N] float in [0, 1] (per-sample), y: [N] int64 row of the
// perturbation table (num_classes = the null row). Returns the same shapes as z.
using VelocityFn = std::function<JointLatent(const JointLatent& z, const torch::Tensor& t,
                                             const torch::Tensor& y)>;

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_FLOW_JOINT_LATENT_H_
