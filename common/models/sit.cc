#include "common/models/sit.h"

#include <torch/torch.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/util/status_macros.h"

namespace cellflux {
namespace {

constexpr double kLayerNormEps = 1e-6;

// LayerNorm over the last dim without affine parameters (the reference's norm1/norm2/norm_final).
// bfloat16/half activations on the CPU are normalised in float32 (LibTorch 1.13's CPU kernel
// accumulates in the input's dtype); CUDA's kernel accumulates in float32 already, and float32
// goes straight through.
torch::Tensor PlainLayerNorm(const torch::Tensor& x) {
  if (!x.is_cuda() && (x.scalar_type() == torch::kBFloat16 || x.scalar_type() == torch::kHalf)) {
    return torch::layer_norm(x.to(torch::kFloat32), {x.size(-1)}, /*weight=*/{}, /*bias=*/{},
                             kLayerNormEps)
        .to(x.scalar_type());
  }
  return torch::layer_norm(x, {x.size(-1)}, /*weight=*/{}, /*bias=*/{}, kLayerNormEps);
}

torch::nn::Linear MakeLinear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(true));
}

}  // namespace

torch::Tensor Modulate(const torch::Tensor& x, const torch::Tensor& shift,
                       const torch::Tensor& scale) {
  // One fused op instead of the reference's mul + add: shift + x * (1 + scale).
  return torch::addcmul(shift.unsqueeze(1), x, scale.unsqueeze(1) + 1);
}

torch::Tensor TimestepFrequencyEmbedding(const torch::Tensor& t, int64_t dim, double max_period) {
  // Same op order as the reference (scalar · arange / half, then exp) so float32 rounding matches.
  const int64_t half = dim / 2;
  const auto dtype = t.is_floating_point() ? t.scalar_type() : torch::kFloat32;
  torch::Tensor freqs =
      torch::exp(torch::arange(0, half, t.options().dtype(dtype)) * (-std::log(max_period)) / half);
  torch::Tensor args = t.to(dtype).unsqueeze(1) * freqs.unsqueeze(0);  // [N, half]
  torch::Tensor emb = torch::cat({torch::cos(args), torch::sin(args)}, /*dim=*/-1);
  if (dim % 2 == 1) emb = torch::cat({emb, torch::zeros_like(emb.narrow(1, 0, 1))}, -1);
  return emb;  // [N, dim]
}

torch::Tensor SinCos2dPositionEmbedding(int64_t dim, int64_t grid) {
  TORCH_CHECK(dim % 4 == 0, "2-D sin-cos position embedding: dim ", dim,
              " must be a multiple of 4");
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const int64_t quarter = dim / 4;
  // omega_i = 10000^(-i / (dim/4)), i < dim/4.
  torch::Tensor omega =
      1.0 / torch::pow(10000.0, torch::arange(0, quarter, f64) / static_cast<double>(quarter));
  torch::Tensor coord = torch::arange(0, grid, f64);
  torch::Tensor col = coord.repeat({grid});           // token i*grid + j → j
  torch::Tensor row = coord.repeat_interleave(grid);  // token i*grid + j → i
  auto one_d = [&](const torch::Tensor& pos) {
    torch::Tensor out = pos.unsqueeze(1) * omega.unsqueeze(0);  // [T, dim/4]
    return torch::cat({torch::sin(out), torch::cos(out)}, 1);   // [T, dim/2]
  };
  return torch::cat({one_d(col), one_d(row)}, 1);  // [T, dim]
}

torch::Tensor DropConditions(const torch::Tensor& y, double p, int64_t null_label,
                             torch::Generator gen) {
  TORCH_CHECK(y.dim() == 1, "DropConditions: y must be [N], got ", ShapeOf(y));
  if (p <= 0) return y;
  torch::Tensor u = torch::rand({y.size(0)}, gen,
                                torch::TensorOptions().dtype(torch::kFloat32).device(y.device()));
  return y.masked_fill(u < p, null_label);
}

// ---------------------------------------------------------------------------------------------

TimestepEmbedderImpl::TimestepEmbedderImpl(int64_t hidden_size, int64_t frequency_embedding_size)
    : frequency_embedding_size_(frequency_embedding_size) {
  mlp = register_module(
      "mlp", torch::nn::Sequential(MakeLinear(frequency_embedding_size, hidden_size),
                                   torch::nn::SiLU(), MakeLinear(hidden_size, hidden_size)));
}

