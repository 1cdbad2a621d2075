// Numeric precision the networks run in (issue 17): one setting for the server, the tools, the
// benches and the trainer's flow stage.
//
//   fp32  IEEE float32 everywhere; TF32 off for CUDA matmuls and convolutions (the reference
//         parity tests run this way).
//   tf32  float32 weights and activations; CUDA matmuls (cuBLAS) and convolutions (cuDNN) may use
//         TF32 tensor cores (10-bit mantissa products, float32 accumulation). No effect on a CPU.
//   bf16  inference: the SiT's and the VAE's weights and activations in bfloat16, except the
//         SiT's gene head (gene_final_layer) and the gene autoencoder, which stay float32. The
//         models take and return float32, so the sampler's Euler state and the guidance
//         combination stay float32 (CellFluxModelImpl::SetPrecision).
//         training: bfloat16 autocast around the forward and loss (AutocastGuard) with float32
//         master weights, optimizer state and EMA.
//   auto  bf16 on CUDA, fp32 on any other device (ResolvePrecision).
//
// TF32 is a process-wide switch of ATen (at::globalContext()); SetMatmulPrecision sets it, so one
// process runs one precision. Same on LibTorch 1.13 (Debian, CPU) and 2.x (the GPU nodes).
#ifndef CELLFLUX_COMMON_MODELS_PRECISION_H_
#define CELLFLUX_COMMON_MODELS_PRECISION_H_

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

#include "absl/status/statusor.h"

namespace cellflux {

enum class Precision { kAuto, kFp32, kTf32, kBf16 };

// "auto", "fp32", "tf32" or "bf16"; INVALID_ARGUMENT naming the value and the choices otherwise.
absl::StatusOr<Precision> ParsePrecision(const std::string& name);
std::string PrecisionName(Precision precision);

// kAuto → kBf16 on a CUDA device, kFp32 elsewhere; any other value is returned as is.
Precision ResolvePrecision(Precision precision, const c10::Device& device);

// dtype of the SiT's and the VAE's weights and activations at inference: kBFloat16 for kBf16,
// else kFloat32. `precision` must be resolved (not kAuto).
c10::ScalarType ComputeDtype(Precision precision);

// Process-wide TF32 switches (cuBLAS matmuls and cuDNN convolutions): on for kTf32, off for
// kFp32 and kBf16 (whose float32 parts, the Euler state and the gene heads, stay IEEE float32).
// `precision` must be resolved.
void SetMatmulPrecision(Precision precision);
// Whether SetMatmulPrecision last switched TF32 on (reads ATen's flags: cuBLAS and cuDNN both).
bool Tf32Enabled();

// bfloat16 autocast for the current thread while alive, for tensors of `device`'s type, when
// `precision` is kBf16; does nothing otherwise. Restores the previous autocast state and clears
// autocast's cast cache on destruction (as leaving torch.autocast does). Ops autocast lists as
// reduced-precision (linear, conv, bmm, baddbmm, matmul) run in bfloat16 on float32 parameters;
// the rest (layer_norm, softmax, losses) stay float32. Not copyable; thread-local state.
class AutocastGuard {
 public:
  AutocastGuard(const c10::Device& device, Precision precision);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

  bool active() const { return active_; }

 private:
  bool active_ = false;
  c10::DeviceType type_ = c10::DeviceType::CPU;
  bool previous_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::ScalarType::BFloat16;
};

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_MODELS_PRECISION_H_
