// What a screen keeps about one completed plan row, and the journal that makes screens resumable.
//
// Layout under the screen's --out folder:
//   rows/r000012.json        RowRecord of row 12 (written atomically once the row's images are
//                            on disk)
//   predictions/r000012/     s0_DNA.tif … s0_Mito.tif, s0_composite.png per sample, and
//                            control_composite.png for controls sent from disk
//   journal.jsonl            one line {"row":12,"fingerprint":"…"} per completed row, appended
//                            and fsync()ed after the record is in place
// A row counts as done only once its journal line is durable, so a crash or Ctrl-C at any point
// leaves either a done row or a row that the next run redoes (overwriting its partial files). A
// torn last journal line (crash mid-append) is ignored. A row whose plan fields or options
// changed since it was journaled has a different fingerprint and is redone.
#ifndef CELLFLUX_CLIENT_ROW_RECORD_H_
#define CELLFLUX_CLIENT_ROW_RECORD_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace cellflux::client {

struct SampleRecord {
  int sample = 0;
  uint64_t seed = 0;
  std::string composite;          // path relative to the out folder
  std::vector<float> expression;  // model gene order; empty for image-only models
  // CellProfiler-like morphology profile of the generated image (common/metrics/cell_profile.h,
  // raw feature values); empty in records written before profiles existed.
  std::vector<double> profile;
};

struct RowRecord {
  int row = 0;
  std::string fingerprint;
  std::string perturbation_id;  // empty for a smiles row
  // smiles rows: the server's PredictResponse.structure (how far the compound extrapolates).
  std::string smiles;
  double dose_um = 0;  // the dose the model was conditioned on (µM, 0 = unknown)
  std::string canonical_smiles;
  bool in_vocabulary = false;
  std::string nearest_perturbation_id;
  double nearest_similarity = 0;
  std::string control;                    // "ref 24277:a01:1" or the control folder
  std::string control_composite;          // relative path; empty for bank controls
  std::vector<float> control_expression;  // model gene order; empty when not sent
  std::vector<double> control_profile;    // the control image's profile; empty when unknown
  std::vector<std::string> gene_ids;      // the model's gene order
  std::string model_id;
  int attempts = 1;
  double queue_seconds = 0, compute_seconds = 0, total_seconds = 0;
  std::vector<SampleRecord> samples;
};

std::string RowRecordPath(const std::string& out_dir, int row);
absl::Status WriteRowRecord(const std::string& out_dir, const RowRecord& record);
absl::StatusOr<RowRecord> ReadRowRecord(const std::string& out_dir, int row);

// Append-only log of completed rows. Thread-safe.
class Journal {
 public:
  // Reads `<out_dir>/journal.jsonl` if present and opens it for appending.
  static absl::StatusOr<std::unique_ptr<Journal>> Open(const std::string& out_dir);
  ~Journal();

  // True when `row` was journaled with this fingerprint.
  bool IsDone(int row, const std::string& fingerprint) const ABSL_LOCKS_EXCLUDED(mu_);
  // Appends and fsync()s one line; the row is done once this returns OK.
  absl::Status Append(int row, const std::string& fingerprint) ABSL_LOCKS_EXCLUDED(mu_);
  // Forgets every row (predict without resume): truncates the file.
  absl::Status Clear() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Journal(std::string path, FILE* file, absl::flat_hash_map<int, std::string> done);

  const std::string path_;
  mutable absl::Mutex mu_;
  FILE* file_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int, std::string> done_ ABSL_GUARDED_BY(mu_);  // row → fingerprint
};

}  // namespace cellflux::client

#endif  // CELLFLUX_CLIENT_ROW_RECORD_H_