torch::Tensor TimestepEmbedderImpl::forward(const torch::Tensor& t) {
  torch::Tensor freq = TimestepFrequencyEmbedding(t, frequency_embedding_size_);  // [N, 256]
  return mlp->forward(freq.to(mlp->ptr<torch::nn::LinearImpl>(0)->weight.scalar_type()));
}

LabelEmbedderImpl::LabelEmbedderImpl(int64_t num_classes, int64_t hidden_size) {
  embedding_table =
      register_module("embedding_table", torch::nn::Embedding(num_classes + 1, hidden_size));
}

torch::Tensor LabelEmbedderImpl::forward(const torch::Tensor& y) {
  return embedding_table->forward(y);
}

double LogDose(double dose_um) {
  return std::isfinite(dose_um) && dose_um > 0 ? std::log10(dose_um) : 0.0;
}

StructureEmbedderImpl::StructureEmbedderImpl(int64_t num_classes, int64_t bits, int64_t hidden_size,
                                             double bit_dropout)
    : bit_dropout_(bit_dropout), num_classes_(num_classes), bits_(bits) {
  mlp =
      register_module("mlp", torch::nn::Sequential(MakeLinear(bits, hidden_size), torch::nn::SiLU(),
                                                   MakeLinear(hidden_size, hidden_size)));
  dose_mlp = register_module(
      "dose_mlp", torch::nn::Sequential(MakeLinear(kDoseFrequencies, hidden_size),
                                        torch::nn::SiLU(), MakeLinear(hidden_size, hidden_size)));
  null_embedding = register_parameter("null_embedding", torch::zeros({1, hidden_size}));
  fingerprints = register_parameter("fingerprints", torch::zeros({num_classes, bits}),
                                    /*requires_grad=*/false);
  log_doses = register_parameter("log_doses", torch::zeros({num_classes}), /*requires_grad=*/false);
}

std::shared_ptr<const StructureEmbedderImpl::Extra> StructureEmbedderImpl::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return extra_;
}

int64_t StructureEmbedderImpl::extra_rows() const {
  std::shared_ptr<const Extra> e = Snapshot();
  return e ? e->bits.size(0) : 0;
}

torch::Tensor StructureEmbedderImpl::forward(const torch::Tensor& y) {
  const int64_t v = num_classes_;
  torch::Tensor row = y.clamp(0, v - 1);
  torch::Tensor bits = fingerprints.index_select(0, row);   // [N, B]
  torch::Tensor log_dose = log_doses.index_select(0, row);  // [N]
  if (std::shared_ptr<const Extra> e = Snapshot()) {
    torch::Tensor is_extra = y > v;
    torch::Tensor slot = (y - (v + 1)).clamp(0, e->bits.size(0) - 1);
    bits = torch::where(is_extra.unsqueeze(1),
                        e->bits.index_select(0, slot).to(bits.device(), bits.scalar_type()), bits);
    log_dose = torch::where(
        is_extra, e->log_doses.index_select(0, slot).to(bits.device(), log_dose.scalar_type()),
        log_dose);
  }
  const torch::ScalarType dtype = fingerprints.scalar_type();
  if (is_training() && bit_dropout_ > 0) bits = torch::dropout(bits, bit_dropout_, /*train=*/true);
  torch::Tensor emb =
      mlp->forward(bits) +
      dose_mlp->forward(TimestepFrequencyEmbedding(log_dose.to(torch::kFloat32), kDoseFrequencies)
                            .to(dtype));  // [N, D]
  return torch::where((y == v).unsqueeze(1), null_embedding.to(emb.scalar_type()), emb);
}

namespace {

// Set-bit indices → a 0/1 row of `bits` floats; INVALID_ARGUMENT names `what` and the bad index.
absl::StatusOr<torch::Tensor> BitsRow(const std::vector<int>& set_bits, int64_t bits,
                                      const std::string& what) {
  torch::Tensor row = torch::zeros({bits});
  float* p = row.data_ptr<float>();
  for (int b : set_bits) {
    if (b < 0 || b >= bits) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": fingerprint bit ", b, " is outside [0, ", bits, ")"));
    }
    p[b] = 1.0f;
  }
  return row;
}

}  // namespace

