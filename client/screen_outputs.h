// The screen's summary files, rewritten atomically at the end of every run from all done rows
// (this run's and earlier runs'):
//   results.csv      one line per prediction: row, the plan's columns, sample, seed, model_id,
//                    composite, image_dir, attempts, queue/compute/total seconds (server timing)
//   failures.csv     one line per failed row: row, line, the plan's columns, code, message,
//                    attempts (header only when nothing failed)
//   predictions.gct  GCT 1.3, genes × predictions: row ids = the model's gene ids, row meta
//                    pr_gene_symbol (L1000 landmark table; "-666" when unknown); column ids
//                    "r000012_s0"; column meta = the plan's columns, then row, sample, seed,
//                    model_id, control (a plan column with one of those names keeps it and ours
//                    gets a "cf_" prefix). Not written when no row is done or the
//                    model has no gene branch.
//   report.html      see report.h
#ifndef CELLFLUX_CLIENT_SCREEN_OUTPUTS_H_
#define CELLFLUX_CLIENT_SCREEN_OUTPUTS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/plan.h"
#include "client/row_record.h"
#include "common/io/gct.h"

namespace cellflux::client {

struct RowFailure {
  int row = 0;
  absl::Status status;
  int attempts = 0;
};

// HGNC symbol of an L1000 landmark probe id ("200814_at" → "PSME1"), "-666" when unknown.
std::string GeneSymbol(const std::string& probe_id);

// `records` sorted by row. INTERNAL when records disagree on the model's genes (a resumed screen
// against a different model: use a new --out).
absl::StatusOr<io::GctMatrix> BuildPredictionsGct(const Plan& plan,
                                                  const std::vector<RowRecord>& records);

absl::Status WriteScreenOutputs(const std::string& out_dir, const Plan& plan,
                                const std::vector<RowRecord>& records,
                                const std::vector<RowFailure>& failures, int report_max_rows);

}  // namespace cellflux::client

#endif  // CELLFLUX_CLIENT_SCREEN_OUTPUTS_H_
