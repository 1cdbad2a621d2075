// cellflux-tool evaluate: (re-)scores an evaluation's per-compound predictions against the real
// data and the baselines, and writes metrics.json, per_compound.csv and the HTML report.
//
//   cellflux-tool evaluate --eval-dir work_dir/eval [--out DIR] [--top-k 50] [--bootstrap 2000]
//                          [--seed 0]
//
// Input: DIR/compounds.json as `cellflux-train eval` writes it (common/metrics/compound_eval.h:
// per treatment the real and predicted means, their matched controls, the baselines' answers,
// per-image profiles), and the image grid DIR/grid/NN_{control,real,generated}.png if present.
// Output (into --out, default the eval dir): metrics.json, per_compound.csv, report.html.
#include <filesystem>
#include <iostream>
#include <memory>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/metrics/compound_eval.h"
#include "common/metrics/eval_report.h"
#include "common/tools/command.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace cellflux::tool {
namespace {

struct EvaluateOptions {
  std::string eval_dir, out;
  int top_k = 50;
  int bootstrap = 2000;
  uint64_t seed = 0;
};

std::string FileOrEmpty(const std::string& path) {
  absl::StatusOr<std::string> s = ReadFile(path);
  return s.ok() ? *s : "";
}

absl::Status RunEvaluate(const EvaluateOptions& o) {
  const std::string out = o.out.empty() ? o.eval_dir : o.out;
  CF_ASSIGN_OR_RETURN(std::string text, ReadFile(o.eval_dir + "/compounds.json"));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return absl::InvalidArgumentError("evaluate: " + o.eval_dir + "/compounds.json is not JSON");
  CF_ASSIGN_OR_RETURN(EvalInput input, EvalInputFromJson(j));
  input.top_k = o.top_k;
  input.bootstrap_resamples = o.bootstrap;
  input.seed = o.seed;
  const EvalResult result = ScoreCompounds(input);
  nlohmann::json run = {{"source", o.eval_dir + "/compounds.json"},
                        {"compounds", input.compounds.size()}};
  // Keep the producing run's description when re-scoring in place.
  nlohmann::json previous =
      nlohmann::json::parse(FileOrEmpty(o.eval_dir + "/metrics.json"), nullptr, false);
  if (!previous.is_discarded() && previous.contains("run")) run = previous["run"];
  nlohmann::json metrics = MetricsJson(result, run);
  if (!previous.is_discarded()) {  // image-feature scores are not recomputed here: keep them
    for (const auto& [k, v] : previous.items()) {
      if (k.rfind("image_", 0) == 0) metrics[k] = v;
    }
  }
  CF_RETURN_IF_ERROR(MakeDirs(out));
  CF_RETURN_IF_ERROR(WriteFileAtomic(out + "/metrics.json", metrics.dump(2)));
  CF_RETURN_IF_ERROR(WriteFileAtomic(out + "/per_compound.csv", PerCompoundCsv(input, result)));
  EvalReportOptions ro;
  ro.run_info = run;
  const std::vector<std::string> labels =
      absl::StrSplit(FileOrEmpty(o.eval_dir + "/grid/labels.txt"), '\n');
  for (int col = 0;; ++col) {
    const std::string stem = absl::StrFormat("%s/grid/%02d", o.eval_dir, col);
    if (!std::filesystem::exists(stem + "_generated.png")) break;
    ro.grid.push_back({col < static_cast<int>(labels.size()) ? labels[col] : "",
                       FileOrEmpty(stem + "_control.png"), FileOrEmpty(stem + "_real.png"),
                       FileOrEmpty(stem + "_generated.png")});
  }
  CF_RETURN_IF_ERROR(WriteFileAtomic(out + "/report.html", RenderEvalReport(input, result, ro)));
  for (const std::string& m : result.metrics) {
    std::string line = absl::StrFormat("%-28s", m);
    for (const std::string& p : result.predictors) {
      auto it = result.summary.at(m).find(p);
      if (it != result.summary.at(m).end()) absl::StrAppendFormat(&line, " %s %.3f", p, it->second);
    }
    std::cout << line << "\n";
  }
  std::cout << "wrote " << out << "/metrics.json, per_compound.csv, report.html\n";
  return absl::OkStatus();
}

RunFn SetupEvaluate(CLI::App* app) {
  auto o = std::make_shared<EvaluateOptions>();
  app->add_option("--eval-dir", o->eval_dir, "an eval folder with compounds.json")->required();
  app->add_option("--out", o->out, "output folder (default: the eval folder)");
  app->add_option("--top-k", o->top_k, "real top-k genes for Pearson-Δ / sign accuracy")
      ->capture_default_str();
  app->add_option("--bootstrap", o->bootstrap, "bootstrap resamples for the intervals")
      ->capture_default_str();
  app->add_option("--seed", o->seed, "bootstrap seed")->capture_default_str();
  return [o]() -> int { return ReportStatus("evaluate", RunEvaluate(*o)); };
}

}  // namespace

CF_TOOL_COMMAND(evaluate,
                "Score per-compound predictions (eval/compounds.json) against real data and "
                "baselines; write metrics.json, per_compound.csv, report.html",
                SetupEvaluate);

}  // namespace cellflux::tool