absl::Status StructureEmbedderImpl::SetVocabularyStructures(
    const std::vector<std::vector<int>>& rows, const std::vector<double>& doses_um) {
  if (static_cast<int64_t>(rows.size()) != num_classes_ ||
      static_cast<int64_t>(doses_um.size()) != num_classes_) {
    return absl::InvalidArgumentError(absl::StrCat("structure encoder: expected ", num_classes_,
                                                   " vocabulary fingerprints and doses, got ",
                                                   rows.size(), " and ", doses_um.size()));
  }
  torch::Tensor table = torch::zeros({num_classes_, bits_});
  torch::Tensor doses = torch::zeros({num_classes_});
  for (int64_t r = 0; r < num_classes_; ++r) {
    CF_ASSIGN_OR_RETURN(torch::Tensor row,
                        BitsRow(rows[r], bits_, absl::StrCat("vocabulary row ", r)));
    table[r].copy_(row);
    doses[r] = LogDose(doses_um[r]);
  }
  torch::NoGradGuard no_grad;
  fingerprints.copy_(table.to(fingerprints.device(), fingerprints.scalar_type()));
  log_doses.copy_(doses.to(log_doses.device(), log_doses.scalar_type()));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> StructureEmbedderImpl::SetExtraStructure(int64_t slot,
                                                                 const std::vector<int>& bits,
                                                                 double dose_um) {
  CF_ASSIGN_OR_RETURN(torch::Tensor row,
                      BitsRow(bits, bits_, absl::StrCat("structure slot ", slot)));
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t n = extra_ ? extra_->bits.size(0) : 0;
  if (slot < 0 || slot > n) {
    return absl::InvalidArgumentError(
        absl::StrCat("structure slot ", slot, " is outside [0, ", n, "]"));
  }
  const auto opts = fingerprints.options();
  torch::Tensor new_bits = row.to(opts).unsqueeze(0);
  torch::Tensor new_dose = torch::full({1}, LogDose(dose_um), opts);
  auto next = std::make_shared<Extra>();
  if (n == 0) {
    next->bits = new_bits;
    next->log_doses = new_dose;
  } else if (slot == n) {
    next->bits = torch::cat({extra_->bits, new_bits});
    next->log_doses = torch::cat({extra_->log_doses, new_dose});
  } else {  // copy on write: forwards running now keep the rows they started with
    next->bits = extra_->bits.clone();
    next->log_doses = extra_->log_doses.clone();
    next->bits[slot].copy_(new_bits[0]);
    next->log_doses[slot].copy_(new_dose[0]);
  }
  extra_ = std::move(next);
  return num_classes_ + 1 + slot;
}

PatchEmbedImpl::PatchEmbedImpl(int64_t in_channels, int64_t hidden_size, int64_t patch_size) {
  proj = register_module(
      "proj",
      torch::nn::Conv2d(
          torch::nn::Conv2dOptions(in_channels, hidden_size, patch_size).stride(patch_size)));
}

torch::Tensor PatchEmbedImpl::forward(const torch::Tensor& x) {
  return proj->forward(x).flatten(2).transpose(1, 2);  // [N, D, h, w] → [N, T, D]
}

AttentionImpl::AttentionImpl(int64_t dim, int64_t num_heads) : num_heads_(num_heads) {
  qkv = register_module("qkv", MakeLinear(dim, 3 * dim));
  proj = register_module("proj", MakeLinear(dim, dim));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x) {
  const int64_t n = x.size(0), l = x.size(1), d = x.size(2), hd = d / num_heads_;
  // One contiguous copy puts q, k, v head-major; q, k and v are then views, the layout both the
  // hand-written kernel (reshape without copy) and the fused kernels want.
  torch::Tensor qkv_heads = qkv->forward(x)  // [N, L, 3D]
                                .view({n, l, 3, num_heads_, hd})
                                .permute({2, 0, 3, 1, 4})  // [3, N, H, L, hd]
                                .contiguous();
  torch::Tensor out = ScaledDotProductAttention(qkv_heads[0], qkv_heads[1], qkv_heads[2],
                                                attention_kernel())  // [N, H, L, hd]
                          .transpose(1, 2)                           // [N, L, H, hd]
                          .reshape({n, l, d});                       // [N, L, D]
  return proj->forward(out);
}

MlpImpl::MlpImpl(int64_t dim, int64_t hidden) {
  fc1 = register_module("fc1", MakeLinear(dim, hidden));
  fc2 = register_module("fc2", MakeLinear(hidden, dim));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return fc2->forward(torch::gelu(fc1->forward(x), "tanh"));
}

SiTBlockImpl::SiTBlockImpl(int64_t hidden_size, int64_t num_heads, double mlp_ratio) {
  attn = register_module("attn", Attention(hidden_size, num_heads));
  mlp = register_module("mlp", Mlp(hidden_size, static_cast<int64_t>(hidden_size * mlp_ratio)));
  ada_linear_ = MakeLinear(hidden_size, 6 * hidden_size);
  adaLN_modulation =
      register_module("adaLN_modulation", torch::nn::Sequential(torch::nn::SiLU(), ada_linear_));
}

torch::Tensor SiTBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& c_act) {
  std::vector<torch::Tensor> mod = ada_linear_->forward(c_act).chunk(6, 1);  // 6 × [N, D]
  const auto &shift_msa = mod[0], &scale_msa = mod[1], &gate_msa = mod[2];
  const auto &shift_mlp = mod[3], &scale_mlp = mod[4], &gate_mlp = mod[5];
  torch::Tensor h = torch::addcmul(
      x, gate_msa.unsqueeze(1),
      attn->forward(Modulate(PlainLayerNorm(x), shift_msa, scale_msa)));  // [N, L, D]
  return torch::addcmul(h, gate_mlp.unsqueeze(1),
                        mlp->forward(Modulate(PlainLayerNorm(h), shift_mlp, scale_mlp)));
}

