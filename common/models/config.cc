#include "common/models/config.h"

#include "absl/strings/str_cat.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"

namespace cellflux {
namespace {

using json = nlohmann::json;

// Reads j[key] into *out when present; a present value of the wrong type is an error naming
// "<section>.<key>". Absent keys keep the default.
template <typename T>
absl::Status Field(const json& j, const char* section, const char* key, T* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  try {
    *out = it->get<T>();
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config field '", section, ".", key,
                                                   "' has the wrong type (", it->type_name(), ")"));
  }
  return absl::OkStatus();
}

absl::Status Positive(const char* field, double v) {
  if (!(v > 0))
    return absl::InvalidArgumentError(
        absl::StrCat("config field '", field, "' must be > 0, got ", v));
  return absl::OkStatus();
}

absl::Status RequireObject(const json& j, const char* section) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config section '", section, "' must be an object"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SiTConfig> SiTConfig::FromSize(const std::string& size, int patch_size) {
  SiTConfig c;
  c.patch_size = patch_size;
  if (size == "S") {
    c.depth = 12;
    c.hidden_size = 384;
    c.num_heads = 6;
  } else if (size == "B") {
    c.depth = 12;
    c.hidden_size = 768;
    c.num_heads = 12;
  } else if (size == "L") {
    c.depth = 24;
    c.hidden_size = 1024;
    c.num_heads = 16;
  } else if (size == "XL") {
    c.depth = 28;
    c.hidden_size = 1152;
    c.num_heads = 16;
  } else
    return absl::InvalidArgumentError(
        absl::StrCat("SiT size '", size, "': expected S, B, L or XL"));
  return c;
}

absl::Status SiTConfig::Validate() const {
  CF_RETURN_IF_ERROR(Positive("sit.input_size", input_size));
  CF_RETURN_IF_ERROR(Positive("sit.patch_size", patch_size));
  CF_RETURN_IF_ERROR(Positive("sit.in_channels", in_channels));
  CF_RETURN_IF_ERROR(Positive("sit.hidden_size", hidden_size));
  CF_RETURN_IF_ERROR(Positive("sit.depth", depth));
  CF_RETURN_IF_ERROR(Positive("sit.num_heads", num_heads));
  CF_RETURN_IF_ERROR(Positive("sit.mlp_ratio", mlp_ratio));
  CF_RETURN_IF_ERROR(Positive("sit.num_classes", num_classes));
  if (input_size % patch_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config: sit.input_size ", input_size, " is not divisible by sit.patch_size ", patch_size));
  }
  if (hidden_size % num_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config: sit.hidden_size ", hidden_size, " is not divisible by sit.num_heads ", num_heads));
  }
  if (hidden_size % 4 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: sit.hidden_size ", hidden_size,
                     " must be a multiple of 4 (2-D sin-cos position embedding)"));
  }
  if (class_dropout_prob < 0 || class_dropout_prob >= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: sit.class_dropout_prob must be in [0, 1), got ", class_dropout_prob));
  }
  if (gene_latent_dim < 0 || gene_tokens < 0 || ((gene_latent_dim > 0) != (gene_tokens > 0))) {
    return absl::InvalidArgumentError(absl::StrCat("config: sit.gene_latent_dim (", gene_latent_dim,
                                                   ") and sit.gene_tokens (", gene_tokens,
                                                   ") must both be 0 (image-only) or both be > 0"));
  }
  if (condition != "id" && condition != "structure" && condition != "id+structure") {
    return absl::InvalidArgumentError(absl::StrCat(
        "config: sit.condition must be id, structure or id+structure, got '", condition, "'"));
  }
  CF_RETURN_IF_ERROR(Positive("sit.fingerprint_bits", fingerprint_bits));
  if (!(fingerprint_dropout >= 0.0 && fingerprint_dropout < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config: sit.fingerprint_dropout must be in [0, 1), got ", fingerprint_dropout));
  }
  return absl::OkStatus();
}

json SiTConfig::ToJson() const {
  json j = {{"input_size", input_size},
            {"patch_size", patch_size},
            {"in_channels", in_channels},
            {"hidden_size", hidden_size},
            {"depth", depth},
            {"num_heads", num_heads},
            {"mlp_ratio", mlp_ratio},
            {"num_classes", num_classes},
            {"class_dropout_prob", class_dropout_prob},
            {"learn_sigma", learn_sigma},
            {"gene_latent_dim", gene_latent_dim},
            {"gene_tokens", gene_tokens}};
  // Written only for structure encoders, so id models' config.json (and model ids) are unchanged.
  if (condition != "id") {
    j["condition"] = condition;
    j["fingerprint_bits"] = fingerprint_bits;
    if (fingerprint_dropout > 0) j["fingerprint_dropout"] = fingerprint_dropout;
  }
  return j;
}

