#include "common/torch/runtime.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/util/allocator.h"
#include "common/util/logging.h"

namespace cellflux {
namespace {

// Finds the BLAS shared object in /proc/self/maps: Debian switches libblas.so.3 between the
// reference implementation and OpenBLAS with alternatives, so the path tells which one loaded.
std::string MappedBlas() {
  std::ifstream maps("/proc/self/maps");
  std::string line, found;
  while (std::getline(maps, line)) {
    size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    if (absl::StrContains(path, "openblas") || absl::StrContains(path, "libmkl") ||
        absl::StrContains(path, "libblis")) {
      return path;
    }
    if (absl::StrContains(path, "libblas.so")) found = path;
  }
  return found.empty() ? "unknown" : found;
}

}  // namespace

RuntimeInfo GetRuntimeInfo() {
  RuntimeInfo info;
  info.torch_version = TORCH_VERSION;
  info.blas_library = MappedBlas();
  info.slow_blas = absl::StrContains(info.blas_library, "/blas/libblas.so") ||
                   (absl::StrContains(info.blas_library, "libblas.so") &&
                    !absl::StrContains(info.blas_library, "openblas"));
  info.threads = at::get_num_threads();
  info.cuda_available = torch::cuda::is_available();
  info.cuda_devices = info.cuda_available ? static_cast<int>(torch::cuda::device_count()) : 0;
  return info;
}

absl::StatusOr<c10::Device> ParseDevice(const std::string& spec) {
  if (spec == "cpu") return c10::Device(c10::kCPU);
  if (spec == "auto") {
    return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  }
  if (spec == "cuda" || absl::StartsWith(spec, "cuda:")) {
    int index = 0;
    if (spec.size() > 5 && !absl::SimpleAtoi(spec.substr(5), &index)) {
      return absl::InvalidArgumentError(absl::StrCat("device '", spec, "': expected cuda:N"));
    }
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "device '", spec, "' requested but this LibTorch build sees no CUDA device"));
    }
    if (index < 0 || index >= static_cast<int>(torch::cuda::device_count())) {
      return absl::InvalidArgumentError(
          absl::StrCat("device '", spec, "': only ", torch::cuda::device_count(), " CUDA devices"));
    }
    return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device '", spec, "': expected cpu, cuda, cuda:N or auto"));
}

int DefaultMaxBatch(const c10::Device& device) { return device.is_cuda() ? 64 : 16; }

void ConfigureRuntime(const std::string& binary, const c10::Device& device, int threads) {
  const AllocatorTuning malloc_tuning = TuneAllocatorForTensors();
  // Debian's LibTorch (OpenMP) starts with ONE intra-op thread on this 2-core VM
  // (omp_get_max_threads() = 1), so 0 means one thread per core here, not the library default.
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (at::get_num_threads() != threads) at::set_num_threads(threads);
  RuntimeInfo info = GetRuntimeInfo();
  CF_LOG(INFO) << binary << ": LibTorch " << info.torch_version << ", device " << device.str()
               << ", threads " << info.threads << ", BLAS " << info.blas_library
               << (info.cuda_available ? absl::StrCat(", CUDA devices ", info.cuda_devices)
                                       : std::string(", no CUDA"))
               << "; " << malloc_tuning.why;
  if (info.slow_blas) {
    CF_LOG(WARNING) << "the reference BLAS (" << info.blas_library
                    << ") is in use: LibTorch runs ~20x slower. Install libopenblas0-openmp "
                       "(scripts/setup.sh does).";
  }
}

}  // namespace cellflux
