// cellflux-tool vae-encode / vae-decode: one AutoencoderKL pass from files, for interop checks
// against diffusers / PyTorch.
//
//   cellflux-tool vae-encode --weights VAE.safetensors --config C.json --inputs I.safetensors \
//       --output O.safetensors [--device cpu|cuda|auto]
//   cellflux-tool vae-decode  (same flags)
//   both also take [--precision auto|fp32|tf32|bf16] [--attention default|math|fused]
//   (auto = bf16 on CUDA, fp32 elsewhere; outputs are float32 whatever the precision)
//
// C.json: the VaeConfig fields (in_channels, out_channels, block_out_channels, layers_per_block,
// latent_channels, norm_num_groups, scaling_factor, mid_block_attention; absent fields keep the SD
// defaults), at top level or under "vae" (a checkpoint's config.json).
// VAE.safetensors: diffusers names, current or old attention naming.
// encode: I holds x [N, in_channels, H, W] in [-1, 1]; O gets mean and logvar of the posterior
//         [N, L, H/f, W/f], before scaling_factor.
// decode: I holds z [N, L, h, w] (unscaled); O gets x [N, out_channels, h·f, w·f].
// Missing/extra/mis-shaped weights or inputs fail with the names listed (exit code 2).
#include <torch/torch.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/models/attention.h"
#include "common/models/config.h"
#include "common/models/precision.h"
#include "common/models/vae.h"
#include "common/tools/command.h"
#include "common/torch/runtime.h"
#include "common/torch/tensors.h"
#include "common/util/files.h"
#include "common/util/logging.h"
#include "common/util/status_macros.h"

namespace cellflux::tool {
namespace {

enum class VaeDirection { kEncode, kDecode };

struct VaeInteropOptions {
  std::string weights, config, inputs, output;
  std::string device = "cpu";
  std::string precision = "auto";
  std::string attention = "default";
};

absl::StatusOr<VaeConfig> ReadVaeConfig(const std::string& path) {
  CF_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  if (j.is_object() && j.contains("vae")) j = j["vae"];
  absl::StatusOr<VaeConfig> config = VaeConfig::FromJson(j);
  if (!config.ok())
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", config.status().message()));
  absl::Status valid = config->Validate();
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", valid.message()));
  return *config;
}

// The one input tensor, checked to be 4-D with `channels` channels.
absl::StatusOr<torch::Tensor> ImageInput(const TensorMap& inputs, const std::string& file,
                                         const std::string& name, int64_t channels) {
  auto it = inputs.find(name);
  if (it == inputs.end())
    return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", name, "' is missing"));
  const torch::Tensor& t = it->second;
  if (t.dim() != 4 || t.size(1) != channels) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", name, "' must be [N, ",
                                                   channels, ", H, W], got ", ShapeOf(t)));
  }
  return t;
}