absl::StatusOr<SiTConfig> SiTConfig::FromJson(const json& j) {
  CF_RETURN_IF_ERROR(RequireObject(j, "sit"));
  SiTConfig c;
  std::string size;
  CF_RETURN_IF_ERROR(Field(j, "sit", "size", &size));
  if (!size.empty()) {
    int patch = c.patch_size;
    CF_RETURN_IF_ERROR(Field(j, "sit", "patch_size", &patch));
    CF_ASSIGN_OR_RETURN(c, FromSize(size, patch));
  }
  CF_RETURN_IF_ERROR(Field(j, "sit", "input_size", &c.input_size));
  CF_RETURN_IF_ERROR(Field(j, "sit", "patch_size", &c.patch_size));
  CF_RETURN_IF_ERROR(Field(j, "sit", "in_channels", &c.in_channels));
  CF_RETURN_IF_ERROR(Field(j, "sit", "hidden_size", &c.hidden_size));
  CF_RETURN_IF_ERROR(Field(j, "sit", "depth", &c.depth));
  CF_RETURN_IF_ERROR(Field(j, "sit", "num_heads", &c.num_heads));
  CF_RETURN_IF_ERROR(Field(j, "sit", "mlp_ratio", &c.mlp_ratio));
  CF_RETURN_IF_ERROR(Field(j, "sit", "num_classes", &c.num_classes));
  CF_RETURN_IF_ERROR(Field(j, "sit", "class_dropout_prob", &c.class_dropout_prob));
  CF_RETURN_IF_ERROR(Field(j, "sit", "learn_sigma", &c.learn_sigma));
  CF_RETURN_IF_ERROR(Field(j, "sit", "gene_latent_dim", &c.gene_latent_dim));
  CF_RETURN_IF_ERROR(Field(j, "sit", "gene_tokens", &c.gene_tokens));
  CF_RETURN_IF_ERROR(Field(j, "sit", "condition", &c.condition));
  CF_RETURN_IF_ERROR(Field(j, "sit", "fingerprint_bits", &c.fingerprint_bits));
  CF_RETURN_IF_ERROR(Field(j, "sit", "fingerprint_dropout", &c.fingerprint_dropout));
  return c;
}

absl::Status VaeConfig::Validate() const {
  CF_RETURN_IF_ERROR(Positive("vae.in_channels", in_channels));
  CF_RETURN_IF_ERROR(Positive("vae.out_channels", out_channels));
  CF_RETURN_IF_ERROR(Positive("vae.layers_per_block", layers_per_block));
  CF_RETURN_IF_ERROR(Positive("vae.latent_channels", latent_channels));
  CF_RETURN_IF_ERROR(Positive("vae.norm_num_groups", norm_num_groups));
  CF_RETURN_IF_ERROR(Positive("vae.scaling_factor", scaling_factor));
  if (block_out_channels.empty())
    return absl::InvalidArgumentError("config: vae.block_out_channels is empty");
  for (int c : block_out_channels) {
    if (c <= 0 || c % norm_num_groups != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("config: vae.block_out_channels entry ", c,
                       " must be a positive multiple of vae.norm_num_groups ", norm_num_groups));
    }
  }
  return absl::OkStatus();
}

json VaeConfig::ToJson() const {
  return {{"in_channels", in_channels},
          {"out_channels", out_channels},
          {"block_out_channels", block_out_channels},
          {"layers_per_block", layers_per_block},
          {"latent_channels", latent_channels},
          {"norm_num_groups", norm_num_groups},
          {"scaling_factor", scaling_factor},
          {"mid_block_attention", mid_block_attention}};
}

absl::StatusOr<VaeConfig> VaeConfig::FromJson(const json& j) {
  CF_RETURN_IF_ERROR(RequireObject(j, "vae"));
  VaeConfig c;
  CF_RETURN_IF_ERROR(Field(j, "vae", "in_channels", &c.in_channels));
  CF_RETURN_IF_ERROR(Field(j, "vae", "out_channels", &c.out_channels));
  CF_RETURN_IF_ERROR(Field(j, "vae", "block_out_channels", &c.block_out_channels));
  CF_RETURN_IF_ERROR(Field(j, "vae", "layers_per_block", &c.layers_per_block));
  CF_RETURN_IF_ERROR(Field(j, "vae", "latent_channels", &c.latent_channels));
  CF_RETURN_IF_ERROR(Field(j, "vae", "norm_num_groups", &c.norm_num_groups));
  CF_RETURN_IF_ERROR(Field(j, "vae", "scaling_factor", &c.scaling_factor));
  CF_RETURN_IF_ERROR(Field(j, "vae", "mid_block_attention", &c.mid_block_attention));
  return c;
}

