// SiT (Scalable Interpolant Transformer) velocity network with the CellFluxMM gene tokens.
//
// Layout and parameter names follow the reference SiT/DiT models.py, so official checkpoints
// (converted to safetensors) load unchanged:
//   x_embedder.proj.{weight,bias}            Conv2d(C, hidden, kernel = stride = patch)
//   t_embedder.mlp.{0,2}.{weight,bias}       256-d sinusoidal frequency embedding → MLP(SiLU)
//   y_embedder.embedding_table.weight        [num_classes + 1, hidden]; row num_classes = null
//   pos_embed                                [1, T, hidden] fixed 2-D sin-cos (frozen parameter)
//   blocks.N.{attn.qkv,attn.proj,mlp.fc1,mlp.fc2,adaLN_modulation.1}.{weight,bias}
//   final_layer.{adaLN_modulation.1,linear}.{weight,bias}
// (norm1/norm2/norm_final are LayerNorms without affine parameters, eps 1e-6: no tensors.)
//
// CellFluxMM extension (config.gene_latent_dim = G > 0, config.gene_tokens = K > 0):
//   gene_embedder.{weight,bias}              Linear(G, K·hidden) → K tokens
//   gene_pos_embed                           [1, K, hidden] learned, normal(0.02)
//   gene_final_layer.{adaLN_modulation.1,linear}.{weight,bias}
//                                            adaLN(2·hidden) + LayerNorm + modulate, then
//                                            Linear(K·hidden, G) on the flattened K tokens.
// The K gene tokens are appended after the T image patch tokens and share every block, so the
// two modalities attend to each other. Conditioning c = t_emb + y_emb.
//
// Structure encoder (config.condition = "structure" or "id+structure", issue 18; B = fingerprint
// bits, V = num_classes):
//   structure_embedder.fingerprints          [V, B] frozen parameter: vocabulary row r's Morgan
//                                            bits (0/1), SetVocabularyStructures fills it
//   structure_embedder.log_doses             [V] frozen parameter: log10(dose µM), 0 if unknown
//   structure_embedder.mlp.{0,2}             Linear(B, D) → SiLU → Linear(D, D)
//   structure_embedder.dose_mlp.{0,2}        Linear(32, D) → SiLU → Linear(D, D) over the sinusoidal
//                                            embedding of log10(dose)
//   structure_embedder.null_embedding        [1, D] learned: the null (CFG) condition
// "structure": c = t_emb + s_emb(y) (no y_embedder); "id+structure": c = t_emb + y_emb + s_emb.
// Labels: y < V is a vocabulary row, y = V the null condition, y > V a compound outside the
// vocabulary registered with SetExtraStructure (slot y − V − 1; not saved in checkpoints). For
// "id+structure" such a compound gets y_embedder's null row plus its structure embedding.
// The fingerprints live in the weights file, so a checkpoint carries every vocabulary compound's
// fingerprint beside its canonical SMILES (the perturbation vocabulary).
//
// learn_sigma: the image head predicts 2·C channels (reference checkpoints); forward returns
// only the first C (the velocity), the sigma half is dropped.
//
// Precision: forward runs in the dtype of the patch embedding's weight (float32, or bfloat16 after
// SetComputeDtype), casting x and gene to it, and returns its outputs in the dtype of x. The gene
// head (gene_final_layer) keeps its own dtype (float32 under SetComputeDtype), so the gene velocity
// is computed in float32 from the last block's tokens. With float32 weights and inputs every cast
// is a no-op (the reference-parity tests run that way).
//
// Threading: a module is not thread-safe for concurrent forward() with autograd on; under
// c10::InferenceMode concurrent forwards on one module are fine (no state is mutated).
#ifndef CELLFLUX_COMMON_MODELS_SIT_H_
#define CELLFLUX_COMMON_MODELS_SIT_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/models/attention.h"
#include "common/models/config.h"
#include "common/torch/tensors.h"

namespace cellflux {

// x * (1 + scale) + shift, with shift/scale [N, D] broadcast over the tokens of x [N, L, D].
torch::Tensor Modulate(const torch::Tensor& x, const torch::Tensor& shift,
                       const torch::Tensor& scale);

// Reference timestep embedding: [cos(t·f_i), sin(t·f_i)], f_i = max_period^(-i/half),
// i < half = dim/2 (zero-padded when dim is odd). t: [N] (any real value, fed as is) → [N, dim].
torch::Tensor TimestepFrequencyEmbedding(const torch::Tensor& t, int64_t dim,
                                         double max_period = 10000.0);

// Reference fixed 2-D sin-cos position embedding for a grid×grid patch grid, row-major tokens:
// the first dim/2 channels encode the column (w) coordinate, the last dim/2 the row (h), each as
// [sin(pos·ω), cos(pos·ω)], ω_i = 10000^(-i/(dim/4)). Computed in float64. → [grid², dim].
torch::Tensor SinCos2dPositionEmbedding(int64_t dim, int64_t grid);

// Per-sample condition drop for classifier-free guidance training: each label of y [N] (int64)
// becomes null_label with probability p, drawn from `gen` (which must live on y's device type).
// Same generator state ⇒ same result.
torch::Tensor DropConditions(const torch::Tensor& y, double p, int64_t null_label,
                             torch::Generator gen);

class TimestepEmbedderImpl : public torch::nn::Module {
 public:
  explicit TimestepEmbedderImpl(int64_t hidden_size, int64_t frequency_embedding_size = 256);
  torch::Tensor forward(const torch::Tensor& t);  // t: [N] → [N, hidden]
  torch::nn::Sequential mlp{nullptr};             // 0: Linear(256, hidden), 1: SiLU, 2: Linear

