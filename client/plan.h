// A screen plan: a CSV with one row per prediction.
//
// The compound: a perturbation_id column (a Broad ID from the model's vocabulary) and/or a smiles
// column (a compound by structure, for models with a structure encoder: GetModelInfo.condition
// "structure" or "id+structure"); each row sets exactly one of the two. An optional dose_um column
// gives a smiles row's dose in µM (empty or 0 = unknown; a finite number ≥ 0; only on smiles
// rows). Each row names its control by exactly one of
//   control_ref           "PLATE:WELL[:SITE]" into the server's control bank (e.g. "24277:a01:1"),
//   control_dir (+ control_expression)  a folder of five channel images (control_dir.h) and an
//                         expression spec (expression_source.h); control_expression is required
//                         for models with a gene branch (checked when the row is sent).
// Optional columns: seed (an unsigned integer overriding the screen's seed for this row);
// control_bit_depth (12 or 16; empty = from the files, see control_dir.h) for control_dir rows.
// Every column, including unknown ones, is carried into results.csv and the GCT column metadata.
// Relative control_dir / control_expression paths are resolved against the plan's folder.
// Errors are INVALID_ARGUMENT naming the file, line and column.
#ifndef CELLFLUX_CLIENT_PLAN_H_
#define CELLFLUX_CLIENT_PLAN_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cellflux::client {

struct ControlRefSpec {
  std::string plate;
  std::string well;
  int site = 0;  // 0 = lowest site in the bank
};
// Parses "PLATE:WELL[:SITE]"; INVALID_ARGUMENT with the expected form.
absl::StatusOr<ControlRefSpec> ParseControlRef(const std::string& text);

struct PlanRow;
// "plan line N" for rows of a plan file, "command line" for `predict` (line 0).
std::string RowOrigin(const PlanRow& row);

struct PlanRow {
  int index = 0;                // 0-based data row (the prediction's stable id: "r000012")
  int64_t line = 0;             // 1-based line in the plan file; 0 = built from `predict` flags
  std::string perturbation_id;  // empty for a smiles row
  std::string smiles;           // from a "smiles" column; empty for a perturbation_id row
  double dose_um = 0;           // from a "dose_um" column; 0 = unknown
  std::optional<ControlRefSpec> control_ref;
  std::string control_dir;          // resolved path; empty when control_ref is used
  std::string control_expression;   // resolved spec; may be empty
  std::optional<uint64_t> seed;     // from a "seed" column
  int control_bit_depth = 0;        // from a "control_bit_depth" column; 0 = from the files
  std::vector<std::string> fields;  // all fields as written, parallel to Plan::header
};

// What a row asks about, for messages and report headings: its perturbation_id, or
// "smiles <SMILES>" (+ " at <dose> µM" when given).
std::string RowSubject(const PlanRow& row);

struct Plan {
  std::string path;
  std::vector<std::string> header;
  std::vector<PlanRow> rows;
  bool has_smiles = false;  // the header has a smiles column: outputs carry the structure fields
};

absl::StatusOr<Plan> ReadPlan(const std::string& path);

// "r000012": the id of a row in file names, the journal and the GCT.
std::string RowName(int index);

// Stable 64-bit FNV-1a hash (hex) of `parts`, the same in every run (absl::Hash is not).
std::string Fingerprint(const std::vector<std::string>& parts);

}  // namespace cellflux::client

#endif  // CELLFLUX_CLIENT_PLAN_H_
