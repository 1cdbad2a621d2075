// cellflux-train configuration: one YAML file drives every stage; command-line flags override
// single keys. Every key, its default and unit is listed here and in README "Configuration".
//
//   model_config: configs/tiny.json   # ModelConfig JSON (architecture, normalization, sampling)
//   data_dir: out/data                # output of `cellflux-train prepare`
//   work_dir: out/run                 # stage outputs: gene_ae/, vae/, latents/, checkpoints/, eval/
//   seed: 0
//   device: cpu                       # cpu | cuda | cuda:N | auto
//   threads: 0                        # intra-op threads, 0 = one per core
//   on_bad_sample: error              # error | skip (count and report)
//   gene_ae: {steps: 2000, batch_size: 256, lr: 1.0e-4, weight_decay: 0.0}
//   vae: {pretrained: "", steps: 1000, batch_size: 16, lr: 1.0e-4, kl_weight: 1.0e-6, loss: mse}
//   encode: {crops_per_site: 4, batch_size: 32}
//   flow: {steps: 2000, global_batch: 64, micro_batch: 64, lr: 1.0e-4, weight_decay: 1.0e-2,
//          grad_clip: 1.0, condition_drop: 0.1, beta: 1.0, ema_decay: 0.9999, warmup_steps: 0,
//          checkpoint_every: 500, keep_last: 3, val_every: 500, val_pairs: 64,
//          val_num_steps: 10, log_every: 10, precision: auto}
//   eval: {num_steps: 50, sampler: euler, guidance: 1.2, guidance_candidates: [], max_pairs: 5000,
//          samples_per_pair: 1, extractor: "", sample_sizes: [1000, 2500, 5000], grid_perturbations: 8,
//          ground_truth: "", crops_per_site: 9, precision: auto}
//
// precision (flow, eval): auto | fp32 | tf32 | bf16, see common/models/precision.h; auto = bf16
// on CUDA, fp32 elsewhere. flow: bf16 = bfloat16 autocast around forward and loss with float32
// master weights, AdamW state and EMA; tf32 = TF32 matmuls/convolutions on CUDA. eval: the
// precision the checkpoint is sampled in.
#ifndef CELLFLUX_TRAINER_TRAIN_CONFIG_H_
#define CELLFLUX_TRAINER_TRAIN_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cellflux::trainer {

struct GeneAeStageConfig {
  int64_t steps = 2000;
  int64_t batch_size = 256;
  double lr = 1e-4;
  double weight_decay = 0.0;
};

struct VaeStageConfig {
  std::string pretrained;  // diffusers AutoencoderKL safetensors (e.g. sd-vae-ft-mse); "" = train
  int64_t steps = 1000;
  int64_t batch_size = 16;  // pseudo-RGB single-channel crops per step
  double lr = 1e-4;
  double kl_weight = 1e-6;
  std::string loss = "mse";  // reconstruction loss: mse | l1 (Stable Diffusion's VAE: l1)
};

struct EncodeStageConfig {
  int64_t crops_per_site = 4;  // random training crops cached per site (plus the centre crop)
  int64_t batch_size = 32;     // images per encoder call
};

struct FlowStageConfig {
  int64_t steps = 2000;       // optimizer steps
  int64_t global_batch = 64;  // samples per optimizer step, summed over ranks
  int64_t micro_batch = 64;   // per rank per forward; global/(world·micro) accumulation steps
  double lr = 1e-4;
  double weight_decay = 1e-2;
  double grad_clip = 1.0;          // max global gradient norm
  double condition_drop = 0.1;     // CFG training drop probability
  double beta = -1;                // gene-loss weight; < 0 = the model config's flow.beta
  double ema_decay = -1;           // < 0 = the model config's flow.ema_decay
  int64_t warmup_steps = 0;        // linear lr warm-up
  int64_t checkpoint_every = 500;  // steps between checkpoint bundles
  int64_t keep_last = 3;           // step checkpoints kept (best and latest are never pruned)
  int64_t val_every = 500;         // steps between validations (and at the end)
  int64_t val_pairs = 64;          // validation pairs generated per validation
  int64_t val_num_steps = 10;      // Euler steps for validation samples
  int64_t log_every = 10;
  std::string precision = "auto";  // auto | fp32 | tf32 | bf16 (autocast), see above
};

struct EvalStageConfig {
  int64_t num_steps = 50;
  std::string sampler = "euler";  // euler | heun (two velocity evaluations per step)
  double guidance = 1.2;
  // Non-empty: choose the guidance among these on the val split (best mean of gene and morphology
  // Pearson-Δ), then evaluate with it; eval.guidance is then unused. Needs val pairs.
  std::vector<double> guidance_candidates;
  int64_t max_pairs = 5000;
  // Draws per test pair, each from another control well and seed: > 1 gives a small split enough
  // samples for a usable FD (the demo's 12 test pairs × 8); the paper's protocol is 1.
  int64_t samples_per_pair = 1;
  std::string extractor;  // TorchScript Inception (NVlabs inception-2015-12-05.pt); "" = fallback
  std::vector<int64_t> sample_sizes = {1000, 2500, 5000};
  int64_t grid_perturbations = 8;
  int64_t batch_size = 32;
  // Synthetic data: the generator's ground_truth.json (`cellflux-tool synth`); the eval then also
  // scores the predicted Δ against the true expression shift. "" = none.
  std::string ground_truth;
  // Real wells' morphology profiles: the mean over every site's crops on a k×k grid, k² =
  // crops_per_site rounded down to a square (1 = the centre crop; more crops, less noisy real Δ).
  int64_t crops_per_site = 9;
  std::string precision = "auto";  // auto | fp32 | tf32 | bf16: the precision samples run in
};

struct TrainConfig {
  std::string model_config = "configs/tiny.json";
  std::string data_dir = "out/data";
  std::string work_dir = "out/run";
  uint64_t seed = 0;
  std::string device = "cpu";
  int threads = 0;
  std::string on_bad_sample = "error";
  GeneAeStageConfig gene_ae;
  VaeStageConfig vae;
  EncodeStageConfig encode;
  FlowStageConfig flow;
  EvalStageConfig eval;

  absl::Status Validate() const;
  // Loads YAML; unknown keys are errors (they are usually typos), naming the key.
  static absl::StatusOr<TrainConfig> Load(const std::string& path);
  static absl::StatusOr<TrainConfig> FromYamlString(const std::string& text,
                                                    const std::string& label);
  // "flow.steps=100" style override; error names the key.
  absl::Status Set(const std::string& assignment);
  std::string ToYaml() const;
};

}  // namespace cellflux::trainer

#endif  // CELLFLUX_TRAINER_TRAIN_CONFIG_H_
