// SiT forward latency on the CPU, C++ side (bench/sit_forward_bench.py runs the same network in
// PyTorch eager and drives both; see bench/RESULTS.md).
//
//   sit_forward_bench [--size S] [--patch 2] [--input 32] [--channels 4] [--batch 1,8,32]
//                     [--threads 1] [--reps 10] [--warmup 2]
//
// Builds SiT-<size>/<patch> with the reference initialisation plus small random adaLN/head
// weights (so no branch sees only zeros), then times `forward` under c10::InferenceMode.
// Prints one line per batch: "batch=B threads=T median_ms=... min_ms=... cpu_ms=... reps=R"
// (cpu_ms: median process CPU time per forward, all threads).
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
#include "common/models/config.h"
#include "common/models/sit.h"
#include "common/torch/runtime.h"

namespace {

struct Flags {
  std::string size = "S";
  int patch = 2, input = 32, channels = 4, threads = 1, reps = 10, warmup = 2;
  std::vector<int> batches = {1, 8, 32};
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

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) return 2;
  // Threads and the malloc tuning every cellflux binary gets (common/torch/runtime.h).
  cellflux::ConfigureRuntime("sit_forward_bench", torch::kCPU, flags.threads);
  auto config = cellflux::SiTConfig::FromSize(flags.size, flags.patch);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  config->input_size = flags.input;
  config->in_channels = flags.channels;
  config->learn_sigma = true;  // as the reference SiT-S/2 checkpoints
  torch::manual_seed(0);
  cellflux::SiT model(*config);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) {
      if (p.abs().max().item<float>() == 0.0f) p.normal_(0.0, 0.02);
    }
  }
  model->eval();
  c10::InferenceMode guard;
  for (int batch : flags.batches) {
    torch::Tensor x = torch::randn({batch, flags.channels, flags.input, flags.input});
    torch::Tensor t = torch::rand({batch});
    torch::Tensor y = torch::randint(0, config->num_classes + 1, {batch}, torch::kInt64);
    std::vector<double> ms, cpu_ms;
    for (int i = 0; i < flags.warmup + flags.reps; ++i) {
      const double cpu_start = ProcessCpuMs();
      auto start = std::chrono::steady_clock::now();
      cellflux::SiTOutput out = model->forward(x, t, y);
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
    std::printf("batch=%d threads=%d median_ms=%.3f min_ms=%.3f cpu_ms=%.3f reps=%d\n", batch,
                at::get_num_threads(), ms[ms.size() / 2], ms.front(), cpu_ms[cpu_ms.size() / 2],
                flags.reps);
    std::fflush(stdout);
  }
  return 0;
}