FinalLayerImpl::FinalLayerImpl(int64_t hidden_size, int64_t patch_size, int64_t out_channels) {
  linear =
      register_module("linear", MakeLinear(hidden_size, patch_size * patch_size * out_channels));
  ada_linear_ = MakeLinear(hidden_size, 2 * hidden_size);
  adaLN_modulation =
      register_module("adaLN_modulation", torch::nn::Sequential(torch::nn::SiLU(), ada_linear_));
}

torch::Tensor FinalLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& c_act) {
  std::vector<torch::Tensor> mod = ada_linear_->forward(c_act).chunk(2, 1);  // shift, scale: [N, D]
  return linear->forward(Modulate(PlainLayerNorm(x), mod[0], mod[1]));       // [N, T, p·p·out]
}

GeneFinalLayerImpl::GeneFinalLayerImpl(int64_t hidden_size, int64_t gene_tokens,
                                       int64_t gene_latent_dim) {
  linear = register_module("linear", MakeLinear(gene_tokens * hidden_size, gene_latent_dim));
  ada_linear_ = MakeLinear(hidden_size, 2 * hidden_size);
  adaLN_modulation =
      register_module("adaLN_modulation", torch::nn::Sequential(torch::nn::SiLU(), ada_linear_));
}

torch::Tensor GeneFinalLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& c_act) {
  std::vector<torch::Tensor> mod = ada_linear_->forward(c_act).chunk(2, 1);  // shift, scale: [N, D]
  torch::Tensor h = Modulate(PlainLayerNorm(x), mod[0], mod[1]);             // [N, K, D]
  return linear->forward(h.reshape({h.size(0), -1}));                        // [N, K·D] → [N, G]
}

// ---------------------------------------------------------------------------------------------

