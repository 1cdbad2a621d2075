#include "common/io/gct.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"

namespace cellflux::io {
namespace {

const std::vector<std::string>* FindMeta(const GctMeta& meta, absl::string_view name) {
  for (const auto& [field, values] : meta) {
    if (field == name) return &values;
  }
  return nullptr;
}

// Splits text into lines (LF or CRLF), dropping a final empty line.
std::vector<absl::string_view> Lines(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  for (auto& l : lines) {
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

std::vector<std::string> ToStrings(const std::vector<absl::string_view>& fields, size_t from) {
  std::vector<std::string> out;
  out.reserve(fields.size() - from);
  for (size_t i = from; i < fields.size(); ++i) out.emplace_back(fields[i]);
  return out;
}

absl::Status LineError(absl::string_view label, size_t index, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(label, ":", index + 1, ": ", what));
}

absl::StatusOr<int64_t> ParseCount(absl::string_view label, size_t line, absl::string_view field,
                                   absl::string_view what) {
  int64_t n = 0;
  if (!absl::SimpleAtoi(field, &n) || n < 0) {
    return LineError(label, line,
                     absl::StrCat(what, ": expected a non-negative integer, found '", field, "'"));
  }
  return n;
}

}  // namespace

const std::vector<std::string>* GctMatrix::RowMeta(absl::string_view name) const {
  return FindMeta(row_meta, name);
}
const std::vector<std::string>* GctMatrix::ColMeta(absl::string_view name) const {
  return FindMeta(col_meta, name);
}

absl::Status GctMatrix::Validate() const {
  if (static_cast<int64_t>(data.size()) != rows() * cols()) {
    return absl::InvalidArgumentError(absl::StrCat("GCT matrix: data has ", data.size(),
                                                   " values, expected rows ", rows(), " x cols ",
                                                   cols()));
  }
  auto check_meta = [](const GctMeta& meta, size_t n, const char* what) -> absl::Status {
    std::set<std::string> seen;
    for (const auto& [name, values] : meta) {
      if (!seen.insert(name).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("GCT matrix: duplicate ", what, " meta field '", name, "'"));
      }
      if (values.size() != n) {
        return absl::InvalidArgumentError(absl::StrCat("GCT matrix: ", what, " meta field '", name,
                                                       "' has ", values.size(),
                                                       " values, expected ", n));
      }
    }
    return absl::OkStatus();
  };
  CF_RETURN_IF_ERROR(check_meta(row_meta, row_ids.size(), "row"));
  return check_meta(col_meta, col_ids.size(), "column");
}

std::string FormatFloat(float value) {
  if (std::isnan(value)) return "NaN";
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, res.ptr);
}

bool ParseFloatCell(absl::string_view text, float* value) {
  text = absl::StripAsciiWhitespace(text);
  if (text.empty() || absl::EqualsIgnoreCase(text, "nan") || text == "NA") {
    *value = std::numeric_limits<float>::quiet_NaN();
    return true;
  }
  if (text.front() == '+') text.remove_prefix(1);
  auto res = std::from_chars(text.data(), text.data() + text.size(), *value);
  if (res.ec == std::errc::result_out_of_range) return false;
  if (res.ec == std::errc() && res.ptr == text.data() + text.size()) return true;
  // from_chars rejects "inf"/"Infinity" spellings some writers use; accept them explicitly.
  absl::string_view t = text.front() == '-' ? text.substr(1) : text;
  if (absl::EqualsIgnoreCase(t, "inf") || absl::EqualsIgnoreCase(t, "infinity")) {
    *value = (text.front() == '-' ? -1.0f : 1.0f) * std::numeric_limits<float>::infinity();
    return true;
  }
  return false;
}

