// What LibTorch runs on: version, device, threads and BLAS. Every binary configures and logs it at
// start-up (ConfigureRuntime).
#ifndef CELLFLUX_COMMON_TORCH_RUNTIME_H_
#define CELLFLUX_COMMON_TORCH_RUNTIME_H_

#include <c10/core/Device.h>

#include <string>

#include "absl/status/statusor.h"

namespace cellflux {

struct RuntimeInfo {
  std::string torch_version;
  std::string blas_library;  // path of the BLAS mapped into this process, or "unknown"
  bool slow_blas = false;    // the reference (netlib) BLAS: ~20× slower than OpenBLAS here
  int threads = 1;           // intra-op threads
  bool cuda_available = false;
  int cuda_devices = 0;
};

RuntimeInfo GetRuntimeInfo();

// "cpu", "cuda", "cuda:N" or "auto" (CUDA when available). INVALID_ARGUMENT names the bad value;
// FAILED_PRECONDITION when CUDA is asked for but absent.
absl::StatusOr<c10::Device> ParseDevice(const std::string& spec);

// Rows per velocity forward a server batches by default on `device`: 16 on a CPU (beyond that
// a forward only gets longer, bench/RESULTS.md "Server under load"), 64 on CUDA (the tiny model's
// offline sampler runs 3.4x faster at batch 64 than at 16 on an H200; issue 17).
int DefaultMaxBatch(const c10::Device& device);

// A binary's start-up: tunes malloc for tensor buffers (common/util/allocator.h), sets intra-op
// threads (0 = one per core: Debian's OpenMP LibTorch would use one), then logs one line with the
// LibTorch version, device, thread count, BLAS and malloc tuning, plus a WARNING when the slow
// reference BLAS is in use. Call once, before the first tensor op.
void ConfigureRuntime(const std::string& binary, const c10::Device& device, int threads = 0);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_TORCH_RUNTIME_H_