 private:
  int64_t frequency_embedding_size_;
};
TORCH_MODULE(TimestepEmbedder);

class LabelEmbedderImpl : public torch::nn::Module {
 public:
  // num_classes + 1 rows, always: the last row is the null (unconditional) token.
  LabelEmbedderImpl(int64_t num_classes, int64_t hidden_size);
  torch::Tensor forward(const torch::Tensor& y);  // y: [N] int64 → [N, hidden]
  torch::nn::Embedding embedding_table{nullptr};
};
TORCH_MODULE(LabelEmbedder);

// The structure encoder (see the top of this file). Thread-safe: SetExtraStructure swaps in a new
// copy of the extra rows, and a forward running meanwhile uses the copy it started with.
class StructureEmbedderImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kDoseFrequencies = 32;
  // bit_dropout: training-time probability of dropping each fingerprint bit (SiTConfig).
  StructureEmbedderImpl(int64_t num_classes, int64_t bits, int64_t hidden_size,
                        double bit_dropout = 0.0);
  // y: [N] int64 in [0, V + 1 + extra rows) → [N, hidden]. Labels past the registered rows read
  // the last one (callers hand out only registered labels). In train mode the bits go through
  // the bit dropout.
  torch::Tensor forward(const torch::Tensor& y);

  // rows.size() must be V; each entry the ascending set-bit indices (< B) of one vocabulary
  // compound (empty = no known structure), doses_um[r] its dose in µM (NaN or ≤ 0 = unknown).
  // INVALID_ARGUMENT names the row and the bad value.
  absl::Status SetVocabularyStructures(const std::vector<std::vector<int>>& rows,
                                       const std::vector<double>& doses_um);
  // Writes the structure under label V + 1 + slot. slot ≤ extra_rows() (= extra_rows() appends).
  // Returns the label.
  absl::StatusOr<int64_t> SetExtraStructure(int64_t slot, const std::vector<int>& bits,
                                            double dose_um);
  int64_t extra_rows() const;

  torch::nn::Sequential mlp{nullptr};       // 0: Linear(B, D), 1: SiLU, 2: Linear(D, D)
  torch::nn::Sequential dose_mlp{nullptr};  // 0: Linear(32, D), 1: SiLU, 2: Linear(D, D)
  torch::Tensor null_embedding;             // [1, D]
  torch::Tensor fingerprints;               // [V, B], requires_grad = false
  torch::Tensor log_doses;                  // [V], requires_grad = false

 private:
  double bit_dropout_ = 0.0;
  struct Extra {
    torch::Tensor bits;       // [E, B]
    torch::Tensor log_doses;  // [E]
  };
  std::shared_ptr<const Extra> Snapshot() const;

  int64_t num_classes_, bits_;
  mutable std::mutex mu_;
  std::shared_ptr<const Extra> extra_;  // null until the first SetExtraStructure
};
TORCH_MODULE(StructureEmbedder);

// log10 of a dose in µM, 0 (1 µM) when unknown (NaN or ≤ 0): the structure encoder's dose input.
double LogDose(double dose_um);

class PatchEmbedImpl : public torch::nn::Module {
 public:
  PatchEmbedImpl(int64_t in_channels, int64_t hidden_size, int64_t patch_size);
  torch::Tensor forward(const torch::Tensor& x);  // x: [N, C, H, W] → [N, T, hidden]
  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

// timm Attention (qkv bias, no q/k norm): softmax(q·kᵀ/√d)·v over all tokens, through the
// kernel its AttentionKernelSetting names (common/models/attention.h).
class AttentionImpl : public torch::nn::Module, public AttentionKernelSetting {
 public:
  AttentionImpl(int64_t dim, int64_t num_heads);
  torch::Tensor forward(const torch::Tensor& x);  // x: [N, L, D] → [N, L, D]
  torch::nn::Linear qkv{nullptr}, proj{nullptr};

 private:
  int64_t num_heads_;
};
TORCH_MODULE(Attention);

// timm Mlp: fc1 → GELU(tanh) → fc2.
class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t dim, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

// adaLN-Zero transformer block.
class SiTBlockImpl : public torch::nn::Module {
 public:
  SiTBlockImpl(int64_t hidden_size, int64_t num_heads, double mlp_ratio);
  // x: [N, L, D]; c_act: SiLU(c), [N, D] (computed once for all blocks) → [N, L, D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c_act);
  Attention attn{nullptr};
  Mlp mlp{nullptr};
  torch::nn::Sequential adaLN_modulation{nullptr};  // 0: SiLU, 1: Linear(D, 6·D)

