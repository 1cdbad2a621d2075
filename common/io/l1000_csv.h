// The Haghighi et al. 2022 replicate-level L1000 table (`replicate_level_l1k.csv[.gz]`),
// LibTorch-free.
//
// Layout: one header line, then one row per replicate. Every column whose name ends in "_at"
// (e.g. "200814_at", "209380_s_at") is a probe (gene), in file order; every other column is
// metadata (at least pert_id, pert_dose, det_plate, pert_sample_dose; often CPD_NAME, CPD_SMILES,
// replicate ids). The reader streams the file one row at a time (bounded memory, gz via zlib).
//
// Cells: a probe cell that is empty or NaN is reported in L1000Row::missing (gene indices) with
// its value set to NaN: whether to skip the row or fail is the caller's decision. A probe cell that
// is not a number at all ("abc") is a format error: Next() fails naming file, line and column.
#ifndef CELLFLUX_COMMON_IO_L1000_CSV_H_
#define CELLFLUX_COMMON_IO_L1000_CSV_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/io/csv.h"

namespace cellflux::io {

// True for probe column names (ending in "_at").
bool IsProbeColumn(absl::string_view name);

struct L1000Header {
  std::vector<std::string> columns;     // all names, file order
  std::vector<std::string> gene_ids;    // probe columns, file order
  std::vector<std::string> meta_names;  // the other columns, file order
  std::vector<int> gene_columns;        // index into `columns` of each gene
  std::vector<int> meta_columns;        // index into `columns` of each meta field
  // Index into meta_names, or -1.
  int MetaIndex(absl::string_view name) const;
};

struct L1000Row {
  int64_t row_index = 0;          // 0-based data row (header excluded)
  int64_t line = 0;               // 1-based line in the file where the row starts
  std::vector<std::string> meta;  // parallel to L1000Header::meta_names
  std::vector<float> values;      // parallel to L1000Header::gene_ids
  std::vector<int> missing;       // gene indices whose cell was empty or NaN
};

class L1000CsvReader {
 public:
  // Reads the header. INVALID_ARGUMENT when it has no probe column, a duplicate column name, or
  // lacks one of `required_meta` (default: pert_id, pert_dose, det_plate, pert_sample_dose).
  static absl::StatusOr<std::unique_ptr<L1000CsvReader>> Open(
      const std::string& path, const std::vector<std::string>& required_meta = {
                                   "pert_id", "pert_dose", "det_plate", "pert_sample_dose"});

  const L1000Header& header() const { return header_; }
  // Fills `row`; false at end of file. Errors name file, line and column.
  absl::StatusOr<bool> Next(L1000Row* row);

 private:
  L1000CsvReader(std::unique_ptr<CsvReader> csv, L1000Header header)
      : csv_(std::move(csv)), header_(std::move(header)) {}
  std::unique_ptr<CsvReader> csv_;
  L1000Header header_;
  std::vector<std::string> fields_;
  int64_t next_row_ = 0;
};

// Writes the same layout: meta columns first, then the probe columns. Values with the shortest
// round-trip text, NaN as "NaN". gzip when the path ends in ".gz". Atomic (rename on Close()).
class L1000CsvWriter {
 public:
  static absl::StatusOr<std::unique_ptr<L1000CsvWriter>> Open(const std::string& path,
                                                              std::vector<std::string> meta_names,
                                                              std::vector<std::string> gene_ids);
  // INVALID_ARGUMENT when the sizes differ from the header's.
  absl::Status Write(const std::vector<std::string>& meta, const std::vector<float>& values);
  absl::Status Close();

 private:
  L1000CsvWriter(std::unique_ptr<CsvWriter> csv, size_t n_meta, size_t n_genes)
      : csv_(std::move(csv)), n_meta_(n_meta), n_genes_(n_genes) {}
  std::unique_ptr<CsvWriter> csv_;
  size_t n_meta_;
  size_t n_genes_;
};

}  // namespace cellflux::io

#endif  // CELLFLUX_COMMON_IO_L1000_CSV_H_
