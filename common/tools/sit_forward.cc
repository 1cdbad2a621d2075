// cellflux-tool sit-forward: one SiT forward from files, for interop checks against PyTorch.
//
//   cellflux-tool sit-forward --weights W.safetensors --config C.json --inputs I.safetensors \
//       --output O.safetensors [--device cpu|cuda|auto] [--precision auto|fp32|tf32|bf16]
//       [--attention default|math|fused]
//
// --precision (common/models/precision.h): auto = bf16 on CUDA, fp32 elsewhere; the reference
// parity checks want fp32. Outputs are float32 whatever the precision. --attention picks the
// attention kernel (common/models/attention.h).
// C.json: the SiT hyper-parameters (input_size, patch_size, in_channels, hidden_size, depth,
// num_heads, mlp_ratio, num_classes, learn_sigma[, gene_latent_dim, gene_tokens]; "size": "S"
// etc. also works), either at top level or under "sit" (a checkpoint's config.json).
// I holds x [N,C,H,W] float32, t [N] float32, y [N] int64 (and gene [N,G] for gene-token models).
// O gets v (image velocity, sigma half dropped) and, for gene-token models, v_gene.
// Missing/extra/mis-shaped weights fail with the names listed (exit code 2).
#include <torch/torch.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/models/attention.h"
#include "common/models/config.h"
#include "common/models/precision.h"
#include "common/models/sit.h"
#include "common/tools/command.h"
#include "common/torch/runtime.h"
#include "common/torch/tensors.h"
#include "common/util/files.h"
#include "common/util/logging.h"
#include "common/util/status_macros.h"

namespace cellflux::tool {
namespace {

struct SiTForwardOptions {
  std::string weights, config, inputs, output;
  std::string device = "cpu";
  std::string precision = "auto";
  std::string attention = "default";
};

absl::StatusOr<SiTConfig> ReadSiTConfig(const std::string& path) {
  CF_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  if (j.is_object() && j.contains("sit")) j = j["sit"];
  absl::StatusOr<SiTConfig> config = SiTConfig::FromJson(j);
  if (!config.ok())
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", config.status().message()));
  absl::Status valid = config->Validate();
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", valid.message()));
  return *config;
}

absl::StatusOr<torch::Tensor> Input(const TensorMap& inputs, const std::string& file,
                                    const std::string& name, bool required = true) {
  auto it = inputs.find(name);
  if (it == inputs.end()) {
    if (!required) return torch::Tensor();
    return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", name, "' is missing"));
  }
  return it->second;
}

absl::Status RunSiTForward(const SiTForwardOptions& opts) {
  CF_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(opts.device));
  CF_ASSIGN_OR_RETURN(Precision precision_flag, ParsePrecision(opts.precision));
  CF_ASSIGN_OR_RETURN(AttentionKernel attention, ParseAttentionKernel(opts.attention));
  const Precision precision = ResolvePrecision(precision_flag, device);
  CF_ASSIGN_OR_RETURN(SiTConfig config, ReadSiTConfig(opts.config));
  CF_ASSIGN_OR_RETURN(TensorMap weights, LoadSafetensors(opts.weights));
  CF_ASSIGN_OR_RETURN(TensorMap inputs, LoadSafetensors(opts.inputs));
  CF_ASSIGN_OR_RETURN(torch::Tensor x, Input(inputs, opts.inputs, "x"));
  CF_ASSIGN_OR_RETURN(torch::Tensor t, Input(inputs, opts.inputs, "t"));
  CF_ASSIGN_OR_RETURN(torch::Tensor y, Input(inputs, opts.inputs, "y"));
  CF_ASSIGN_OR_RETURN(torch::Tensor gene,
                      Input(inputs, opts.inputs, "gene", /*required=*/config.gene_latent_dim > 0));
  if (y.scalar_type() != torch::kInt64) {
    return absl::InvalidArgumentError(absl::StrCat(opts.inputs, ": tensor 'y' must be int64, got ",
                                                   c10::toString(y.scalar_type())));
  }
  if (config.gene_latent_dim == 0) gene = torch::Tensor();  // an image-only model ignores it

  SiT model{nullptr};
  CF_RETURN_IF_ERROR(TorchCall("sit-forward: building the model", [&] {
    model = SiT(config);
    model->to(device);
    model->eval();
  }));
  CF_RETURN_IF_ERROR(LoadSiTWeights(model, weights, opts.weights));
  CF_RETURN_IF_ERROR(TorchCall("sit-forward: precision", [&] {
    model->SetComputeDtype(ComputeDtype(precision));
    SetMatmulPrecision(precision);
    SetAttentionKernel(*model, attention);
  }));

  TensorMap out;
  CF_RETURN_IF_ERROR(TorchCall(absl::StrCat("sit-forward on ", opts.inputs), [&] {
    c10::InferenceMode guard;
    SiTOutput v =
        model->forward(x.to(device, torch::kFloat32), t.to(device, torch::kFloat32), y.to(device),
                       gene.defined() ? gene.to(device, torch::kFloat32) : gene);
    out["v"] = v.image.to(torch::kCPU);
    if (v.gene.defined()) out["v_gene"] = v.gene.to(torch::kCPU);
  }));
  CF_RETURN_IF_ERROR(SaveSafetensors(opts.output, out));
  CF_LOG(INFO) << "sit-forward: wrote " << opts.output << " (v " << ShapeOf(out["v"]) << ", "
               << PrecisionName(precision) << ", attention " << AttentionKernelName(attention)
               << ")";
  return absl::OkStatus();
}

}  // namespace

// Registered by hand: the verb name has a dash, which CF_TOOL_COMMAND's identifier can't hold.
static Registrar sit_forward_registrar(
    "sit-forward", "Run one SiT forward from safetensors weights and inputs (interop check)",
    [](CLI::App* app) -> RunFn {
      auto opts = std::make_shared<SiTForwardOptions>();
      app->add_option("--weights", opts->weights, "SiT weights (.safetensors, reference names)")
          ->required();
      app->add_option("--config", opts->config, "JSON with the SiT hyper-parameters")->required();
      app->add_option("--inputs", opts->inputs, "safetensors with x [N,C,H,W], t [N], y [N] int64")
          ->required();
      app->add_option("--output", opts->output, "safetensors to write v (and v_gene)")->required();
      app->add_option("--device", opts->device, "cpu, cuda, cuda:N or auto")->capture_default_str();
      app->add_option("--precision", opts->precision,
                      "auto (bf16 on CUDA, fp32 elsewhere), fp32, tf32 or bf16")
          ->capture_default_str();
      app->add_option("--attention", opts->attention,
                      "attention kernel: default (fused on LibTorch >= 2), math or fused")
          ->capture_default_str();
      return [opts]() { return ReportStatus("sit-forward", RunSiTForward(*opts)); };
    });

}  // namespace cellflux::tool
