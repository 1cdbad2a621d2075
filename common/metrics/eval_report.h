// The evaluation's HTML report (work_dir/eval/report.html): one self-contained file (inline SVG
// plots, PNG images as data: URIs, no scripts, no network) that a browser shows offline.
// LibTorch-free.
//
// Sections: the headline metrics with every baseline and 95% intervals (a table and
// metric-vs-baseline bars), predicted vs real gene Δ scatter per compound, the retrieval rank
// histograms, the morphology profile Δ per feature, and an image grid with labelled rows
// control / real / generated per compound.
#ifndef CELLFLUX_COMMON_METRICS_EVAL_REPORT_H_
#define CELLFLUX_COMMON_METRICS_EVAL_REPORT_H_

#include <string>
#include <vector>

#include "common/metrics/compound_eval.h"
#include "nlohmann/json.hpp"

namespace cellflux {

struct ReportGridColumn {
  std::string label;        // compound / treatment
  std::string control_png;  // encoded PNG bytes (may be empty)
  std::string real_png;
  std::string generated_png;
};

struct EvalReportOptions {
  std::string title = "cellflux evaluation";
  nlohmann::json run_info;  // shown as a definition list
  std::vector<ReportGridColumn> grid;
  int max_scatter = 24;  // compounds with a scatter plot
};

std::string RenderEvalReport(const EvalInput& input, const EvalResult& result,
                             const EvalReportOptions& options);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_METRICS_EVAL_REPORT_H_