 private:
  torch::nn::Linear ada_linear_{nullptr};  // = adaLN_modulation[1]
};
TORCH_MODULE(SiTBlock);

// Final adaLN + LayerNorm + Linear(hidden, p·p·out_channels) for the image tokens.
class FinalLayerImpl : public torch::nn::Module {
 public:
  FinalLayerImpl(int64_t hidden_size, int64_t patch_size, int64_t out_channels);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c_act);  // → [N, T, p·p·out]
  torch::nn::Linear linear{nullptr};
  torch::nn::Sequential adaLN_modulation{nullptr};  // 0: SiLU, 1: Linear(D, 2·D)

 private:
  torch::nn::Linear ada_linear_{nullptr};  // = adaLN_modulation[1]
};
TORCH_MODULE(FinalLayer);

// CellFluxMM gene head: adaLN + LayerNorm over the K gene tokens, then Linear(K·hidden, G).
class GeneFinalLayerImpl : public torch::nn::Module {
 public:
  GeneFinalLayerImpl(int64_t hidden_size, int64_t gene_tokens, int64_t gene_latent_dim);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c_act);  // [N, K, D] → [N, G]
  torch::nn::Linear linear{nullptr};
  torch::nn::Sequential adaLN_modulation{nullptr};  // 0: SiLU, 1: Linear(D, 2·D)

 private:
  torch::nn::Linear ada_linear_{nullptr};  // = adaLN_modulation[1]
};
TORCH_MODULE(GeneFinalLayer);

struct SiTOutput {
  torch::Tensor image;  // [N, C, H, W] image-latent velocity (sigma half dropped)
  torch::Tensor gene;   // [N, G] gene-latent velocity; undefined for an image-only model
};

class SiTImpl : public torch::nn::Module {
 public:
  // `config` must be valid (SiTConfig::Validate); an invalid one throws c10::Error.
  // Parameters get the reference initialisation (xavier-uniform Linear, zero adaLN and heads).
  explicit SiTImpl(const SiTConfig& config);

  // Converts every parameter to `dtype` (kFloat32 or kBFloat16) except the gene head's, which
  // stays float32. Converting back to float32 keeps the rounded values. Call before forwards
  // start (not synchronised with them).
  void SetComputeDtype(torch::ScalarType dtype);
  // The dtype the transformer blocks run in.
  torch::ScalarType compute_dtype() const;

  // x: [N, C, H, W] float, t: [N] float (per-sample time), y: [N] int64 in [0, num_classes]
  // (num_classes = null), gene: [N, G] when the config has gene tokens, else undefined.
  // Wrong shapes throw c10::Error with the tensor name and expected vs actual shape.
  SiTOutput forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& y,
                    const torch::Tensor& gene = {});

  int64_t null_label() const { return config_.num_classes; }
  const SiTConfig& config() const { return config_; }
  int64_t num_patches() const { return grid_ * grid_; }
  // Channels the image head predicts (2·C with learn_sigma).
  int64_t out_channels() const {
    return config_.learn_sigma ? 2 * config_.in_channels : config_.in_channels;
  }

  PatchEmbed x_embedder{nullptr};
  TimestepEmbedder t_embedder{nullptr};
  LabelEmbedder y_embedder{nullptr};              // only when config.uses_id()
  StructureEmbedder structure_embedder{nullptr};  // only when config.uses_structure()
  torch::Tensor pos_embed;                        // [1, T, D], requires_grad = false
  torch::nn::ModuleList blocks{nullptr};
  FinalLayer final_layer{nullptr};
  torch::nn::Linear gene_embedder{nullptr};  // only with gene tokens
  torch::Tensor gene_pos_embed;              // [1, K, D], only with gene tokens
  GeneFinalLayer gene_final_layer{nullptr};  // only with gene tokens

 private:
  void InitializeWeights();
  // [N, T, p·p·c] → [N, c, H, W] (reference unpatchify: token (h, w), patch (p, q), channel c).
  torch::Tensor Unpatchify(const torch::Tensor& x) const;

  SiTConfig config_;
  int64_t grid_;
  std::vector<SiTBlock> block_list_;  // typed views of `blocks`
};
TORCH_MODULE(SiT);

// Loads reference-named weights into `model` (any device; dtype converted). Missing, unexpected
// and mis-shaped names are one INVALID_ARGUMENT starting with `label` (the file).
// learn_sigma files: a model whose config says learn_sigma takes them as is; a model without
// learn_sigma also accepts them and keeps only the velocity half of final_layer.linear (the
// sigma outputs are discarded), so forward() results are identical either way.
absl::Status LoadSiTWeights(SiT& model, const TensorMap& tensors, const std::string& label);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_MODELS_SIT_H_
