// Classifier-free-guided Euler sampling of the rectified flow (paper §3, DESIGN §1 "Sampler").
//
// Everything is row-wise: each row of a JointLatent carries its own time t, step dt, guidance α
// and label, so the server's step-level batcher can put samples at different steps (and with
// different guidance) into one forward. SampleEuler is the fixed-batch loop over the same pieces.
//
//   v_guided = α·v(z, t, c) + (1 − α)·v(z, t, ∅)        (α = 1 ⇒ purely conditional)
//   z_{i+1}  = z_i + dt·v_guided(z_i, t_i),  t_i = i/N,  dt = 1/N,  i = 0 … N−1
//
// The functions run under whatever grad / inference mode the caller set (the server's batch
// thread sets c10::InferenceMode), on the device of the inputs. Shape errors throw c10::Error;
// callers convert at their boundary with TorchCall. Deterministic: the same inputs on the same
// device give bit-identical outputs (no randomness in here; the start latent carries the seed).
//
// Precision: the state z, the guidance combination and the Euler update stay in z's dtype
// (float32): a velocity returned in another dtype (a bfloat16 model, common/models/precision.h)
// is cast to z's dtype before it is combined. CellFluxModel's Velocity already returns float32.
#ifndef CELLFLUX_COMMON_FLOW_SAMPLER_H_
#define CELLFLUX_COMMON_FLOW_SAMPLER_H_

#include <torch/types.h>

#include <cstdint>

#include "common/flow/joint_latent.h"

namespace cellflux {

// Guided velocity of every row of z, with ONE call of `v`: the N conditional rows first, then one
// unconditional row (label `null_label`, same z and t) for each row whose α ≠ 1. Rows with α = 1
// add nothing to the batch and get exactly the conditional velocity.
//   z: image [N, C, h, w], gene [N, G] or undefined;  t: [N] float;  y: [N] int64;
//   guidance: [N] float (α per row; a 0-dim tensor is broadcast to every row).
// Checking which rows need the unconditional half reads `guidance` on the host (one sync).
JointLatent GuidedVelocity(const VelocityFn& v, const JointLatent& z, const torch::Tensor& t,
                           const torch::Tensor& y, const torch::Tensor& guidance,
                           int64_t null_label);

// z + dt·vel row by row. dt: [N] (cast to each part's dtype).
JointLatent EulerStep(const JointLatent& z, const JointLatent& vel, const torch::Tensor& dt);

struct SamplerOptions {
  int num_steps = 50;           // N ≥ 1 Euler steps from t = 0 to t = 1
  double guidance_scale = 1.0;  // α for every row; 1 = no unconditional forward
};

// Integrates from z0 (t = 0, the control latent) to t = 1 with N Euler steps, the velocity at
// t_i = i/N, every row with label y and the same α. Returns the latent at t = 1.
JointLatent SampleEuler(const VelocityFn& v, JointLatent z0, const torch::Tensor& y,
                        int64_t null_label, const SamplerOptions& options);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_FLOW_SAMPLER_H_
