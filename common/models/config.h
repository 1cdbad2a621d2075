// Model configuration: passive structs with defaults, JSON (de)serialization and Validate().
// One ModelConfig describes a whole CellFluxMM model and is stored as the checkpoint's
// config.json; configs/tiny.json and configs/paper.json are instances of it.
#ifndef CELLFLUX_COMMON_MODELS_CONFIG_H_
#define CELLFLUX_COMMON_MODELS_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace cellflux {

// SiT velocity network (reference SiT hyper-parameters plus the CellFluxMM gene tokens).
struct SiTConfig {
  int input_size = 32;   // latent height = width
  int patch_size = 2;    // 2, 4 or 8
  int in_channels = 20;  // image latent channels (5 Cell Painting channels × 4)
  int hidden_size = 384;
  int depth = 12;
  int num_heads = 6;
  double mlp_ratio = 4.0;
  int num_classes = 1000;           // perturbation vocabulary size; row num_classes is the null row
  double class_dropout_prob = 0.1;  // training-time condition drop (CFG)
  bool learn_sigma = false;  // reference checkpoints: 2× output channels, sigma half dropped
  int gene_latent_dim = 0;   // CellFluxMM gene tokens: latent size (0 = image-only SiT)
  int gene_tokens = 0;       // K tokens the gene latent is mapped to
  // Perturbation encoder (issue 18): "id" (class embedding per vocabulary row, the paper's),
  // "structure" (MLP over the compound's Morgan fingerprint plus a log-dose embedding, so a
  // compound outside the vocabulary can be conditioned on by its SMILES) or "id+structure" (the
  // sum of both; a compound outside the vocabulary gets the id part's null row).
  std::string condition = "id";
  int fingerprint_bits = 2048;  // structure encoders: Morgan fingerprint length
  // Structure encoders: in training, each fingerprint bit is dropped with this probability (the
  // rest scaled by 1/(1−p)), so the embedding cannot key on one compound's unique bits and has to
  // use the substructures compounds share; 0 = off. Never applied at sampling. In [0, 1).
  double fingerprint_dropout = 0.0;

  bool uses_id() const { return condition != "structure"; }
  bool uses_structure() const { return condition != "id"; }

  // Named sizes: "S", "B", "L", "XL" set depth/hidden/heads.
  static absl::StatusOr<SiTConfig> FromSize(const std::string& size, int patch_size);
  absl::Status Validate() const;
  nlohmann::json ToJson() const;
  static absl::StatusOr<SiTConfig> FromJson(const nlohmann::json& j);
};

// Stable-Diffusion AutoencoderKL (diffusers naming).
struct VaeConfig {
  int in_channels = 3;
  int out_channels = 3;
  std::vector<int> block_out_channels = {128, 256, 512, 512};
  int layers_per_block = 2;  // encoder; the decoder uses layers_per_block + 1
  int latent_channels = 4;
  int norm_num_groups = 32;
  double scaling_factor = 0.18215;
  bool mid_block_attention = true;

  int downsample_factor() const { return 1 << (block_out_channels.size() - 1); }
  absl::Status Validate() const;
  nlohmann::json ToJson() const;
  static absl::StatusOr<VaeConfig> FromJson(const nlohmann::json& j);
};

// MLP gene autoencoder over L1000 landmark genes.
struct GeneAutoencoderConfig {
  int num_genes = 978;
  std::vector<int> hidden_dims = {512, 256};  // encoder widths; the decoder mirrors them
  int latent_dim = 64;
  absl::Status Validate() const;
  nlohmann::json ToJson() const;
  static absl::StatusOr<GeneAutoencoderConfig> FromJson(const nlohmann::json& j);
};

// How raw 12-bit pixels map to [-1, 1] and back.
struct ImageNormalization {
  std::string method = "divide";  // "divide": x/scale*2-1; "percentile": per-channel lo/hi
  double scale = 4095.0;          // divide: raw value that maps to +1
  std::vector<double> low;        // percentile: per-channel raw value mapped to -1
  std::vector<double> high;       // percentile: per-channel raw value mapped to +1
  absl::Status Validate(int channels) const;
  nlohmann::json ToJson() const;
  static absl::StatusOr<ImageNormalization> FromJson(const nlohmann::json& j);
};

// Sampling defaults and the limits the server advertises.
struct SamplingConfig {
  int num_steps = 50;
  double guidance_scale = 1.2;
  int max_steps = 1000;
  int max_samples = 16;
  double max_guidance = 20.0;
  absl::Status Validate() const;
  nlohmann::json ToJson() const;
  static absl::StatusOr<SamplingConfig> FromJson(const nlohmann::json& j);
};

// Rectified-flow training objective.
struct FlowConfig {
  double beta = 1.0;                // weight of the gene-latent loss
  double source_noise_sigma = 0.0;  // optional Gaussian noise on z_0 (CellFlux); 0 = off
  double ema_decay = 0.9999;
  // Latents the flow starts from and is trained towards: true = a sample of the VAE posterior
  // (mean + std·ε, as latent diffusion does with the SD VAE, whose std is ~1e-2 of the signal);
  // false = the posterior mean. A small VAE trained for minutes keeps std ≈ 0.7 of a latent's
  // spread, so its samples are mostly noise the flow cannot learn (configs/tiny.json: false).
  bool sample_posterior = true;
  nlohmann::json ToJson() const;
  static absl::StatusOr<FlowConfig> FromJson(const nlohmann::json& j);
};

struct ModelConfig {
  std::string name = "cellfluxmm";
  int image_size = 256;  // S: training crop, model input is S×S
  std::vector<std::string> channel_names = {"DNA", "RNA", "ER", "AGP", "Mito"};
  SiTConfig sit;
  VaeConfig vae;
  GeneAutoencoderConfig gene_ae;
  ImageNormalization normalization;
  SamplingConfig sampling;
  FlowConfig flow;
  nlohmann::json training = nlohmann::json::object();  // trainer defaults, passed through

  int num_channels() const { return static_cast<int>(channel_names.size()); }
  int latent_size() const { return image_size / vae.downsample_factor(); }
  int image_latent_channels() const { return num_channels() * vae.latent_channels; }

  // Checks each part and that they fit together (SiT input = image latent, gene dims agree).
  absl::Status Validate() const;
  nlohmann::json ToJson() const;
  static absl::StatusOr<ModelConfig> FromJson(const nlohmann::json& j);
  // Reads and validates a JSON file; errors name the file and the field.
  static absl::StatusOr<ModelConfig> Load(const std::string& path);
};

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_MODELS_CONFIG_H_
