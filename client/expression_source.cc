#include "client/expression_source.h"

#include <cmath>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/io/csv.h"
#include "common/io/gct.h"
#include "common/io/gctx.h"
#include "common/util/status_macros.h"

namespace cellflux::client {
namespace {

std::string FirstFew(const std::vector<std::string>& ids, size_t n = 5) {
  std::vector<std::string> head(ids.begin(), ids.begin() + std::min(n, ids.size()));
  std::string text = absl::StrJoin(head, ", ");
  if (ids.size() > n) absl::StrAppend(&text, ", … (", ids.size(), " in all)");
  return text;
}

absl::StatusOr<ControlExpression> FromGct(const ExpressionSpec& spec) {
  CF_ASSIGN_OR_RETURN(io::GctMatrix matrix, io::ReadExpressionMatrix(spec.path));
  int64_t col = -1;
  if (spec.column.empty()) {
    if (matrix.cols() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(spec.path, " has ", matrix.cols(), " columns; pick one as ", spec.path,
                       ":COLUMN_ID (columns: ", FirstFew(matrix.col_ids), ")"));
    }
    col = 0;
  } else {
    for (int64_t c = 0; c < matrix.cols(); ++c) {
      if (matrix.col_ids[c] == spec.column) col = c;
    }
    if (col < 0) {
      return absl::InvalidArgumentError(absl::StrCat(spec.path, " has no column '", spec.column,
                                                     "' (columns: ", FirstFew(matrix.col_ids),
                                                     ")"));
    }
  }
  ControlExpression expression;
  expression.gene_ids = matrix.row_ids;
  expression.values.reserve(matrix.rows());
  for (int64_t r = 0; r < matrix.rows(); ++r) {
    const float v = matrix.at(r, col);
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat(spec.path, " column ", matrix.col_ids[col],
                                                     " gene ", matrix.row_ids[r],
                                                     ": value is not finite"));
    }
    expression.values.push_back(v);
  }
  return expression;
}

absl::StatusOr<ControlExpression> FromCsv(const ExpressionSpec& spec) {
  const char delimiter = absl::EndsWith(absl::AsciiStrToLower(spec.path), ".tsv") ? '\t' : ',';
  CF_ASSIGN_OR_RETURN(io::CsvTable table, io::ReadCsvTable(spec.path, delimiter));
  const size_t width = table.header.size();
  if (width != 1 && width != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        spec.path, ": expected a header and 1 column (values) or 2 columns (gene id, value); got ",
        width, " columns (", absl::StrJoin(table.header, ", "), ")"));
  }
  if (table.rows.empty()) return absl::InvalidArgumentError(absl::StrCat(spec.path, ": no rows"));
  ControlExpression expression;
  const size_t value_col = width - 1;
  for (size_t i = 0; i < table.rows.size(); ++i) {
    const auto& row = table.rows[i];
    float v = 0;
    if (!io::ParseFloatCell(row[value_col], &v) || !std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat(spec.path, " line ", table.lines[i],
                                                     " column ", table.header[value_col], ": '",
                                                     row[value_col], "' is not a finite number"));
    }
    if (width == 2) expression.gene_ids.push_back(row[0]);
    expression.values.push_back(v);
  }
  return expression;
}

absl::StatusOr<ControlExpression> ToModelOrder(ControlExpression expression,
                                               const std::vector<std::string>& model_gene_ids,
                                               const std::string& path) {
  if (model_gene_ids.empty()) return expression;
  if (expression.gene_ids.empty()) {
    if (expression.values.size() != model_gene_ids.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " has ", expression.values.size(), " values without gene ids; the model expects ",
          model_gene_ids.size(), " in its gene order (or give gene ids)"));
    }
    return expression;
  }
  absl::flat_hash_map<std::string, size_t> index;
  for (size_t i = 0; i < expression.gene_ids.size(); ++i) {
    if (!index.emplace(expression.gene_ids[i], i).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": gene id ", expression.gene_ids[i], " appears twice"));
    }
  }
  ControlExpression ordered;
  std::vector<std::string> missing;
  for (const std::string& gene : model_gene_ids) {
    auto it = index.find(gene);
    if (it == index.end()) {
      missing.push_back(gene);
      continue;
    }
    ordered.gene_ids.push_back(gene);
    ordered.values.push_back(expression.values[it->second]);
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " lacks ", missing.size(), " of the ",
                                                   model_gene_ids.size(),
                                                   " model genes: ", FirstFew(missing)));
  }
  return ordered;
}

}  // namespace

ExpressionSpec ParseExpressionSpec(const std::string& spec) {
  ExpressionSpec parsed;
  const std::string lower = absl::AsciiStrToLower(spec);
  for (const char* ext : {".gctx:", ".gct:"}) {
    const size_t at = lower.find(ext);
    if (at != std::string::npos) {
      const size_t end = at + std::string(ext).size() - 1;  // index of ':'
      parsed.path = spec.substr(0, end);
      parsed.column = spec.substr(end + 1);
      return parsed;
    }
  }
  parsed.path = spec;
  parsed.csv = absl::EndsWith(lower, ".csv") || absl::EndsWith(lower, ".tsv") ||
               absl::EndsWith(lower, ".csv.gz") || absl::EndsWith(lower, ".tsv.gz");
  return parsed;
}

absl::StatusOr<ControlExpression> LoadExpression(const std::string& spec,
                                                 const std::vector<std::string>& model_gene_ids) {
  const ExpressionSpec parsed = ParseExpressionSpec(spec);
  if (parsed.path.empty()) return absl::InvalidArgumentError("empty control expression path");
  ControlExpression expression;
  if (parsed.csv) {
    CF_ASSIGN_OR_RETURN(expression, FromCsv(parsed));
  } else {
    CF_ASSIGN_OR_RETURN(expression, FromGct(parsed));
  }
  return ToModelOrder(std::move(expression), model_gene_ids, parsed.path);
}

}  // namespace cellflux::client
