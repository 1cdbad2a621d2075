#include "common/metrics/eval_report.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/metrics/delta_metrics.h"

namespace cellflux {
namespace {

const char* Colour(const std::string& predictor) {
  if (predictor == "model") return "#1f77b4";
  if (predictor == "control") return "#7f7f7f";
  if (predictor == "train_mean") return "#ff7f0e";
  if (predictor == "nearest_seen") return "#9467bd";
  if (predictor == "replicate") return "#2ca02c";
  return "#8c564b";
}

std::string Esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '&':
        o += "&amp;";
        break;
      case '"':
        o += "&quot;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

std::string Num(double v) {
  if (std::isnan(v)) return "–";
  return absl::StrFormat("%.3f", v);
}

// Horizontal bars, one per predictor, with the 95% interval as a whisker.
std::string BarChart(const EvalResult& r, const std::string& metric) {
  const auto& row = r.summary.at(metric);
  double lo = 0, hi = 0;
  for (const auto& [p, v] : row) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    auto ci = r.ci.find(metric);
    if (ci != r.ci.end() && ci->second.count(p)) {
      lo = std::min(lo, ci->second.at(p).lo);
      hi = std::max(hi, ci->second.at(p).hi);
    }
  }
  if (hi - lo < 1e-12) hi = lo + 1;
  const int w = 320, label = 90, bar_h = 16, gap = 4;
  const int h = static_cast<int>(row.size()) * (bar_h + gap) + 24;
  // 48 px right of the longest bar for its value.
  auto x = [&](double v) { return label + (v - lo) / (hi - lo) * (w - label - 48); };
  std::string s = absl::StrFormat(
      "<svg class=\"bars\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
      "xmlns=\"http://www.w3.org/2000/svg\"><text x=\"4\" y=\"12\" font-size=\"12\" "
      "font-weight=\"bold\">%s%s</text>",
      w, h, w, h, Esc(metric), LowerIsBetter(metric) ? " (lower is better)" : "");
  int y = 20;
  for (const std::string& p : r.predictors) {
    auto it = row.find(p);
    if (it == row.end()) continue;
    const double x0 = x(0), x1 = x(it->second);
    absl::StrAppendFormat(&s,
                          "<text x=\"4\" y=\"%d\" font-size=\"11\">%s</text><rect x=\"%.1f\" "
                          "y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>",
                          y + 12, p, std::min(x0, x1), y, std::abs(x1 - x0) + 0.5, bar_h,
                          Colour(p));
    auto ci = r.ci.find(metric);
    if (ci != r.ci.end() && ci->second.count(p)) {
      const Interval& iv = ci->second.at(p);
      absl::StrAppendFormat(&s,
                            "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"black\"/>",
                            x(iv.lo), x(iv.hi), y + bar_h / 2, y + bar_h / 2);
    }
    absl::StrAppendFormat(&s, "<text x=\"%.1f\" y=\"%d\" font-size=\"10\">%s</text>",
                          std::max(x0, x1) + 3, y + 12, Num(it->second));
    y += bar_h + gap;
  }
  return s + "</svg>";
}

// Predicted vs real Δ for one compound (genes), with the diagonal.
std::string Scatter(const std::vector<double>& pred, const std::vector<double>& real,
                    const std::string& title) {
  const int size = 180, pad = 22;
  double m = 1e-6;
  for (double v : pred) m = std::max(m, std::abs(v));
  for (double v : real) m = std::max(m, std::abs(v));
  auto px = [&](double v) { return pad + (v + m) / (2 * m) * (size - 2 * pad); };
  auto py = [&](double v) { return size - pad - (v + m) / (2 * m) * (size - 2 * pad); };
  std::string s = absl::StrFormat(
      "<svg class=\"scatter\" width=\"%d\" height=\"%d\" xmlns=\"http://www.w3.org/2000/svg\">"
      "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#ccc\"/>"
      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
      "<text x=\"%d\" y=\"12\" font-size=\"10\">%s</text>"
      "<text x=\"%d\" y=\"%d\" font-size=\"9\">real Δ</text>"
      "<text x=\"2\" y=\"%d\" font-size=\"9\" transform=\"rotate(-90 8 %d)\">predicted Δ</text>",
      size, size, pad, pad, size - 2 * pad, size - 2 * pad, px(-m), py(-m), px(m), py(m), pad,
      Esc(title), size / 2 - 10, size - 6, size / 2 + 20, size / 2);
  for (size_t i = 0; i < pred.size() && i < real.size(); ++i) {
    absl::StrAppendFormat(&s,
                          "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"1.3\" fill=\"#1f77b4\" "
                          "fill-opacity=\"0.5\"/>",
                          px(real[i]), py(pred[i]));
  }
  return s + "</svg>";
}

// Histogram of expected retrieval ranks (rounded) for each predictor on one modality.
std::string RankHistogram(const EvalInput& in, const EvalResult& r, const std::string& modality) {
  const std::string metric = absl::StrCat("retrieval_", modality, "_mean_rank");
  if (!r.summary.count(metric)) return "";
  const int n = static_cast<int>(in.compounds.size());
  const int w = 360, h = 150, pad = 28;
  std::string s = absl::StrFormat(
      "<svg class=\"hist\" width=\"%d\" height=\"%d\" xmlns=\"http://www.w3.org/2000/svg\">"
      "<text x=\"4\" y=\"12\" font-size=\"12\" font-weight=\"bold\">retrieval rank, %s (1 = "
      "best, of %d)</text>",
      w, h, modality, n);
  std::vector<std::string> shown;
  for (const std::string& p : r.predictors) {
    if (r.summary.at(metric).count(p)) shown.push_back(p);
  }
  const int bins = std::max(1, n);
  std::vector<std::vector<int>> counts(shown.size(), std::vector<int>(bins, 0));
  int max_count = 1;
  for (size_t k = 0; k < shown.size(); ++k) {
    for (const MetricTable& t : r.per_compound) {
      auto mit = t.find(metric);
      if (mit == t.end() || !mit->second.count(shown[k])) continue;
      const int b =
          std::clamp(static_cast<int>(std::lround(mit->second.at(shown[k]))) - 1, 0, bins - 1);
      max_count = std::max(max_count, ++counts[k][b]);
    }
  }
  const double bw = static_cast<double>(w - 2 * pad) / bins;
  const double sub = bw / std::max<size_t>(1, shown.size());
  for (size_t k = 0; k < shown.size(); ++k) {
    for (int b = 0; b < bins; ++b) {
      const double bh = static_cast<double>(counts[k][b]) / max_count * (h - 2 * pad);
      absl::StrAppendFormat(&s,
                            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                            "fill=\"%s\"/>",
                            pad + b * bw + k * sub, h - pad - bh, std::max(0.5, sub - 0.5), bh,
                            Colour(shown[k]));
    }
    absl::StrAppendFormat(&s, "<text x=\"%d\" y=\"%d\" font-size=\"10\" fill=\"%s\">%s</text>",
                          pad + 90 * static_cast<int>(k), h - 6, Colour(shown[k]), shown[k]);
  }
  absl::StrAppendFormat(&s,
                        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>"
                        "<text x=\"%d\" y=\"%d\" font-size=\"9\">1</text>"
                        "<text x=\"%d\" y=\"%d\" font-size=\"9\">%d</text>",
                        pad, h - pad, w - pad, h - pad, pad, h - pad + 10, w - pad - 10,
                        h - pad + 10, n);
  return s + "</svg>";
}

std::string Png(const std::string& bytes) {
  if (bytes.empty()) return "<td></td>";
  return absl::StrCat("<td><img width=\"96\" height=\"96\" src=\"data:image/png;base64,",
                      absl::Base64Escape(bytes), "\"></td>");
}

}  // namespace