absl::Status GeneAutoencoderConfig::Validate() const {
  CF_RETURN_IF_ERROR(Positive("gene_ae.num_genes", num_genes));
  CF_RETURN_IF_ERROR(Positive("gene_ae.latent_dim", latent_dim));
  for (int h : hidden_dims) CF_RETURN_IF_ERROR(Positive("gene_ae.hidden_dims[]", h));
  return absl::OkStatus();
}

json GeneAutoencoderConfig::ToJson() const {
  return {{"num_genes", num_genes}, {"hidden_dims", hidden_dims}, {"latent_dim", latent_dim}};
}

absl::StatusOr<GeneAutoencoderConfig> GeneAutoencoderConfig::FromJson(const json& j) {
  CF_RETURN_IF_ERROR(RequireObject(j, "gene_ae"));
  GeneAutoencoderConfig c;
  CF_RETURN_IF_ERROR(Field(j, "gene_ae", "num_genes", &c.num_genes));
  CF_RETURN_IF_ERROR(Field(j, "gene_ae", "hidden_dims", &c.hidden_dims));
  CF_RETURN_IF_ERROR(Field(j, "gene_ae", "latent_dim", &c.latent_dim));
  return c;
}

absl::Status ImageNormalization::Validate(int channels) const {
  if (method == "divide") return Positive("normalization.scale", scale);
  if (method == "percentile") {
    if (static_cast<int>(low.size()) != channels || static_cast<int>(high.size()) != channels) {
      return absl::InvalidArgumentError(absl::StrCat("config: normalization.low/high need ",
                                                     channels, " entries, got ", low.size(), "/",
                                                     high.size()));
    }
    for (int c = 0; c < channels; ++c) {
      if (!(high[c] > low[c])) {
        return absl::InvalidArgumentError(
            absl::StrCat("config: normalization.high[", c, "] must exceed low[", c, "]"));
      }
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("config: normalization.method '", method, "': expected divide or percentile"));
}

json ImageNormalization::ToJson() const {
  json j = {{"method", method}, {"scale", scale}};
  if (!low.empty()) j["low"] = low;
  if (!high.empty()) j["high"] = high;
  return j;
}

absl::StatusOr<ImageNormalization> ImageNormalization::FromJson(const json& j) {
  CF_RETURN_IF_ERROR(RequireObject(j, "normalization"));
  ImageNormalization n;
  CF_RETURN_IF_ERROR(Field(j, "normalization", "method", &n.method));
  CF_RETURN_IF_ERROR(Field(j, "normalization", "scale", &n.scale));
  CF_RETURN_IF_ERROR(Field(j, "normalization", "low", &n.low));
  CF_RETURN_IF_ERROR(Field(j, "normalization", "high", &n.high));
  return n;
}

absl::Status SamplingConfig::Validate() const {
  if (num_steps < 1 || num_steps > max_steps) {
    return absl::InvalidArgumentError(absl::StrCat("config: sampling.num_steps must be in [1, ",
                                                   max_steps, "], got ", num_steps));
  }
  CF_RETURN_IF_ERROR(Positive("sampling.max_samples", max_samples));
  if (guidance_scale < 0 || guidance_scale > max_guidance) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: sampling.guidance_scale must be in [0, ", max_guidance, "], got ",
                     guidance_scale));
  }
  return absl::OkStatus();
}

json SamplingConfig::ToJson() const {
  return {{"num_steps", num_steps},
          {"guidance_scale", guidance_scale},
          {"max_steps", max_steps},
          {"max_samples", max_samples},
          {"max_guidance", max_guidance}};
}

absl::StatusOr<SamplingConfig> SamplingConfig::FromJson(const json& j) {
  CF_RETURN_IF_ERROR(RequireObject(j, "sampling"));
  SamplingConfig s;
  CF_RETURN_IF_ERROR(Field(j, "sampling", "num_steps", &s.num_steps));
  CF_RETURN_IF_ERROR(Field(j, "sampling", "guidance_scale", &s.guidance_scale));
  CF_RETURN_IF_ERROR(Field(j, "sampling", "max_steps", &s.max_steps));
  CF_RETURN_IF_ERROR(Field(j, "sampling", "max_samples", &s.max_samples));
  CF_RETURN_IF_ERROR(Field(j, "sampling", "max_guidance", &s.max_guidance));
  return s;
}

json FlowConfig::ToJson() const {
  return {{"beta", beta},
          {"source_noise_sigma", source_noise_sigma},
          {"ema_decay", ema_decay},
          {"sample_posterior", sample_posterior}};
}