SiTImpl::SiTImpl(const SiTConfig& config) : config_(config) {
  absl::Status valid = config.Validate();
  TORCH_CHECK(valid.ok(), "SiT: invalid config: ", std::string(valid.message()));
  grid_ = config.input_size / config.patch_size;
  const int64_t d = config.hidden_size;
  x_embedder = register_module("x_embedder", PatchEmbed(config.in_channels, d, config.patch_size));
  t_embedder = register_module("t_embedder", TimestepEmbedder(d));
  if (config.uses_id()) {
    y_embedder = register_module("y_embedder", LabelEmbedder(config.num_classes, d));
  }
  if (config.uses_structure()) {
    structure_embedder = register_module(
        "structure_embedder", StructureEmbedder(config.num_classes, config.fingerprint_bits, d,
                                                config.fingerprint_dropout));
  }
  // Frozen parameter (not a buffer) so it sits in the state dict exactly like the reference's.
  pos_embed =
      register_parameter("pos_embed", torch::zeros({1, grid_ * grid_, d}), /*requires_grad=*/false);
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < config.depth; ++i) {
    SiTBlock block(d, config.num_heads, config.mlp_ratio);
    blocks->push_back(block);
    block_list_.push_back(block);
  }
  final_layer = register_module("final_layer", FinalLayer(d, config.patch_size, out_channels()));
  if (config.gene_latent_dim > 0) {
    gene_embedder = register_module("gene_embedder",
                                    MakeLinear(config.gene_latent_dim, config.gene_tokens * d));
    gene_pos_embed = register_parameter("gene_pos_embed", torch::zeros({1, config.gene_tokens, d}));
    gene_final_layer = register_module(
        "gene_final_layer", GeneFinalLayer(d, config.gene_tokens, config.gene_latent_dim));
  }
  InitializeWeights();
}

void SiTImpl::InitializeWeights() {
  torch::NoGradGuard no_grad;
  namespace init = torch::nn::init;
  // Reference _basic_init: every Linear gets xavier-uniform weights and zero bias.
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* lin = m->as<torch::nn::LinearImpl>()) {
      init::xavier_uniform_(lin->weight);
      init::zeros_(lin->bias);
    }
  }
  pos_embed.copy_(
      SinCos2dPositionEmbedding(config_.hidden_size, grid_).to(torch::kFloat32).unsqueeze(0));
  // Patch conv initialised like a Linear over its flattened [D, C·p·p] weight.
  init::xavier_uniform_(x_embedder->proj->weight.view({x_embedder->proj->weight.size(0), -1}));
  init::zeros_(x_embedder->proj->bias);
  if (y_embedder) init::normal_(y_embedder->embedding_table->weight, 0.0, 0.02);
  if (structure_embedder) init::normal_(structure_embedder->null_embedding, 0.0, 0.02);
  init::normal_(t_embedder->mlp->ptr<torch::nn::LinearImpl>(0)->weight, 0.0, 0.02);
  init::normal_(t_embedder->mlp->ptr<torch::nn::LinearImpl>(2)->weight, 0.0, 0.02);
  // adaLN-Zero: every block starts as the identity, the heads output zero.
  for (auto& block : block_list_) {
    for (auto& p : block->adaLN_modulation->parameters()) init::zeros_(p);
  }
  for (auto& p : final_layer->adaLN_modulation->parameters()) init::zeros_(p);
  for (auto& p : final_layer->linear->parameters()) init::zeros_(p);
  if (gene_final_layer) {
    init::normal_(gene_pos_embed, 0.0, 0.02);
    for (auto& p : gene_final_layer->adaLN_modulation->parameters()) init::zeros_(p);
    for (auto& p : gene_final_layer->linear->parameters()) init::zeros_(p);
  }
}

torch::Tensor SiTImpl::Unpatchify(const torch::Tensor& x) const {
  const int64_t n = x.size(0), p = config_.patch_size, c = config_.in_channels;
  torch::Tensor v = x.view({n, grid_, grid_, p, p, out_channels()});  // [N, h, w, p, q, c']
  if (config_.learn_sigma) v = v.narrow(5, 0, c);                     // drop the sigma half first
  return v.permute({0, 5, 1, 3, 2, 4}).reshape({n, c, grid_ * p, grid_ * p});  // [N, c, h·p, w·q]
}

