#include "common/models/precision.h"

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "absl/strings/str_cat.h"

// LibTorch 2.4 replaced the per-device autocast functions (set_enabled for CUDA, set_cpu_enabled,
// set_autocast_{gpu,cpu}_dtype) by ones taking the device type; the old ones are deprecated there.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define CELLFLUX_AUTOCAST_BY_DEVICE_TYPE 1
#else
#define CELLFLUX_AUTOCAST_BY_DEVICE_TYPE 0
#endif

namespace cellflux {
namespace {

bool AutocastEnabled(c10::DeviceType type) {
#if CELLFLUX_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::is_enabled()
                                       : at::autocast::is_cpu_enabled();
#endif
}

void SetAutocastEnabled(c10::DeviceType type, bool enabled) {
#if CELLFLUX_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(type, enabled);
#else
  if (type == c10::DeviceType::CUDA) {
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

c10::ScalarType AutocastDtype(c10::DeviceType type) {
#if CELLFLUX_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                       : at::autocast::get_autocast_cpu_dtype();
#endif
}

void SetAutocastDtype(c10::DeviceType type, c10::ScalarType dtype) {
#if CELLFLUX_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == c10::DeviceType::CUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}

}  // namespace

absl::StatusOr<Precision> ParsePrecision(const std::string& name) {
  if (name == "auto") return Precision::kAuto;
  if (name == "fp32") return Precision::kFp32;
  if (name == "tf32") return Precision::kTf32;
  if (name == "bf16") return Precision::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("precision '", name, "': expected auto, fp32, tf32 or bf16"));
}

std::string PrecisionName(Precision precision) {
  switch (precision) {
    case Precision::kAuto:
      return "auto";
    case Precision::kFp32:
      return "fp32";
    case Precision::kTf32:
      return "tf32";
    case Precision::kBf16:
      return "bf16";
  }
  return "unknown";
}

Precision ResolvePrecision(Precision precision, const c10::Device& device) {
  if (precision != Precision::kAuto) return precision;
  return device.is_cuda() ? Precision::kBf16 : Precision::kFp32;
}

c10::ScalarType ComputeDtype(Precision precision) {
  return precision == Precision::kBf16 ? c10::ScalarType::BFloat16 : c10::ScalarType::Float;
}

void SetMatmulPrecision(Precision precision) {
  const bool tf32 = precision == Precision::kTf32;
  at::globalContext().setAllowTF32CuBLAS(tf32);
  at::globalContext().setAllowTF32CuDNN(tf32);
}

bool Tf32Enabled() {
  return at::globalContext().allowTF32CuBLAS() && at::globalContext().allowTF32CuDNN();
}

AutocastGuard::AutocastGuard(const c10::Device& device, Precision precision)
    : active_(precision == Precision::kBf16), type_(device.type()) {
  if (!active_) return;
  previous_enabled_ = AutocastEnabled(type_);
  previous_dtype_ = AutocastDtype(type_);
  SetAutocastEnabled(type_, true);
  SetAutocastDtype(type_, c10::ScalarType::BFloat16);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // The cache holds the bfloat16 copies of the float32 weights made in this region; they are
  // stale once the optimizer steps, so drop them when the outermost region ends.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  SetAutocastEnabled(type_, previous_enabled_);
  SetAutocastDtype(type_, previous_dtype_);
}

}  // namespace cellflux