absl::Status RunVaeInterop(VaeDirection direction, const VaeInteropOptions& opts) {
  const char* verb = direction == VaeDirection::kEncode ? "vae-encode" : "vae-decode";
  CF_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(opts.device));
  CF_ASSIGN_OR_RETURN(Precision precision_flag, ParsePrecision(opts.precision));
  CF_ASSIGN_OR_RETURN(AttentionKernel attention, ParseAttentionKernel(opts.attention));
  const Precision precision = ResolvePrecision(precision_flag, device);
  CF_ASSIGN_OR_RETURN(VaeConfig config, ReadVaeConfig(opts.config));
  CF_ASSIGN_OR_RETURN(TensorMap weights, LoadSafetensors(opts.weights));
  CF_ASSIGN_OR_RETURN(TensorMap inputs, LoadSafetensors(opts.inputs));

  AutoencoderKL vae{nullptr};
  CF_RETURN_IF_ERROR(TorchCall(absl::StrCat(verb, ": building the model"), [&] {
    vae = AutoencoderKL(config);
    vae->to(device);
    vae->eval();
  }));
  CF_RETURN_IF_ERROR(LoadVaeWeights(vae, weights, opts.weights));
  CF_RETURN_IF_ERROR(TorchCall(absl::StrCat(verb, ": precision"), [&] {
    vae->SetComputeDtype(ComputeDtype(precision));
    SetMatmulPrecision(precision);
    SetAttentionKernel(*vae, attention);
  }));

  TensorMap out;
  if (direction == VaeDirection::kEncode) {
    CF_ASSIGN_OR_RETURN(torch::Tensor x, ImageInput(inputs, opts.inputs, "x", config.in_channels));
    const int64_t f = config.downsample_factor();
    if (x.size(2) % f != 0 || x.size(3) % f != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          opts.inputs, ": tensor 'x' ", ShapeOf(x), ": height and width must be divisible by ", f));
    }
    CF_RETURN_IF_ERROR(TorchCall(absl::StrCat(verb, " on ", opts.inputs), [&] {
      c10::InferenceMode guard;
      VaePosterior posterior = vae->Encode(x.to(device, torch::kFloat32));
      out["mean"] = posterior.mean.to(torch::kCPU);
      out["logvar"] = posterior.logvar.to(torch::kCPU);
    }));
  } else {
    CF_ASSIGN_OR_RETURN(torch::Tensor z,
                        ImageInput(inputs, opts.inputs, "z", config.latent_channels));
    CF_RETURN_IF_ERROR(TorchCall(absl::StrCat(verb, " on ", opts.inputs), [&] {
      c10::InferenceMode guard;
      out["x"] = vae->Decode(z.to(device, torch::kFloat32)).to(torch::kCPU);
    }));
  }
  CF_RETURN_IF_ERROR(SaveSafetensors(opts.output, out));
  CF_LOG(INFO) << verb << ": wrote " << opts.output << " ("
               << ShapeOf(direction == VaeDirection::kEncode ? out["mean"] : out["x"]) << ", "
               << PrecisionName(precision) << ", attention " << AttentionKernelName(attention)
               << ")";
  return absl::OkStatus();
}

SetupFn VaeSetup(VaeDirection direction) {
  return [direction](CLI::App* app) -> RunFn {
    auto opts = std::make_shared<VaeInteropOptions>();
    const bool encode = direction == VaeDirection::kEncode;
    app->add_option("--weights", opts->weights,
                    "AutoencoderKL weights (.safetensors, diffusers names)")
        ->required();
    app->add_option("--config", opts->config,
                    "JSON with the VaeConfig fields (top level or under \"vae\")")
        ->required();
    app->add_option("--inputs", opts->inputs,
                    encode ? "safetensors with x [N,3,H,W] in [-1,1]"
                           : "safetensors with z [N,L,h,w] (unscaled)")
        ->required();
    app->add_option("--output", opts->output,
                    encode ? "safetensors to write mean and logvar" : "safetensors to write x")
        ->required();
    app->add_option("--device", opts->device, "cpu, cuda, cuda:N or auto")->capture_default_str();
    app->add_option("--precision", opts->precision,
                    "auto (bf16 on CUDA, fp32 elsewhere), fp32, tf32 or bf16")
        ->capture_default_str();
    app->add_option("--attention", opts->attention,
                    "attention kernel: default (fused on LibTorch >= 2), math or fused")
        ->capture_default_str();
    return [opts, direction]() {
      return ReportStatus(direction == VaeDirection::kEncode ? "vae-encode" : "vae-decode",
                          RunVaeInterop(direction, *opts));
    };
  };
}

}  // namespace

// Registered by hand: the verb names have a dash, which CF_TOOL_COMMAND's identifier can't hold.
static Registrar vae_encode_registrar(
    "vae-encode", "Encode images with an AutoencoderKL: posterior mean and logvar (interop check)",
    VaeSetup(VaeDirection::kEncode));
static Registrar vae_decode_registrar(
    "vae-decode", "Decode unscaled latents with an AutoencoderKL (interop check)",
    VaeSetup(VaeDirection::kDecode));

}  // namespace cellflux::tool
