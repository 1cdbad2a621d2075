// SiT forward latency, C++ side (bench/sit_forward_bench.py runs the same network in PyTorch
// eager on the CPU and drives both; bench/sit_forward_gpu_bench.py does the same on a GPU with
// PyTorch bf16 + SDPA and torch.compile; see bench/RESULTS.md).
//
//   sit_forward_bench [--size S] [--patch 2] [--input 32] [--channels 4] [--batch 1,8,32]
//                     [--threads 1] [--reps 10] [--warmup 2] [--config FILE.json]
//                     [--device cpu|cuda:N] [--precision fp32|tf32|bf16|auto]
//                     [--attention default|math|fused] [--peak-tflops 0]
//
// Builds SiT-<size>/<patch> (or the "sit" of a model config such as configs/paper.json, gene
// tokens included) with the reference initialisation plus small random adaLN/head weights (so no
// branch sees only zeros), then times `forward` under c10::InferenceMode (with a device sync
// around each forward on CUDA). --precision: common/models/precision.h (default fp32).
// Prints one line per batch: "batch=B threads=T median_ms=... min_ms=... cpu_ms=... reps=R
// gflop=G tflops=... [peak_pct=...] precision=P attention=A device=D" (cpu_ms: median process
// CPU time per forward, all threads; gflop: forward FLOPs of the whole batch, multiply-add = 2;
// tflops from the median; peak_pct against --peak-tflops when > 0).
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/models/attention.h"
#include "common/models/config.h"
#include "common/models/precision.h"
#include "common/models/sit.h"
#include "common/torch/runtime.h"

namespace {

struct Flags {
  std::string size = "S";
  int patch = 2, input = 32, channels = 4, threads = 1, reps = 10, warmup = 2;
  std::vector<int> batches = {1, 8, 32};
  std::string config, device = "cpu", precision = "fp32", attention = "default";
  double peak_tflops = 0;
};

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string key = argv[i], value = argv[i + 1];
    auto as_int = [&](int* out) { return absl::SimpleAtoi(value, out); };
    bool ok = true;
    if (key == "--size")
      f->size = value;
    else if (key == "--patch")
      ok = as_int(&f->patch);
    else if (key == "--input")
      ok = as_int(&f->input);
    else if (key == "--channels")
      ok = as_int(&f->channels);
    else if (key == "--threads")
      ok = as_int(&f->threads);
    else if (key == "--reps")
      ok = as_int(&f->reps);
    else if (key == "--warmup")
      ok = as_int(&f->warmup);
    else if (key == "--config")
      f->config = value;
    else if (key == "--device")
      f->device = value;
    else if (key == "--precision")
      f->precision = value;
    else if (key == "--attention")
      f->attention = value;
    else if (key == "--peak-tflops")
      ok = absl::SimpleAtod(value, &f->peak_tflops);
    else if (key == "--batch") {
      f->batches.clear();
      for (absl::string_view s : absl::StrSplit(value, ',')) {
        int b = 0;
        ok = ok && absl::SimpleAtoi(s, &b);
        f->batches.push_back(b);
      }
    } else {
      std::fprintf(stderr, "unknown flag %s\n", key.c_str());
      return false;
    }
    if (!ok) {
      std::fprintf(stderr, "bad value for %s: %s\n", key.c_str(), value.c_str());
      return false;
    }
  }
  return argc % 2 == 1;
}

// CPU time of the whole process (all threads), ms: insensitive to other processes' load.
double ProcessCpuMs() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Forward FLOPs of one sample (multiply-add = 2): patch embedding, per block the qkv/proj/MLP
// matmuls over all L tokens, q·kᵀ and attn·v (2·L²·D each) and adaLN, the heads.
double ForwardFlopsPerSample(const cellflux::SiTConfig& c) {
  const double p = c.patch_size, grid = c.input_size / c.patch_size, t = grid * grid;
  const double k = c.gene_tokens, l = t + k, d = c.hidden_size, m = d * c.mlp_ratio;
  const double out = (c.learn_sigma ? 2.0 : 1.0) * c.in_channels, g = c.gene_latent_dim;
  double flops = 2 * t * c.in_channels * p * p * d + 2 * (256 * d + d * d);   // embeddings
  const double block = 2 * l * d * 3 * d + 2 * l * d * d + 2 * 2 * l * d * m  // qkv, proj, MLP
                       + 2 * 2 * l * l * d                                    // q·kᵀ, attn·v
                       + 2 * d * 6 * d;                                       // adaLN
  flops += c.depth * block + 2 * t * d * p * p * out + 2 * d * 2 * d;
  if (k > 0) flops += 2 * g * k * d + 2 * k * d * g + 2 * d * 2 * d;  // gene embedder and head
  return flops;
}