absl::StatusOr<FlowConfig> FlowConfig::FromJson(const json& j) {
  CF_RETURN_IF_ERROR(RequireObject(j, "flow"));
  FlowConfig f;
  CF_RETURN_IF_ERROR(Field(j, "flow", "beta", &f.beta));
  CF_RETURN_IF_ERROR(Field(j, "flow", "source_noise_sigma", &f.source_noise_sigma));
  CF_RETURN_IF_ERROR(Field(j, "flow", "ema_decay", &f.ema_decay));
  CF_RETURN_IF_ERROR(Field(j, "flow", "sample_posterior", &f.sample_posterior));
  return f;
}

absl::Status ModelConfig::Validate() const {
  CF_RETURN_IF_ERROR(Positive("image_size", image_size));
  if (channel_names.empty()) return absl::InvalidArgumentError("config: channel_names is empty");
  CF_RETURN_IF_ERROR(sit.Validate());
  CF_RETURN_IF_ERROR(vae.Validate());
  CF_RETURN_IF_ERROR(gene_ae.Validate());
  CF_RETURN_IF_ERROR(normalization.Validate(num_channels()));
  CF_RETURN_IF_ERROR(sampling.Validate());
  if (image_size % vae.downsample_factor() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: image_size ", image_size,
                     " is not divisible by the VAE downsample factor ", vae.downsample_factor()));
  }
  if (sit.input_size != latent_size()) {
    return absl::InvalidArgumentError(absl::StrCat("config: sit.input_size is ", sit.input_size,
                                                   " but image_size/", vae.downsample_factor(),
                                                   " = ", latent_size()));
  }
  if (sit.in_channels != image_latent_channels()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: sit.in_channels is ", sit.in_channels,
                     " but channels × vae.latent_channels = ", image_latent_channels()));
  }
  if (sit.gene_latent_dim != 0 && sit.gene_latent_dim != gene_ae.latent_dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: sit.gene_latent_dim is ", sit.gene_latent_dim,
                     " but gene_ae.latent_dim is ", gene_ae.latent_dim));
  }
  if (vae.in_channels != 3 || vae.out_channels != 3) {
    return absl::InvalidArgumentError(
        "config: the pseudo-RGB wrapper needs vae.in_channels = vae.out_channels = 3");
  }
  if (flow.ema_decay < 0 || flow.ema_decay > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: flow.ema_decay must be in [0, 1], got ", flow.ema_decay));
  }
  return absl::OkStatus();
}

json ModelConfig::ToJson() const {
  return {{"name", name},
          {"image_size", image_size},
          {"channel_names", channel_names},
          {"sit", sit.ToJson()},
          {"vae", vae.ToJson()},
          {"gene_ae", gene_ae.ToJson()},
          {"normalization", normalization.ToJson()},
          {"sampling", sampling.ToJson()},
          {"flow", flow.ToJson()},
          {"training", training}};
}

absl::StatusOr<ModelConfig> ModelConfig::FromJson(const json& j) {
  CF_RETURN_IF_ERROR(RequireObject(j, "<root>"));
  ModelConfig c;
  CF_RETURN_IF_ERROR(Field(j, "<root>", "name", &c.name));
  CF_RETURN_IF_ERROR(Field(j, "<root>", "image_size", &c.image_size));
  CF_RETURN_IF_ERROR(Field(j, "<root>", "channel_names", &c.channel_names));
  if (j.contains("sit")) {
    CF_ASSIGN_OR_RETURN(c.sit, SiTConfig::FromJson(j["sit"]));
  }
  if (j.contains("vae")) {
    CF_ASSIGN_OR_RETURN(c.vae, VaeConfig::FromJson(j["vae"]));
  }
  if (j.contains("gene_ae")) {
    CF_ASSIGN_OR_RETURN(c.gene_ae, GeneAutoencoderConfig::FromJson(j["gene_ae"]));
  }
  if (j.contains("normalization")) {
    CF_ASSIGN_OR_RETURN(c.normalization, ImageNormalization::FromJson(j["normalization"]));
  }
  if (j.contains("sampling")) {
    CF_ASSIGN_OR_RETURN(c.sampling, SamplingConfig::FromJson(j["sampling"]));
  }
  if (j.contains("flow")) {
    CF_ASSIGN_OR_RETURN(c.flow, FlowConfig::FromJson(j["flow"]));
  }
  if (j.contains("training")) c.training = j["training"];
  return c;
}

absl::StatusOr<ModelConfig> ModelConfig::Load(const std::string& path) {
  CF_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return absl::InvalidArgumentError(absl::StrCat("config '", path, "': not valid JSON"));
  absl::StatusOr<ModelConfig> c = FromJson(j);
  if (c.ok()) {
    absl::Status v = c->Validate();
    if (!v.ok()) c = v;
  }
  if (!c.ok())
    return absl::Status(c.status().code(),
                        absl::StrCat("config '", path, "': ", c.status().message()));
  return c;
}

}  // namespace cellflux
