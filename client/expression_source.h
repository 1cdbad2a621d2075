// A control's L1000 expression given on the command line or in a plan (`--control-expression`,
// plan column control_expression).
//
// Spec forms:
//   FILE.gct[:COLUMN_ID] / FILE.gctx[:COLUMN_ID]  one column of a GCT 1.2/1.3 or GCTX matrix
//   (format
//       detected by content). The column may be omitted when the matrix has exactly one column.
//       Column ids may themselves contain ':' (CMap ids do); everything after the first ".gct:"
//       or ".gctx:" is the id.
//   FILE.csv / FILE.tsv  either two columns with a header (gene id, value; e.g. "pr_gene_id,value")
//       or one column of values with a header (values must then be in the model's gene order).
//
// When `model_gene_ids` is non-empty (GetModelInfo.gene_ids) and the file names its genes, the
// values are reordered into the model's order, genes the model does not use are dropped, and a
// model gene missing from the file is INVALID_ARGUMENT (listing the first missing ids). Values
// must be finite. Every message names the file, and for CSV the line and column.
#ifndef CELLFLUX_CLIENT_EXPRESSION_SOURCE_H_
#define CELLFLUX_CLIENT_EXPRESSION_SOURCE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cellflux::client {

struct ControlExpression {
  std::vector<std::string> gene_ids;  // empty when the file had none; else parallel to values
  std::vector<float> values;
};

struct ExpressionSpec {
  std::string path;
  std::string column;  // GCT column id; empty = the only column
  bool csv = false;
};
ExpressionSpec ParseExpressionSpec(const std::string& spec);

absl::StatusOr<ControlExpression> LoadExpression(const std::string& spec,
                                                 const std::vector<std::string>& model_gene_ids);

}  // namespace cellflux::client

#endif  // CELLFLUX_CLIENT_EXPRESSION_SOURCE_H_