absl::StatusOr<GctMatrix> ParseGct(absl::string_view text, absl::string_view label) {
  std::vector<absl::string_view> lines = Lines(text);
  if (lines.empty()) return absl::InvalidArgumentError(absl::StrCat(label, ": empty file"));
  absl::string_view version = absl::StripAsciiWhitespace(lines[0]);
  bool v13 = version == "#1.3";
  if (!v13 && version != "#1.2") {
    return LineError(
        label, 0, absl::StrCat("expected '#1.3' or '#1.2', found '", version.substr(0, 40), "'"));
  }
  if (lines.size() < 2) return LineError(label, 0, "file ends before the dimensions line");
  std::vector<absl::string_view> dims = absl::StrSplit(lines[1], '\t');
  if (dims.size() != (v13 ? 4u : 2u)) {
    return LineError(label, 1,
                     absl::StrCat("dimensions line: expected ", v13 ? 4 : 2,
                                  " tab-separated counts, found ", dims.size()));
  }
  CF_ASSIGN_OR_RETURN(int64_t n_rows, ParseCount(label, 1, dims[0], "dimensions line, rows"));
  CF_ASSIGN_OR_RETURN(int64_t n_cols, ParseCount(label, 1, dims[1], "dimensions line, columns"));
  int64_t n_rmeta = 1, n_cmeta = 0;
  if (v13) {
    CF_ASSIGN_OR_RETURN(n_rmeta,
                        ParseCount(label, 1, dims[2], "dimensions line, row metadata fields"));
    CF_ASSIGN_OR_RETURN(n_cmeta,
                        ParseCount(label, 1, dims[3], "dimensions line, column metadata fields"));
  }
  if (lines.size() < 3) return LineError(label, 1, "file ends before the header line");
  const size_t width = 1 + n_rmeta + n_cols;
  std::vector<absl::string_view> fields = absl::StrSplit(lines[2], '\t');
  if (fields.size() != width) {
    return LineError(
        label, 2,
        absl::StrCat("header: expected ", width, " fields (1 id + ", n_rmeta, " row-meta names + ",
                     n_cols, " column ids), found ", fields.size()));
  }
  const size_t expected_lines = 3 + n_cmeta + n_rows;
  if (lines.size() != expected_lines) {
    return LineError(label, std::min(lines.size(), expected_lines) - 1,
                     absl::StrCat("dimensions line promises ", n_cmeta, " column-meta lines and ",
                                  n_rows, " data rows (", expected_lines,
                                  " lines in all), the file has ", lines.size(), " lines"));
  }
  GctMatrix m;
  m.row_ids.reserve(n_rows);
  m.col_ids = ToStrings(fields, 1 + n_rmeta);
  for (int64_t k = 0; k < n_rmeta; ++k) {
    std::string name(fields[1 + k]);
    if (!v13 && name.empty()) name = "Description";
    m.row_meta.emplace_back(name, std::vector<std::string>());
    m.row_meta.back().second.reserve(n_rows);
  }
  for (int64_t k = 0; k < n_cmeta; ++k) {
    const size_t li = 3 + k;
    fields = absl::StrSplit(lines[li], '\t');
    if (fields.size() != width) {
      return LineError(
          label, li,
          absl::StrCat("column-meta line: expected ", width, " fields, found ", fields.size()));
    }
    m.col_meta.emplace_back(std::string(fields[0]), ToStrings(fields, 1 + n_rmeta));
  }
  m.data.resize(n_rows * n_cols);
  for (int64_t r = 0; r < n_rows; ++r) {
    const size_t li = 3 + n_cmeta + r;
    fields = absl::StrSplit(lines[li], '\t');
    if (fields.size() != width) {
      return LineError(label, li,
                       absl::StrCat("data row '", fields[0], "': expected ", width,
                                    " fields, found ", fields.size()));
    }
    m.row_ids.emplace_back(fields[0]);
    for (int64_t k = 0; k < n_rmeta; ++k) m.row_meta[k].second.emplace_back(fields[1 + k]);
    for (int64_t c = 0; c < n_cols; ++c) {
      absl::string_view cell = fields[1 + n_rmeta + c];
      if (!ParseFloatCell(cell, &m.data[r * n_cols + c])) {
        return LineError(label, li,
                         absl::StrCat("row '", fields[0], "', column ", c + 1, " ('", m.col_ids[c],
                                      "'): expected a number, found '", cell.substr(0, 40), "'"));
      }
    }
  }
  CF_RETURN_IF_ERROR(m.Validate());
  return m;
}

absl::StatusOr<GctMatrix> ReadGct(const std::string& path) {
  CF_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseGct(text, path);
}

std::string FormatGct(const GctMatrix& m) {
  const size_t n_rmeta = m.row_meta.size();
  std::string out = absl::StrCat("#1.3\n", m.rows(), "\t", m.cols(), "\t", n_rmeta, "\t",
                                 m.col_meta.size(), "\nid");
  for (const auto& [name, values] : m.row_meta) absl::StrAppend(&out, "\t", name);
  for (const auto& id : m.col_ids) absl::StrAppend(&out, "\t", id);
  out.push_back('\n');
  for (const auto& [name, values] : m.col_meta) {
    out += name;
    for (size_t k = 0; k < n_rmeta; ++k) out += "\t-666";  // cmapPy's filler
    for (const auto& v : values) absl::StrAppend(&out, "\t", v);
    out.push_back('\n');
  }
  for (int64_t r = 0; r < m.rows(); ++r) {
    out += m.row_ids[r];
    for (const auto& [name, values] : m.row_meta) absl::StrAppend(&out, "\t", values[r]);
    for (int64_t c = 0; c < m.cols(); ++c) absl::StrAppend(&out, "\t", FormatFloat(m.at(r, c)));
    out.push_back('\n');
  }
  return out;
}

absl::Status WriteGct(const std::string& path, const GctMatrix& matrix) {
  absl::Status valid = matrix.Validate();
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", valid.message()));
  return WriteFileAtomic(path, FormatGct(matrix));
}

}  // namespace cellflux::io
