// cellflux-tool inspect CKPT: prints a checkpoint's config, parameter counts, vocabulary, genes,
// train step and model id. CKPT is a checkpoint directory or a root with a `latest` pointer.
// Exit code 0 on success, 2 (with the validation message on stderr) on a missing or invalid
// checkpoint, 1 on other errors.
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/checkpoint/checkpoint.h"
#include "common/checkpoint/checkpoint_dir.h"
#include "common/tools/command.h"
#include "common/util/status_macros.h"

namespace cellflux::tool {
namespace {

int64_t CountParameters(const TensorMap& tensors) {
  int64_t n = 0;
  for (const auto& [name, t] : tensors) n += t.numel();
  return n;
}

std::string Human(int64_t n) {
  if (n >= 1'000'000'000) return absl::StrFormat("%.2fB", n / 1e9);
  if (n >= 1'000'000) return absl::StrFormat("%.2fM", n / 1e6);
  if (n >= 1'000) return absl::StrFormat("%.2fK", n / 1e3);
  return absl::StrCat(n);
}

absl::Status Inspect(const std::string& path, int show) {
  CF_ASSIGN_OR_RETURN(std::string dir, ResolveCheckpointDir(path));
  CF_ASSIGN_OR_RETURN(CheckpointBundle b, ReadCheckpoint(dir));
  std::ostream& out = std::cout;
  out << "checkpoint: " << dir << "\n";
  out << "model_id: " << b.model_id << "\n";
  out << "step: " << b.step << "\n";
  out << "config:\n" << b.config.ToJson().dump(2) << "\n";
  out << "parameters:\n";
  int64_t total = 0;
  for (const auto& [file, tensors] :
       {std::pair<const char*, const TensorMap*>{kModelFile, &b.model},
        {kGeneAutoencoderFile, &b.gene_autoencoder},
        {kImageVaeFile, &b.image_vae}}) {
    const int64_t n = CountParameters(*tensors);
    total += n;
    out << absl::StrFormat("  %-30s %6d tensors %14d parameters (%s)\n", file, tensors->size(), n,
                           Human(n));
  }
  out << absl::StrFormat("  %-30s %6s         %14d parameters (%s)\n", "total", "", total,
                         Human(total));
  out << "perturbations: " << b.perturbations.size() << " (+1 null row)\n";
  for (size_t i = 0; i < b.perturbations.size() && static_cast<int>(i) < show; ++i) {
    const PerturbationEntry& p = b.perturbations[i];
    out << "  " << i << "\t" << p.id << "\t"
        << (std::isnan(p.dose) ? std::string("-") : absl::StrCat(p.dose, " uM")) << "\t" << p.name
        << "\n";
  }
  if (static_cast<int>(b.perturbations.size()) > show) out << "  ...\n";
  out << "genes: " << b.genes.size() << "\n";
  for (size_t i = 0; i < b.genes.size() && static_cast<int>(i) < show; ++i) {
    out << "  " << i << "\t" << b.genes[i].probe_id << "\t" << b.genes[i].symbol << "\n";
  }
  if (static_cast<int>(b.genes.size()) > show) out << "  ...\n";
  out << "trainer_state: "
      << (std::filesystem::is_directory(std::filesystem::path(dir) / kTrainerStateDir) ? "present"
                                                                                       : "absent")
      << "\n";
  return absl::OkStatus();
}

}  // namespace

CF_TOOL_COMMAND(inspect, "Print a checkpoint's config, sizes, vocabulary, genes, step and model id",
                ([](CLI::App* app) -> RunFn {
                  auto path = std::make_shared<std::string>();
                  auto show = std::make_shared<int>(5);
                  app->add_option("checkpoint", *path,
                                  "checkpoint directory, or a root with a 'latest' file")
                      ->required();
                  app->add_option("--show", *show, "how many vocabulary and gene entries to list")
                      ->check(CLI::NonNegativeNumber);
                  return [path, show]() { return ReportStatus("inspect", Inspect(*path, *show)); };
                }));

}  // namespace cellflux::tool
