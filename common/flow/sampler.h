// Classifier-free-guided sampling of the rectified flow (paper §3, DESIGN §1 "Sampler"): Euler
// (the paper's, one velocity evaluation per step) or Heun (two per step, second order).
//
// Everything is row-wise: each row of a JointLatent carries its own time t, step dt, guidance α
// and label, so the server's step-level batcher can put samples at different steps (and with
// different guidance or samplers) into one forward. SampleEuler/SampleHeun are the fixed-batch
// loops over the same pieces.
//
//   v_guided = α·v(z, t, c) + (1 − α)·v(z, t, ∅)        (α = 1 ⇒ purely conditional)
//   Euler:  z_{i+1} = z_i + dt·v_guided(z_i, t_i),  t_i = i/N,  dt = 1/N,  i = 0 … N−1
//   Heun:   z̃ = z_i + dt·v_guided(z_i, t_i)            (an Euler step: the predictor)
//           r = z̃ + dt·v_guided(z̃, t_{i+1})           (an Euler step from there)
//           z_{i+1} = (z_i + r)/2 = z_i + dt/2·(v(z_i, t_i) + v(z̃, t_{i+1}))
// Heun is written as two Euler steps and an average (HeunAverage) so a server that only knows
// "advance these rows by one Euler step" can run it, and gives the bits SampleHeun gives.
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

// Heun's z_{i+1} from z_i and r (the second of its two Euler steps): (z + r)/2, row by row.
JointLatent HeunAverage(const JointLatent& z, const JointLatent& r);

enum class SamplerKind {
  kEuler,  // one velocity evaluation per step (the paper's sampler)
  kHeun,   // two velocity evaluations per step (predictor + corrector)
};

// "euler" / "heun".
const char* SamplerName(SamplerKind kind);

struct SamplerOptions {
  int num_steps = 50;                         // N ≥ 1 steps from t = 0 to t = 1
  double guidance_scale = 1.0;                // α for every row; 1 = no unconditional forward
  SamplerKind sampler = SamplerKind::kEuler;  // SampleFlow only
};

// Integrates from z0 (t = 0, the control latent) to t = 1 with N Euler steps, the velocity at
// t_i = i/N, every row with label y and the same α. Returns the latent at t = 1.
JointLatent SampleEuler(const VelocityFn& v, JointLatent z0, const torch::Tensor& y,
                        int64_t null_label, const SamplerOptions& options);

// The same with Heun: 2N velocity evaluations, at t_i and t_{i+1} for step i.
JointLatent SampleHeun(const VelocityFn& v, JointLatent z0, const torch::Tensor& y,
                       int64_t null_label, const SamplerOptions& options);

// SampleEuler or SampleHeun, as options.sampler says.
JointLatent SampleFlow(const VelocityFn& v, JointLatent z0, const torch::Tensor& y,
                       int64_t null_label, const SamplerOptions& options);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_FLOW_SAMPLER_H_
