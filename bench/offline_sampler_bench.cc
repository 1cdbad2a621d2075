// Offline sampler throughput: what the server's batching is compared against (bench/RESULTS.md).
// Loads a checkpoint, then times the whole fixed-batch pipeline a batch job would run — encode B
// controls, SampleEuler with N steps and guidance α (common/flow/sampler.h), decode — with no
// queue, no gRPC and no per-step re-batching.
//
//   offline_sampler_bench --checkpoint DIR [--batch 16] [--steps 20] [--guidance 1.2]
//                         [--threads 2] [--repeats 3] [--vae-max-batch 16] [--device cpu|cuda:N]
//                         [--precision auto|fp32|tf32|bf16] [--attention default|math|fused]
//                         [--compare-fp32] [--nonzero-heads]
//
// Prints one line per repeat and a final "samples/s" line (median over repeats). --precision:
// common/models/precision.h (auto = bf16 on CUDA, fp32 elsewhere). --compare-fp32 first runs the
// same batch (same inputs and seeds) in fp32, then prints the max |difference| of the final
// latents (image, gene) and of the decoded images and expression in the timed precision.
// --nonzero-heads gives every all-zero SiT parameter N(0, 0.02) values first: a fresh
// init-checkpoint's adaLN-Zero SiT has velocity exactly 0, so its steps would change nothing.
#include <torch/cuda.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <iostream>
#include <vector>

#include "common/checkpoint/model_bundle.h"
#include "common/flow/sampler.h"
#include "common/models/attention.h"
#include "common/models/cellflux_model.h"
#include "common/models/precision.h"
#include "common/torch/runtime.h"