SiTOutput SiTImpl::forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& y,
                           const torch::Tensor& gene) {
  const int64_t size = config_.input_size;
  TORCH_CHECK(
      x.dim() == 4 && x.size(1) == config_.in_channels && x.size(2) == size && x.size(3) == size,
      "SiT: x must be [N, ", config_.in_channels, ", ", size, ", ", size, "], got ", ShapeOf(x));
  const int64_t n = x.size(0);
  TORCH_CHECK(t.dim() == 1 && t.size(0) == n, "SiT: t must be [", n, "], got ", ShapeOf(t));
  TORCH_CHECK(y.dim() == 1 && y.size(0) == n && y.scalar_type() == torch::kInt64,
              "SiT: y must be int64 [", n, "], got ", ShapeOf(y), " ",
              c10::toString(y.scalar_type()));
  const bool has_gene = config_.gene_latent_dim > 0;
  if (has_gene) {
    TORCH_CHECK(gene.defined() && gene.dim() == 2 && gene.size(0) == n &&
                    gene.size(1) == config_.gene_latent_dim,
                "SiT: gene must be [", n, ", ", config_.gene_latent_dim, "], got ", ShapeOf(gene));
  } else {
    TORCH_CHECK(!gene.defined(),
                "SiT: this model has no gene tokens (gene_latent_dim = 0) but a gene tensor ",
                ShapeOf(gene), " was given");
  }

  const torch::ScalarType dtype = compute_dtype();
  torch::Tensor tokens = x_embedder->forward(x.to(dtype)) + pos_embed;  // [N, T, D]
  torch::Tensor c = t_embedder->forward(t);                             // [N, D]
  if (y_embedder) {
    // Labels past the null row (registered structures) take the id part's null row.
    c = c + y_embedder->forward(structure_embedder ? y.clamp_max(config_.num_classes) : y);
  }
  if (structure_embedder) c = c + structure_embedder->forward(y);
  const int64_t num_image_tokens = tokens.size(1);
  if (has_gene) {
    torch::Tensor g =
        gene_embedder->forward(gene.to(dtype)).view({n, config_.gene_tokens, config_.hidden_size}) +
        gene_pos_embed;                   // [N, K, D]
    tokens = torch::cat({tokens, g}, 1);  // [N, T + K, D]
  }
  // Every adaLN_modulation starts with SiLU(c): compute it once for all blocks and heads.
  torch::Tensor c_act = torch::silu(c);
  for (auto& block : block_list_) tokens = block->forward(tokens, c_act);

  SiTOutput out;
  torch::Tensor image_tokens = has_gene ? tokens.narrow(1, 0, num_image_tokens) : tokens;
  out.image = Unpatchify(final_layer->forward(image_tokens, c_act))  // [N, C, H, W]
                  .to(x.scalar_type());
  if (has_gene) {
    // The gene head runs in its own dtype (float32 under a bfloat16 SetComputeDtype).
    const torch::ScalarType head = gene_final_layer->linear->weight.scalar_type();
    out.gene = gene_final_layer
                   ->forward(tokens.narrow(1, num_image_tokens, config_.gene_tokens).to(head),
                             c_act.to(head))  // [N, G]
                   .to(gene.scalar_type());
  }
  return out;
}

void SiTImpl::SetComputeDtype(torch::ScalarType dtype) {
  TORCH_CHECK(dtype == torch::kFloat32 || dtype == torch::kBFloat16,
              "SiT::SetComputeDtype: expected float32 or bfloat16, got ", c10::toString(dtype));
  to(dtype);
  if (gene_final_layer) gene_final_layer->to(torch::kFloat32);
}

torch::ScalarType SiTImpl::compute_dtype() const { return x_embedder->proj->weight.scalar_type(); }

// ---------------------------------------------------------------------------------------------

absl::Status LoadSiTWeights(SiT& model, const TensorMap& tensors, const std::string& label) {
  const SiTConfig& config = model->config();
  const int64_t p2 = static_cast<int64_t>(config.patch_size) * config.patch_size;
  const int64_t c = config.in_channels;
  TensorMap adapted = tensors;  // shallow: tensors are shared handles
  if (!config.learn_sigma) {
    auto w = adapted.find("final_layer.linear.weight");
    auto b = adapted.find("final_layer.linear.bias");
    if (w != adapted.end() && b != adapted.end() && w->second.dim() == 2 &&
        w->second.size(0) == p2 * 2 * c && b->second.dim() == 1 &&
        b->second.size(0) == p2 * 2 * c) {
      // Output features are ordered (p, q, channel); keep channels [0, C) of each patch position.
      const int64_t d = w->second.size(1);
      w->second = w->second.view({p2, 2 * c, d}).narrow(1, 0, c).reshape({p2 * c, d});
      b->second = b->second.view({p2, 2 * c}).narrow(1, 0, c).reshape({p2 * c});
    }
  }
  return LoadStateDict(*model, adapted, label);
}

}  // namespace cellflux