absl::StatusOr<cellflux::SiTConfig> BenchConfig(const Flags& flags) {
  if (!flags.config.empty()) {
    absl::StatusOr<cellflux::ModelConfig> model = cellflux::ModelConfig::Load(flags.config);
    if (!model.ok()) return model.status();
    return model->sit;
  }
  absl::StatusOr<cellflux::SiTConfig> config =
      cellflux::SiTConfig::FromSize(flags.size, flags.patch);
  if (!config.ok()) return config.status();
  config->input_size = flags.input;
  config->in_channels = flags.channels;
  config->learn_sigma = true;  // as the reference SiT-S/2 checkpoints
  return config;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) return 2;
  absl::StatusOr<c10::Device> device = cellflux::ParseDevice(flags.device);
  absl::StatusOr<cellflux::Precision> precision_flag = cellflux::ParsePrecision(flags.precision);
  absl::StatusOr<cellflux::AttentionKernel> attention =
      cellflux::ParseAttentionKernel(flags.attention);
  absl::StatusOr<cellflux::SiTConfig> config = BenchConfig(flags);
  for (const absl::Status& s :
       {device.status(), precision_flag.status(), attention.status(), config.status()}) {
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 2;
    }
  }
  const cellflux::Precision precision = cellflux::ResolvePrecision(*precision_flag, *device);
  // Threads and the malloc tuning every cellflux binary gets (common/torch/runtime.h).
  cellflux::ConfigureRuntime("sit_forward_bench", *device, flags.threads);
  torch::manual_seed(0);
  cellflux::SiT model(*config);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) {
      if (p.abs().max().item<float>() == 0.0f) p.normal_(0.0, 0.02);
    }
  }
  model->to(*device);
  model->eval();
  model->SetComputeDtype(cellflux::ComputeDtype(precision));
  cellflux::SetMatmulPrecision(precision);
  cellflux::SetAttentionKernel(*model, *attention);
  auto sync = [&] {
    if (device->is_cuda()) torch::cuda::synchronize(device->index());
  };
  const double flops_per_sample = ForwardFlopsPerSample(*config);
  c10::InferenceMode guard;
  for (int batch : flags.batches) {
    // Inputs drawn on the CPU (the same whatever the device), then moved.
    torch::Tensor x =
        torch::randn({batch, config->in_channels, config->input_size, config->input_size})
            .to(*device);
    torch::Tensor t = torch::rand({batch}).to(*device);
    torch::Tensor y =
        torch::randint(0, config->num_classes + 1, {batch}, torch::kInt64).to(*device);
    torch::Tensor gene = config->gene_latent_dim > 0
                             ? torch::randn({batch, config->gene_latent_dim}).to(*device)
                             : torch::Tensor();
    std::vector<double> ms, cpu_ms;
    for (int i = 0; i < flags.warmup + flags.reps; ++i) {
      sync();
      const double cpu_start = ProcessCpuMs();
      auto start = std::chrono::steady_clock::now();
      cellflux::SiTOutput out = model->forward(x, t, y, gene);
      sync();
      auto end = std::chrono::steady_clock::now();
      const double cpu_end = ProcessCpuMs();
      if (out.image.size(0) != batch) return 1;
      if (i >= flags.warmup) {
        ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
        cpu_ms.push_back(cpu_end - cpu_start);
      }
    }
    std::sort(ms.begin(), ms.end());
    std::sort(cpu_ms.begin(), cpu_ms.end());
    const double median = ms[ms.size() / 2];
    const double gflop = flops_per_sample * batch / 1e9;
    const double tflops = gflop / median;  // GFLOP per ms = TFLOP/s
    std::string peak;
    if (flags.peak_tflops > 0)
      peak = " peak_pct=" + std::to_string(100 * tflops / flags.peak_tflops);
    std::printf(
        "batch=%d threads=%d median_ms=%.3f min_ms=%.3f cpu_ms=%.3f reps=%d gflop=%.2f "
        "tflops=%.4f%s precision=%s attention=%s device=%s\n",
        batch, at::get_num_threads(), median, ms.front(), cpu_ms[cpu_ms.size() / 2], flags.reps,
        gflop, tflops, peak.c_str(), cellflux::PrecisionName(precision).c_str(),
        cellflux::AttentionKernelName(*attention).c_str(), device->str().c_str());
    std::fflush(stdout);
  }
  return 0;
}
