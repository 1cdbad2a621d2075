// The two vocabulary files of a checkpoint (DESIGN.md §3), tab-separated with a header row:
//
//   perturbations.tsv   row_index  broad_id  dose  smiles  name     (row i = embedding row i)
//   genes.tsv           order      probe_id  symbol                 (order i = gene vector index i)
//
// `dose` is in µM, written in the shortest form that reads back bit-exactly; an unknown dose is
// an empty field (NaN in memory). Fields may not contain tabs or line breaks. LibTorch-free.
#ifndef CELLFLUX_COMMON_CHECKPOINT_VOCAB_TSV_H_
#define CELLFLUX_COMMON_CHECKPOINT_VOCAB_TSV_H_

#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cellflux {

struct PerturbationEntry {
  std::string id;  // Broad ID (or any perturbation key); unique in a vocabulary
  double dose = std::numeric_limits<double>::quiet_NaN();  // µM; NaN = unknown
  std::string smiles;                                      // may be empty
  std::string name;                                        // may be empty
};

struct GeneEntry {
  std::string probe_id;  // e.g. "200814_at"; unique
  std::string symbol;    // e.g. "PSME1"; may be empty
};

// Serialization. INVALID_ARGUMENT (naming the row and field) for an empty or duplicate id, or a
// field holding a tab or line break; `label` (the file name) starts every message.
absl::StatusOr<std::string> PerturbationsToTsv(const std::vector<PerturbationEntry>& rows,
                                               const std::string& label);
absl::StatusOr<std::string> GenesToTsv(const std::vector<GeneEntry>& rows,
                                       const std::string& label);

// Parsing: the header must match exactly, the index column must count 0, 1, 2, ..., ids must be
// non-empty and unique. Errors name `label`, the line number and the field.
absl::StatusOr<std::vector<PerturbationEntry>> ParsePerturbationsTsv(absl::string_view text,
                                                                     const std::string& label);
absl::StatusOr<std::vector<GeneEntry>> ParseGenesTsv(absl::string_view text,
                                                     const std::string& label);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_CHECKPOINT_VOCAB_TSV_H_
