// The prepared-dataset directory written by PrepareDataset (prepare.h) and read by the trainer's
// loader and the server's control bank. LibTorch-free.
//
// Files (all UTF-8, CSV unless .tsv, one header line):
//   summary.json         counts, options, images_dir (absolute), genes, dropped counts by kind
//   sites.csv            site_id,plate,well,site,DNA,RNA,ER,AGP,Mito   (paths relative to images_dir)
//   manifest.csv         one row per perturbed pair: pair_id,perturbation,dose,key,split,cp_plate,
//                        well,site_ids,l1000_plate,l1000_row,control_well,control_site_ids,
//                        control_l1000_row   (site_ids ';'-separated; *_l1000_row index
//                        expression.f32; control_well is on cp_plate, control_l1000_row on l1000_plate)
//   controls_cp.csv      plate,well,site_ids           every DMSO well with images
//   controls_l1000.csv   l1000_plate,l1000_row         every DMSO L1000 row kept
//   expression.f32       float32 little-endian, [rows, genes] row-major, no header
//   expression_rows.csv  l1000_row,source_row,det_plate,pert_id,key,is_control
//                        (source_row: 0-based data row of the input L1000 CSV)
//   genes.tsv            index,probe_id,symbol         (symbol empty when unknown)
//   gene_stats.csv       probe_id,mean,std   over the unique L1000 rows of TRAIN pairs + all DMSO
//                        rows (population std; consumers clamp tiny values)
//   perturbations.tsv    row,perturbation_id,dose,smiles,name   the training vocabulary, sorted by id
//   split.csv            perturbation_id,split         train / val / test for every paired perturbation
//   structures.tsv       perturbation_id,smiles        the SMILES of every paired perturbation that
//                        has one (held-out compounds too: structure models are evaluated on them);
//                        optional when reading (prepared before issue 18: no structures)
//   dropped.csv          kind,item,reason              everything left out, and why
#ifndef CELLFLUX_COMMON_DATA_MANIFEST_H_
#define CELLFLUX_COMMON_DATA_MANIFEST_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/data/bbbc047.h"
#include "common/data/pairing.h"

namespace cellflux::data {

struct ManifestPair {
  int64_t pair_id = 0;
  std::string perturbation;  // broad_sample
  std::string dose;          // µM as in the key, e.g. "10.0"
  std::string key;           // pert_sample_dose
  Split split = Split::kTrain;
  std::string cp_plate;
  std::string well;
  std::vector<int> site_ids;
  std::string l1000_plate;
  int64_t l1000_row = -1;
  std::string control_well;  // on cp_plate
  std::vector<int> control_site_ids;
  int64_t control_l1000_row = -1;  // on l1000_plate
};

struct ControlWell {
  std::string plate;
  std::string well;
  std::vector<int> site_ids;
};

struct ExpressionRow {
  int64_t source_row = -1;
  std::string plate;
  std::string pert_id;
  std::string key;
  bool is_control = false;
};

struct VocabEntry {
  std::string perturbation_id;
  std::string dose;
  std::string smiles;
  std::string name;
};

struct Manifest {
  std::string images_dir;        // absolute; sites' paths are full paths in memory
  std::vector<SiteFiles> sites;  // index = site_id
  std::vector<ManifestPair> pairs;
  std::vector<ControlWell> cp_controls;
  std::map<std::string, std::vector<int64_t>> l1000_controls;  // plate → rows
  std::vector<ExpressionRow> expression_rows;
  std::vector<float> expression;  // [expression_rows, genes]; empty when not loaded
  std::vector<std::string> gene_ids;
  std::vector<std::string> gene_symbols;
  std::vector<double> gene_mean;
  std::vector<double> gene_std;
  std::vector<VocabEntry> vocabulary;  // row = index
  std::map<std::string, Split> split;
  std::map<std::string, std::string> structures;  // perturbation → SMILES as given
  std::vector<DroppedItem> dropped;
  std::string summary_json;  // summary.json text

  // Vocabulary row of a perturbation id, or -1.
  int VocabRow(const std::string& perturbation_id) const;
};

// Writes every file listed above except summary.json into `dir` (which must exist). Relative site
// paths are computed against m.images_dir; a site outside it is INVALID_ARGUMENT.
absl::Status WriteManifestFiles(const std::string& dir, const Manifest& m);

// Reads a prepared directory and cross-checks it (indices in range, sizes agree, expression.f32
// size = rows × genes × 4). Errors name the file and the line. `load_expression` = false skips
// the (large) expression matrix.
absl::StatusOr<Manifest> LoadManifest(const std::string& dir, bool load_expression = true);

}  // namespace cellflux::data

#endif  // CELLFLUX_COMMON_DATA_MANIFEST_H_
