#include "client/report.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <numeric>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/plan.h"
#include "common/metrics/cell_profile.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"

namespace cellflux::client {
namespace {

constexpr char kStyle[] = R"(
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{margin:0 0 4px}
.meta{color:#555;margin-bottom:16px}
.legend{font-size:13px;color:#555;margin-bottom:20px}
h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px}
.row{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px;margin:12px 0}
.row h3{margin:0 0 8px;font-size:15px;font-weight:600}
.panels{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
figure{margin:0;text-align:center}
figure img{width:220px;height:220px;object-fit:contain;background:#000;border-radius:3px;display:block}
figcaption{font-size:12px;color:#444;margin-top:3px}
.bank{width:220px;height:220px;background:#eee;color:#666;display:flex;align-items:center;justify-content:center;text-align:center;font-size:13px;border-radius:3px;padding:8px;box-sizing:border-box}
.genes{display:flex;gap:14px;margin-left:8px}
table{border-collapse:collapse;font-size:12px}
th,td{padding:2px 6px;text-align:left;border-bottom:1px solid #eee}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#b00020}.down{color:#0044aa}
.note{font-size:11px;color:#777;max-width:260px}
.fail td{vertical-align:top}
)";

absl::StatusOr<std::string> DataUri(const std::string& out_dir, const std::string& relative) {
  CF_ASSIGN_OR_RETURN(std::string bytes, ReadFile(absl::StrCat(out_dir, "/", relative)));
  return absl::StrCat("data:image/png;base64,", absl::Base64Escape(bytes));
}

// Mean over samples of the generated expression.
std::vector<double> MeanExpression(const RowRecord& record) {
  std::vector<double> mean(record.gene_ids.size(), 0.0);
  if (record.samples.empty()) return mean;
  for (const SampleRecord& sample : record.samples) {
    for (size_t g = 0; g < mean.size() && g < sample.expression.size(); ++g) {
      mean[g] += sample.expression[g];
    }
  }
  for (double& v : mean) v /= static_cast<double>(record.samples.size());
  return mean;
}

std::string GeneTable(const char* title, const char* css, const std::vector<size_t>& genes,
                      const std::vector<double>& delta, const RowRecord& record) {
  std::string html = absl::StrCat("<table><tr><th colspan=3 class=", css, ">", title,
                                  "</th></tr><tr><th>gene</th><th>probe</th><th>&Delta;</th></tr>");
  for (size_t g : genes) {
    absl::StrAppend(&html, "<tr><td>", HtmlEscape(GeneSymbol(record.gene_ids[g])), "</td><td>",
                    HtmlEscape(record.gene_ids[g]), "</td><td class='num ", css, "'>",
                    absl::StrFormat("%+.3f", delta[g]), "</td></tr>");
  }
  absl::StrAppend(&html, "</table>");
  return html;
}

// Generated (mean over samples) minus the row's reference: its control's expression, or the mean
// of all predictions in the screen when the control is in the server's bank. Empty without genes.
std::vector<double> RowDelta(const RowRecord& record, const std::vector<double>& screen_mean) {
  if (record.gene_ids.empty() || record.samples.empty()) return {};
  const std::vector<double> mean = MeanExpression(record);
  const bool has_control = record.control_expression.size() == mean.size();
  std::vector<double> delta(mean.size());
  for (size_t g = 0; g < mean.size(); ++g) {
    const double reference = has_control ? record.control_expression[g] : screen_mean[g];
    delta[g] = mean[g] - reference;
  }
  return delta;
}

// Indices of the n largest (up) and n smallest (down) values.
std::pair<std::vector<size_t>, std::vector<size_t>> TopGenes(const std::vector<double>& delta,
                                                             int top_genes) {
  std::vector<size_t> order(delta.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return delta[a] > delta[b]; });
  const size_t n = std::min<size_t>(top_genes, order.size());
  return {std::vector<size_t>(order.begin(), order.begin() + n),
          std::vector<size_t>(order.rbegin(), order.rbegin() + n)};
}

std::string GenesHtml(const RowRecord& record, const std::vector<double>& screen_mean,
                      int top_genes) {
  const std::vector<double> delta = RowDelta(record, screen_mean);
  if (delta.empty()) return "";
  const bool has_control = record.control_expression.size() == delta.size();
  const auto [up, down] = TopGenes(delta, top_genes);
  std::string note = has_control
                         ? "&Delta; = generated (mean over samples) &minus; control expression"
                         : "control is in the server's bank: &Delta; = generated &minus; mean of "
                           "all predictions in this screen";
  return absl::StrCat("<div class=genes>", GeneTable("up-regulated", "up", up, delta, record),
                      GeneTable("down-regulated", "down", down, delta, record), "<div class=note>",
                      note, "</div></div>");
}

// Per-feature spread of the screen's control profiles (each row's control once), the unit the
// morphology changes are shown in. Empty when fewer than two rows carry a control profile.
std::vector<double> ControlProfileSd(const std::vector<RowRecord>& records) {
  std::vector<const std::vector<double>*> controls;
  for (const RowRecord& r : records) {
    if (!r.control_profile.empty() &&
        (controls.empty() || r.control_profile.size() == controls[0]->size()))
      controls.push_back(&r.control_profile);
  }
  if (controls.size() < 2) return {};
  const size_t n = controls.size(), f = controls[0]->size();
  std::vector<double> mean(f, 0.0), sd(f, 0.0);
  for (const auto* c : controls)
    for (size_t i = 0; i < f; ++i) mean[i] += (*c)[i] / n;
  for (const auto* c : controls)
    for (size_t i = 0; i < f; ++i) sd[i] += ((*c)[i] - mean[i]) * ((*c)[i] - mean[i]) / (n - 1);
  for (double& v : sd) v = std::sqrt(v);
  return sd;
}

// The compound's morphology story: for each row, the mean profile of its generated images minus
// its control's profile; over rows, the mean of that in units of the screen's control spread, the
// features that move most, and how many rows move each the same way.
std::string MorphologyHtml(const std::vector<const RowRecord*>& rows,
                           const std::vector<double>& control_sd, int top_features) {
  const std::vector<std::string>& names = ProfileFeatureNames();
  if (control_sd.size() != names.size()) return "";
  std::vector<std::vector<double>> deltas;  // per row, in control SDs
  for (const RowRecord* r : rows) {
    if (r->control_profile.size() != names.size() || r->samples.empty()) continue;
    std::vector<double> d(names.size(), 0.0);
    bool complete = true;
    for (const SampleRecord& s : r->samples) {
      if (s.profile.size() != names.size()) complete = false;
      for (size_t i = 0; complete && i < names.size(); ++i)
        d[i] += s.profile[i] / r->samples.size();
    }
    if (!complete) continue;
    for (size_t i = 0; i < names.size(); ++i) {
      d[i] = control_sd[i] > 1e-9 ? (d[i] - r->control_profile[i]) / control_sd[i] : 0.0;
    }
    deltas.push_back(std::move(d));
  }
  if (deltas.empty()) return "";
  std::vector<double> mean(names.size(), 0.0);
  for (const auto& d : deltas)
    for (size_t i = 0; i < mean.size(); ++i) mean[i] += d[i] / deltas.size();
  std::vector<size_t> order(names.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return std::abs(mean[a]) > std::abs(mean[b]); });
  order.resize(std::min<size_t>(order.size(), top_features));
  std::string html =
      "<table><tr><th colspan=3>morphology profile</th></tr><tr><th>feature</th><th>mean "
      "&Delta; (control SDs)</th><th>rows agreeing</th></tr>";
  for (size_t i : order) {
    int agree = 0;
    for (const auto& d : deltas) agree += (d[i] > 0) == (mean[i] > 0) && d[i] != 0;
    absl::StrAppend(&html, "<tr><td>", HtmlEscape(names[i]), "</td><td class='num ",
                    mean[i] > 0 ? "up" : "down", "'>", absl::StrFormat("%+.2f", mean[i]),
                    "</td><td class=num>", agree, "/", deltas.size(), "</td></tr>");
  }
  return html +
         "</table><div class=note>profile: CellProfiler-like features of the generated images "
         "(intensity, nuclei on DNA, texture) minus the row's control, in units of the spread "
         "of this screen's controls</div>";
}

// The compound's story across its rows: the mean Δ over rows (each row: another control), its top
// up / down genes, and for each how many rows agree on the sign — a gene that moves one way from
// one control and the other way from another is that control's noise, not the compound's effect.
std::string CompoundHtml(const std::vector<const RowRecord*>& rows,
                         const std::vector<double>& screen_mean,
                         const std::vector<double>& control_sd, int top_genes) {
  std::vector<std::vector<double>> deltas;
  for (const RowRecord* r : rows) {
    std::vector<double> d = RowDelta(*r, screen_mean);
    if (!d.empty() && (deltas.empty() || d.size() == deltas[0].size())) deltas.push_back(d);
  }
  if (deltas.empty()) return "";
  std::vector<double> mean(deltas[0].size(), 0.0);
  for (const auto& d : deltas)
    for (size_t g = 0; g < mean.size(); ++g) mean[g] += d[g] / deltas.size();
  const auto [up, down] = TopGenes(mean, top_genes);
  const RowRecord& first = *rows[0];
  auto table = [&](const char* title, const char* css, const std::vector<size_t>& genes) {
    std::string html = absl::StrCat("<table><tr><th colspan=4 class=", css, ">", title,
                                    "</th></tr><tr><th>gene</th><th>probe</th><th>mean "
                                    "&Delta;</th><th>rows agreeing</th></tr>");
    for (size_t g : genes) {
      int agree = 0;
      for (const auto& d : deltas) agree += (d[g] > 0) == (mean[g] > 0) && d[g] != 0;
      absl::StrAppend(&html, "<tr><td>", HtmlEscape(GeneSymbol(first.gene_ids[g])), "</td><td>",
                      HtmlEscape(first.gene_ids[g]), "</td><td class='num ", css, "'>",
                      absl::StrFormat("%+.3f", mean[g]), "</td><td class=num>", agree, "/",
                      deltas.size(), "</td></tr>");
    }
    return html + "</table>";
  };
  return absl::StrCat("<div class=row><h3>compound: mean &Delta; over ", deltas.size(),
                      deltas.size() == 1 ? " row" : " rows", "</h3><div class=genes>",
                      table("up-regulated", "up", up), table("down-regulated", "down", down),
                      "<div class=note>each row's &Delta; is taken from its own control; rows "
                      "agreeing: how many rows move the gene the same way as the mean</div>",
                      MorphologyHtml(rows, control_sd, top_genes), "</div></div>\n");
}

// A smiles row: how far the compound is from what the model was trained on.
std::string StructureHtml(const RowRecord& r) {
  if (r.smiles.empty()) return "";
  const std::string dose =
      r.dose_um > 0 ? absl::StrFormat("%g µM", r.dose_um) : std::string("unknown dose");
  if (r.in_vocabulary) {
    return absl::StrCat("<div class=meta>canonical SMILES ", HtmlEscape(r.canonical_smiles),
                        " &middot; in the model's vocabulary (",
                        HtmlEscape(r.nearest_perturbation_id), ") &middot; ", dose, "</div>\n");
  }
  return absl::StrCat(
      "<div class=meta>canonical SMILES ", HtmlEscape(r.canonical_smiles),
      " &middot; not in the vocabulary: nearest training compound ",
      HtmlEscape(r.nearest_perturbation_id.empty() ? "-" : r.nearest_perturbation_id),
      absl::StrFormat(" (Tanimoto %.2f)", r.nearest_similarity), " &middot; ", dose, "</div>\n");
}

absl::StatusOr<std::string> RowHtml(const std::string& out_dir, const RowRecord& record,
                                    const std::vector<double>& screen_mean,
                                    const ReportOptions& options) {
  std::string html = absl::StrCat("<div class=row><h3>", RowName(record.row), " &middot; control ",
                                  HtmlEscape(record.control), "</h3><div class=panels>");
  if (!record.control_composite.empty()) {
    CF_ASSIGN_OR_RETURN(std::string uri, DataUri(out_dir, record.control_composite));
    absl::StrAppend(&html, "<figure><img alt='control' src='", uri,
                    "'><figcaption>control</figcaption></figure>");
  } else {
    absl::StrAppend(&html,
                    "<figure><div class=bank>control image held in the server's control "
                    "bank</div><figcaption>control</figcaption></figure>");
  }
  const int shown = std::min<int>(options.max_samples_shown, record.samples.size());
  for (int k = 0; k < shown; ++k) {
    const SampleRecord& sample = record.samples[k];
    CF_ASSIGN_OR_RETURN(std::string uri, DataUri(out_dir, sample.composite));
    absl::StrAppend(&html, "<figure><img alt='generated sample ", sample.sample, "' src='", uri,
                    "'><figcaption>generated s", sample.sample, " &middot; seed ", sample.seed,
                    "</figcaption></figure>");
  }
  if (shown < static_cast<int>(record.samples.size())) {
    absl::StrAppend(&html, "<div class=note>+", record.samples.size() - shown, " more samples in ",
                    HtmlEscape(RowName(record.row)), "/</div>");
  }
  absl::StrAppend(&html, GenesHtml(record, screen_mean, options.top_genes), "</div></div>\n");
  return html;
}

std::vector<double> ScreenMean(const std::vector<RowRecord>& records) {
  std::vector<double> sum;
  int64_t count = 0;
  for (const RowRecord& record : records) {
    for (const SampleRecord& sample : record.samples) {
      if (sum.empty()) sum.assign(sample.expression.size(), 0.0);
      if (sample.expression.size() != sum.size()) continue;
      for (size_t g = 0; g < sum.size(); ++g) sum[g] += sample.expression[g];
      ++count;
    }
  }
  for (double& v : sum) v /= std::max<int64_t>(count, 1);
  return sum;
}

}  // namespace

std::string HtmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

absl::Status WriteReport(const std::string& out_dir, const Plan& plan,
                         const std::vector<RowRecord>& records,
                         const std::vector<RowFailure>& failures, const ReportOptions& options) {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", std::localtime(&now));
  std::string models;
  for (const RowRecord& record : records) {
    if (models.find(record.model_id) == std::string::npos) {
      absl::StrAppend(&models, models.empty() ? "" : ", ", record.model_id);
    }
  }
  std::string html = absl::StrCat(
      "<!DOCTYPE html><html><head><meta charset='utf-8'><title>CellFlux screen "
      "report</title><style>",
      kStyle, "</style></head><body><h1>CellFlux screen report</h1><div class=meta>plan ",
      HtmlEscape(plan.path), " &middot; ", plan.rows.size(), " rows: ", records.size(), " done, ",
      failures.size(), " failed &middot; model ", HtmlEscape(models.empty() ? "-" : models),
      " &middot; ", stamp,
      "</div><div class=legend>Composites: DNA &rarr; red, RNA &rarr; green, "
      "ER &rarr; blue; each channel contrast-stretched to its 0.5&ndash;99.5 percentile.</div>\n");

  // Group by compound (perturbation, or SMILES row subject) in order of first appearance.
  std::vector<std::string> order;
  absl::flat_hash_map<std::string, std::vector<const RowRecord*>> groups;
  for (const RowRecord& record : records) {
    const std::string subject = RowSubject(plan.rows[record.row]);
    auto [it, inserted] = groups.try_emplace(subject);
    if (inserted) order.push_back(subject);
    it->second.push_back(&record);
  }
  const std::vector<double> screen_mean = ScreenMean(records);
  const std::vector<double> control_sd = ControlProfileSd(records);
  int shown = 0;
  for (const std::string& perturbation : order) {
    if (shown >= options.max_rows) break;
    const auto& rows = groups[perturbation];
    absl::StrAppend(&html, "<h2>", HtmlEscape(perturbation), " <small>(", rows.size(),
                    rows.size() == 1 ? " row" : " rows", ")</small></h2>\n",
                    StructureHtml(*rows.front()));
    absl::StrAppend(&html, CompoundHtml(rows, screen_mean, control_sd, options.top_genes));
    for (const RowRecord* record : rows) {
      if (shown >= options.max_rows) break;
      CF_ASSIGN_OR_RETURN(std::string row_html, RowHtml(out_dir, *record, screen_mean, options));
      absl::StrAppend(&html, row_html);
      ++shown;
    }
  }
  if (shown < static_cast<int>(records.size())) {
    absl::StrAppend(&html, "<p>", records.size() - shown,
                    " more rows are not shown here; see results.csv.</p>");
  }
  if (!failures.empty()) {
    absl::StrAppend(&html, "<h2>Failures (", failures.size(),
                    ")</h2><table class=fail><tr><th>row</th><th>line</th><th>perturbation</th>"
                    "<th>code</th><th>message</th></tr>");
    for (const RowFailure& failure : failures) {
      const PlanRow& row = plan.rows[failure.row];
      absl::StrAppend(&html, "<tr><td>", RowName(row.index), "</td><td>", row.line, "</td><td>",
                      HtmlEscape(RowSubject(row)), "</td><td>",
                      absl::StatusCodeToString(failure.status.code()), "</td><td>",
                      HtmlEscape(std::string(failure.status.message())), "</td></tr>");
    }
    absl::StrAppend(&html, "</table>");
  }
  absl::StrAppend(&html, "</body></html>\n");
  return WriteFileAtomic(absl::StrCat(out_dir, "/report.html"), html);
}

}  // namespace cellflux::client
