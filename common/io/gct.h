// CMap GCT expression matrices (text GCT 1.2 / 1.3), LibTorch-free. GCTX (HDF5) is in gctx.h.
//
// GCT 1.3 layout (https://clue.io/connectopedia/gct_format):
//   #1.3
//   <rows> \t <cols> \t <n_row_meta> \t <n_col_meta>
//   id \t <row meta names...> \t <col ids...>
//   <col meta name> \t <n_row_meta × filler> \t <value per column>     (n_col_meta lines)
//   <row id> \t <row meta values...> \t <data values...>              (rows lines)
// GCT 1.2: "#1.2", "<rows> \t <cols>", header "Name \t Description \t <col ids>", data rows
// "<id> \t <description> \t <values>"; the description becomes the row meta field "Description".
//
// Data values: decimal floats; "NaN"/"nan"/"NA"/"" read as NaN. Metadata stays text (numbers
// included) so that a read → write round trip is exact. WriteGct prints every value with the
// shortest text that reads back to the same float, so ReadGct(WriteGct(m)) == m bit for bit.
// Errors are INVALID_ARGUMENT naming the file, the line and the column.
#ifndef CELLFLUX_COMMON_IO_GCT_H_
#define CELLFLUX_COMMON_IO_GCT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cellflux::io {

// Ordered metadata fields: (field name, one value per row or per column).
using GctMeta = std::vector<std::pair<std::string, std::vector<std::string>>>;

struct GctMatrix {
  std::vector<std::string> row_ids;  // genes (probe ids)
  std::vector<std::string> col_ids;  // samples
  GctMeta row_meta;                  // each value vector has row_ids.size() entries
  GctMeta col_meta;                  // each value vector has col_ids.size() entries
  std::vector<float> data;           // [rows, cols] row-major

  int64_t rows() const { return static_cast<int64_t>(row_ids.size()); }
  int64_t cols() const { return static_cast<int64_t>(col_ids.size()); }
  float at(int64_t r, int64_t c) const { return data[r * cols() + c]; }
  // Values of a metadata field, or nullptr when absent.
  const std::vector<std::string>* RowMeta(absl::string_view name) const;
  const std::vector<std::string>* ColMeta(absl::string_view name) const;
  // INVALID_ARGUMENT when sizes disagree (data size, meta lengths, duplicate field names).
  absl::Status Validate() const;
};

absl::StatusOr<GctMatrix> ReadGct(const std::string& path);
// Parses GCT text held in memory; `label` names it in messages.
absl::StatusOr<GctMatrix> ParseGct(absl::string_view text, absl::string_view label);
// Writes GCT 1.3 atomically. Missing metadata values are written as given (use "-666" for nulls,
// the CMap convention).
absl::Status WriteGct(const std::string& path, const GctMatrix& matrix);
std::string FormatGct(const GctMatrix& matrix);

// Shortest decimal text that reads back to exactly `value` ("NaN" for NaN).
std::string FormatFloat(float value);
// Parses a data cell: NaN for "", "NaN", "nan", "NA"; false for anything that is not a number.
bool ParseFloatCell(absl::string_view text, float* value);

}  // namespace cellflux::io

#endif  // CELLFLUX_COMMON_IO_GCT_H_
