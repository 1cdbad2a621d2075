// cellflux-tool synth: writes the embedded synthetic CDRP-like dataset (common/data/synth.h) in the
// real BBBC047 + Haghighi L1000 layout.
//
//   cellflux-tool synth --out DIR [--plates 4] [--compounds 48] [--seed 1] [--image-size 160x160]
//                       [--sites 2] [--wells-per-plate 80] [--min-dmso-wells 16]
//                       [--l1000-plates 3] [--l1000-dmso-per-plate 8] [--threads 2]
#include "common/data/synth.h"

#include <chrono>
#include <iostream>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/tools/command.h"
#include "common/util/status_macros.h"

namespace cellflux::tool {
namespace {

// "WxH" or "N" (square) → width, height.
absl::Status ParseImageSize(const std::string& text, SynthOptions& options) {
  std::vector<std::string> parts = absl::StrSplit(text, absl::ByAnyChar("xX"));
  if (parts.size() == 1) parts.push_back(parts[0]);
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &options.image_width) ||
      !absl::SimpleAtoi(parts[1], &options.image_height)) {
    return absl::InvalidArgumentError("synth: --image-size = '" + text +
                                      "', expected WxH such as 160x160");
  }
  return absl::OkStatus();
}

RunFn SetupSynth(CLI::App* app) {
  auto options = std::make_shared<SynthOptions>();
  auto out = std::make_shared<std::string>();
  auto size = std::make_shared<std::string>("160x160");
  app->add_option("--out", *out, "output directory")->required();
  app->add_option("--plates", options->plates, "Cell Painting plates")->capture_default_str();
  app->add_option("--compounds", options->compounds, "distinct compounds")->capture_default_str();
  app->add_option("--seed", options->seed, "random seed (same seed -> identical files)")
      ->capture_default_str();
  app->add_option("--image-size", *size, "site size WxH in pixels")->capture_default_str();
  app->add_option("--sites", options->sites, "sites per well")->capture_default_str();
  app->add_option("--wells-per-plate", options->wells_per_plate, "used wells per plate (<= 384)")
      ->capture_default_str();
  app->add_option("--latent-dim", options->latent_dim, "compound latent size k")
      ->capture_default_str();
  app->add_option("--l1000-plates", options->l1000_plates, "L1000 plates")->capture_default_str();
  app->add_option("--l1000-dmso-per-plate", options->l1000_dmso_per_plate,
                  "DMSO rows per L1000 plate")
      ->capture_default_str();
  app->add_option("--min-dmso-wells", options->min_dmso_wells, "DMSO wells per CP plate, at least")
      ->capture_default_str();
  app->add_option("--threads", options->threads, "rendering threads")->capture_default_str();
  return [options, out, size]() -> int {
    absl::Status status = ParseImageSize(*size, *options);
    if (!status.ok()) return ReportStatus("synth", status);
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<SynthSummary> summary = WriteSynthDataset(*options, *out);
    if (!summary.ok()) return ReportStatus("synth", summary.status());
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << "wrote " << *out << ": " << options->plates << " plates, " << summary->wells
              << " wells, " << summary->images << " images, " << summary->treatments
              << " treatments of " << options->compounds << " compounds, " << summary->l1000_rows
              << " L1000 rows in " << seconds << " s\n";
    return 0;
  };
}

}  // namespace

// A named setup function: the macro cannot take a lambda whose body contains commas.
CF_TOOL_COMMAND(synth,
                "Write a synthetic CDRP-like dataset (images, plate maps, L1000, ground truth)",
                SetupSynth);

}  // namespace cellflux::tool
