// CMap GCTX expression matrices (HDF5), LibTorch-free. Same in-memory GctMatrix as gct.h.
//
// Layout (as written by cmapPy's write_gctx):
//   /                      attribute "version" = "GCTX1.0"
//   /0/DATA/0/matrix       float32, HDF5 dims [cols, rows] (samples × genes), i.e. the
//                          transpose of GctMatrix::data
//   /0/META/ROW/id         row ids (genes);   /0/META/ROW/<field>: one value per row
//   /0/META/COL/id         column ids;        /0/META/COL/<field>: one value per column
// Reading accepts fixed-length and variable-length strings, and integer or float metadata
// datasets (converted to text: integers in decimal, floats with the shortest round-trip text).
// The matrix may be any float or integer type (converted to float32). Metadata fields come back
// in creation order when the file tracks it (ours does) and in name order otherwise.
// Writing stores strings as fixed-length, NUL-padded ASCII (numpy "S" dtype, as cmapPy does) and
// the matrix as gzip-compressed float32 chunks; the file is written to a temp name and renamed.
// Errors name the file and the dataset; a text GCT file given to ReadGctx gets a message that
// says so (INVALID_ARGUMENT).
#ifndef CELLFLUX_COMMON_IO_GCTX_H_
#define CELLFLUX_COMMON_IO_GCTX_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/io/gct.h"

namespace cellflux::io {

absl::StatusOr<GctMatrix> ReadGctx(const std::string& path);
absl::Status WriteGctx(const std::string& path, const GctMatrix& matrix);

// Reads either format, chosen by content (HDF5 signature → GCTX, "#1." → GCT), not by file name.
absl::StatusOr<GctMatrix> ReadExpressionMatrix(const std::string& path);

}  // namespace cellflux::io

#endif  // CELLFLUX_COMMON_IO_GCTX_H_