std::string RenderEvalReport(const EvalInput& in, const EvalResult& r, const EvalReportOptions& o) {
  std::string h = absl::StrCat(
      "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>", Esc(o.title),
      "</title><style>body{font-family:sans-serif;margin:20px;max-width:1200px}"
      "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
      "td.best{font-weight:bold;background:#e8f4e8}.grid img{image-rendering:pixelated}"
      "svg{margin:4px}.small{color:#666;font-size:12px}</style></head><body><h1>",
      Esc(o.title), "</h1>");
  if (o.run_info.is_object()) {
    h += "<p class=\"small\">";
    for (const auto& [k, v] : o.run_info.items())
      absl::StrAppend(&h, "<b>", Esc(k),
                      "</b>: ", Esc(v.is_string() ? v.get<std::string>() : v.dump()), " &nbsp; ");
    h += "</p>";
  }
  absl::StrAppend(&h, "<p>", in.compounds.size(),
                  " compounds. Δ = change from matched controls. Baselines: <b>control</b> (the "
                  "control itself as the prediction), <b>train_mean</b> (mean of all perturbed "
                  "training wells), <b>nearest_seen</b> (nearest training compound, held-out "
                  "compounds only), <b>replicate</b> (another real replicate: the ceiling). "
                  "Brackets: 95% bootstrap interval over compounds; last column: model − best "
                  "baseline other than the replicate, paired.</p>");
  // Table.
  h += "<h2>Metrics</h2><table><tr><th>metric</th>";
  for (const std::string& p : r.predictors) absl::StrAppend(&h, "<th>", p, "</th>");
  h += "<th>model − best baseline</th></tr>";
  for (const std::string& m : r.metrics) {
    const auto& row = r.summary.at(m);
    const bool lower = LowerIsBetter(m);
    std::string best;
    for (const auto& [p, v] : row) {
      if (p == "replicate") continue;
      if (best.empty() || (lower ? v < row.at(best) : v > row.at(best))) best = p;
    }
    absl::StrAppend(&h, "<tr><td>", Esc(m), lower ? " ↓" : " ↑", "</td>");
    std::string worst_gap;
    for (const std::string& p : r.predictors) {
      auto it = row.find(p);
      if (it == row.end()) {
        h += "<td>–</td>";
        continue;
      }
      std::string cell = Num(it->second);
      auto ci = r.ci.find(m);
      if (ci != r.ci.end() && ci->second.count(p))
        absl::StrAppend(&cell, " <span class=\"small\">[", Num(ci->second.at(p).lo), ", ",
                        Num(ci->second.at(p).hi), "]</span>");
      absl::StrAppend(&h, p == best ? "<td class=\"best\">" : "<td>", cell, "</td>");
    }
    // The strongest non-ceiling baseline, paired with the model.
    std::string rival;
    for (const auto& [p, v] : row) {
      if (p == "model" || p == "replicate") continue;
      if (rival.empty() || (lower ? v < row.at(rival) : v > row.at(rival))) rival = p;
    }
    auto d = r.vs_model.find(m);
    if (!rival.empty() && d != r.vs_model.end() && d->second.count(rival)) {
      const Interval& iv = d->second.at(rival);
      absl::StrAppend(&h, "<td>", Num(iv.mean), " <span class=\"small\">[", Num(iv.lo), ", ",
                      Num(iv.hi), "] vs ", rival, "</span></td>");
    } else {
      h += "<td>–</td>";
    }
    h += "</tr>";
  }
  h += "</table><h2>Model vs baselines</h2><div>";
  for (const std::string& m : r.metrics) h += BarChart(r, m);
  h += "</div><h2>Retrieval</h2><div>";
  for (const char* mod : {"genes", "morph", "both"}) h += RankHistogram(in, r, mod);
  h += "</div><h2>Predicted vs real gene Δ (model)</h2><div>";
  int shown = 0;
  for (const CompoundRecord& c : in.compounds) {
    auto it = c.predictions.find("model");
    if (it == c.predictions.end() || it->second.gene.empty() || c.gene_real.empty()) continue;
    if (shown++ >= o.max_scatter) break;
    const std::vector<double> pred = Difference(it->second.gene, it->second.gene_control);
    const std::vector<double> real = Difference(c.gene_real, c.gene_real_control);
    h +=
        Scatter(pred, real,
                absl::StrFormat("%s r=%.2f", c.name.empty() ? c.key : c.name, Pearson(pred, real)));
  }
  h += "</div>";
  if (!in.profile_features.empty()) {
    h += "<h2>Morphology profile Δ (standardized), model vs real</h2><div>";
    shown = 0;
    for (const CompoundRecord& c : in.compounds) {
      auto it = c.predictions.find("model");
      if (it == c.predictions.end() || it->second.profile.empty() || c.profile_real.empty())
        continue;
      if (shown++ >= o.max_scatter) break;
      const std::vector<double> pred = Difference(it->second.profile, it->second.profile_control);
      const std::vector<double> real = Difference(c.profile_real, c.profile_real_control);
      h += Scatter(
          pred, real,
          absl::StrFormat("%s r=%.2f", c.name.empty() ? c.key : c.name, Pearson(pred, real)));
    }
    h += "</div>";
  }
  if (!o.grid.empty()) {
    h += "<h2>Images (DNA/RNA/ER as RGB)</h2><table class=\"grid\"><tr><th></th>";
    for (const ReportGridColumn& c : o.grid)
      absl::StrAppend(&h, "<th class=\"small\">", Esc(c.label), "</th>");
    h += "</tr>";
    const char* rows[] = {"control", "real", "generated"};
    for (int row = 0; row < 3; ++row) {
      absl::StrAppend(&h, "<tr><th>", rows[row], "</th>");
      for (const ReportGridColumn& c : o.grid)
        h += Png(row == 0 ? c.control_png : row == 1 ? c.real_png : c.generated_png);
      h += "</tr>";
    }
    h += "</table>";
  }
  return h + "</body></html>\n";
}

}  // namespace cellflux