int main(int argc, char** argv) {
  CLI::App app{
      "offline_sampler_bench: fixed-batch sampling throughput (encode + N Euler steps + decode)"};
  std::string checkpoint;
  int batch = 16, steps = 20, threads = 2, repeats = 3, vae_max_batch = 16;
  double guidance = 1.2;
  std::string device_spec = "cpu", precision_spec = "auto", attention_spec = "default";
  bool compare_fp32 = false, nonzero_heads = false;
  app.add_option("--checkpoint", checkpoint, "checkpoint directory (or root with `latest`)")
      ->required();
  app.add_option("--batch", batch, "samples per batch")->capture_default_str();
  app.add_option("--steps", steps, "Euler steps")->capture_default_str();
  app.add_option("--guidance", guidance, "guidance scale α")->capture_default_str();
  app.add_option("--threads", threads, "intra-op threads")->capture_default_str();
  app.add_option("--repeats", repeats, "timed batches (after one warm-up)")->capture_default_str();
  app.add_option("--vae-max-batch", vae_max_batch,
                 "pseudo-RGB images per VAE call (the server's default is 16; 0 = all at once)")
      ->capture_default_str();
  app.add_option("--device", device_spec, "cpu, cuda, cuda:N or auto (every tensor goes there)")
      ->capture_default_str();
  app.add_option("--precision", precision_spec,
                 "auto (bf16 on CUDA, fp32 elsewhere), fp32, tf32 or bf16")
      ->capture_default_str();
  app.add_option("--attention", attention_spec, "attention kernel: default, math or fused")
      ->capture_default_str();
  app.add_flag("--compare-fp32", compare_fp32,
               "also run the batch once in fp32 and print the max |difference| to it");
  app.add_flag("--nonzero-heads", nonzero_heads,
               "give the SiT's all-zero (adaLN-Zero) parameters N(0, 0.02) values first");
  CLI11_PARSE(app, argc, argv);

  const absl::StatusOr<c10::Device> parsed = cellflux::ParseDevice(device_spec);
  if (!parsed.ok()) {
    std::cerr << parsed.status() << "\n";
    return 2;
  }
  const c10::Device device = *parsed;
  const absl::StatusOr<cellflux::Precision> precision_flag =
      cellflux::ParsePrecision(precision_spec);
  const absl::StatusOr<cellflux::AttentionKernel> attention =
      cellflux::ParseAttentionKernel(attention_spec);
  if (!precision_flag.ok() || !attention.ok()) {
    std::cerr << (precision_flag.ok() ? attention.status() : precision_flag.status()) << "\n";
    return 2;
  }
  const cellflux::Precision precision = cellflux::ResolvePrecision(*precision_flag, device);
  cellflux::ConfigureRuntime("offline_sampler_bench", device, threads);
  // Loaded in fp32: the --compare-fp32 reference runs first, then the model switches precision.
  auto loaded = cellflux::LoadCheckpointModel(checkpoint, device, cellflux::Precision::kFp32);
  if (!loaded.ok()) {
    std::cerr << loaded.status() << "\n";
    return 1;
  }
  cellflux::CellFluxModel model = loaded->model;
  cellflux::SetAttentionKernel(*model, *attention);
  if (nonzero_heads) {
    torch::NoGradGuard no_grad;
    torch::manual_seed(1);
    for (auto& p : model->sit()->parameters()) {
      if (p.abs().max().item<float>() == 0.0f) p.normal_(0.0, 0.02);
    }
  }
  const auto& cfg = loaded->metadata.config;
  const int64_t c = static_cast<int64_t>(cfg.channel_names.size()), s = cfg.image_size;
  const int64_t genes = static_cast<int64_t>(loaded->metadata.genes.size());
  c10::InferenceMode guard;
  torch::manual_seed(0);
  // Drawn on the CPU (the same inputs whatever the device), then moved.
  torch::Tensor images = (torch::rand({batch, c, s, s}) * 2 - 1).to(device);  // normalised controls
  torch::Tensor expression = torch::randn({batch, genes}).to(device);
  torch::Tensor labels =
      (torch::arange(batch, torch::kInt64) % std::max<int64_t>(1, model->null_label())).to(device);
  // CUDA runs asynchronously: wait for the device at each lap so the phases are its time.
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  };
  std::vector<uint64_t> seeds(batch);
  for (int i = 0; i < batch; ++i) seeds[i] = static_cast<uint64_t>(i);
  cellflux::SamplerOptions so;
  so.num_steps = steps;
  so.guidance_scale = guidance;

  // Seconds spent in each phase of the last run: encode, the N Euler steps, decode.
  double phase[3] = {0, 0, 0};
  cellflux::JointLatent last_z;  // of the last run
  cellflux::DecodedSample last_out;
  auto run_once = [&] {
    auto t0 = std::chrono::steady_clock::now();
    auto lap = [&](double* into) {
      sync();
      const auto t1 = std::chrono::steady_clock::now();
      *into = std::chrono::duration<double>(t1 - t0).count();
      t0 = t1;
    };
    cellflux::LatentPosterior p = model->EncodeImages(images, vae_max_batch);
    torch::Tensor g = model->has_genes() ? model->EncodeExpression(expression) : torch::Tensor();
    cellflux::JointLatent z0 = model->DrawSource(p, g, seeds);
    lap(&phase[0]);
    cellflux::JointLatent z1 =
        cellflux::SampleEuler(model->velocity_fn(), z0, labels, model->null_label(), so);
    lap(&phase[1]);
    cellflux::DecodedSample out = model->Decode(z1, vae_max_batch);
    const float sum = out.images.sum().item<float>();
    lap(&phase[2]);
    last_z = z1;
    last_out = out;
    return sum;
  };
  cellflux::JointLatent ref_z;
  cellflux::DecodedSample ref_out;
  if (compare_fp32) {
    run_once();
    ref_z = last_z;
    ref_out = last_out;
  }
  model->SetPrecision(precision);
  std::cout << "precision " << cellflux::PrecisionName(precision) << ", attention "
            << cellflux::AttentionKernelName(*attention)
            << (cellflux::FusedAttentionIsDefault() ? " (default: fused)" : " (default: math)")
            << "\n";
  run_once();  // warm-up
  std::vector<double> rates;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    run_once();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(batch / secs);
    std::cout << "repeat " << r << ": batch " << batch << " in " << secs << " s = " << batch / secs
              << " samples/s (encode " << phase[0] << " s, " << steps << " steps " << phase[1]
              << " s, decode " << phase[2] << " s)\n";
  }
  if (compare_fp32) {
    auto max_diff = [](const torch::Tensor& a, const torch::Tensor& b) {
      if (!a.defined() || !b.defined()) return 0.0;
      return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
    };
    std::cout << "max |" << cellflux::PrecisionName(precision) << " - fp32| after " << steps
              << " steps: latent image " << max_diff(last_z.image, ref_z.image) << " (|z| max "
              << ref_z.image.abs().max().item<double>() << "), latent gene "
              << max_diff(last_z.gene, ref_z.gene) << ", pixels "
              << max_diff(last_out.images, ref_out.images) << " (range [-1, 1]), expression "
              << max_diff(last_out.expression, ref_out.expression) << "\n";
  }
  std::sort(rates.begin(), rates.end());
  std::cout << "offline samples/s (median): " << rates[rates.size() / 2] << " (batch " << batch
            << ", steps " << steps << ", guidance " << guidance << ", threads " << threads
            << ", device " << device << ", " << cellflux::PrecisionName(precision) << ")\n";
  return 0;
}
