// `cellflux-train prepare`: raw BBBC047 images + plate maps + the Haghighi L1000 CSV → the
// prepared dataset directory described in manifest.h. LibTorch-free.
//
// Steps: read the plate maps; scan the images (incomplete sites dropped with reasons); group sites
// into wells and look up each well's treatment; stream the L1000 CSV once, keeping only DMSO rows
// and rows whose pert_sample_dose matches an imaged CP treatment (rows with empty/NaN cells are
// dropped with their line and genes); pair (pairing.h); split perturbations (pairing.h rule);
// gene statistics over train + DMSO rows; write everything into `<out_dir>.tmp-<pid>` and rename
// it to out_dir at the end (an existing out_dir is replaced only after the new one is complete).
//
// Memory: the site table (paths) plus the kept L1000 rows as float32 (≈ 68k × 977 × 4 B ≈ 270 MB
// at full scale); the CSV is never held whole. Deterministic: same inputs + seed ⇒ byte-identical
// files (no timestamps are written).
#ifndef CELLFLUX_COMMON_DATA_PREPARE_H_
#define CELLFLUX_COMMON_DATA_PREPARE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cellflux::data {

struct PrepareProgress {
  std::string stage;   // "platemaps", "scan", "l1000", "pairing", "write"
  int64_t done = 0;    // items done in this stage
  int64_t total = -1;  // -1 when unknown (streaming)
};

struct PrepareOptions {
  std::string images_dir;
  std::string platemaps_dir;
  std::string l1000_path;  // replicate_level_l1k.csv or .csv.gz
  std::string out_dir;
  int64_t test_perturbations = 5000;  // clamped, see ComputeSplitCounts in pairing.h
  double val_fraction = 0.05;         // of the non-test perturbations
  uint64_t seed = 0;
  // "perturbation": test/val perturbations are held out entirely (never in the training vocabulary).
  // "pair": the paper's protocol — each test (val) perturbation contributes ONE held-out pair and
  // its other pairs stay in training, so the model has an embedding for it.
  // "compound-scaffold": whole Bemis–Murcko scaffolds are held out (SplitPerturbationGroups), so
  // test compounds are not near-duplicates of training ones; needs `parse_structure`.
  std::string split_level = "perturbation";
  // Optional compound metadata CSV (the CDRP chemical annotations): an id column broad_sample or
  // pert_id and a structure column CPD_SMILES or smiles. Fills compounds whose L1000 rows carry no
  // CPD_SMILES (the L1000 value wins when both exist).
  std::string compounds_csv;
  // Parses a SMILES into its canonical form and scaffold (the trainer passes RDKit's, chem.h;
  // this library stays free of RDKit). When set, every perturbation's structure is checked and
  // those without a parsable one are counted and listed in the summary.
  struct StructureInfo {
    std::string canonical_smiles;
    std::string scaffold;  // "" for acyclic compounds
  };
  std::function<absl::StatusOr<StructureInfo>(const std::string& smiles)> parse_structure;
  // Called from the calling thread, at stage boundaries and every few thousand items.
  std::function<void(const PrepareProgress&)> progress;

  absl::Status Validate() const;
};

struct PrepareSummary {
  int64_t plates = 0;  // CP plates with at least one complete site
  int64_t wells = 0;   // CP wells with images and a plate-map entry
  int64_t sites = 0;   // complete sites kept
  int64_t cp_control_wells = 0;
  int64_t l1000_rows_read = 0;
  int64_t l1000_rows_kept = 0;
  int64_t l1000_control_rows = 0;
  int64_t l1000_plates = 0;
  int64_t matched_treatments = 0;  // keys in both modalities with usable replicates
  int64_t perturbations = 0;       // distinct broad_sample in pairs
  int64_t pairs = 0;
  int64_t train_perturbations = 0, val_perturbations = 0, test_perturbations = 0;
  int64_t train_pairs = 0, val_pairs = 0, test_pairs = 0;
  int64_t genes = 0;
  std::map<std::string, int64_t> dropped;  // kind → count
  // With PrepareOptions::parse_structure: perturbations with a parsable structure, and those
  // without one (id → "no SMILES" or the parser's message); scaffold groups of the split.
  int64_t structures_parsed = 0;
  std::map<std::string, std::string> without_structure;
  int64_t scaffold_groups = 0;
  std::string ToJson() const;  // the summary.json body (without images_dir)
  std::string ToText() const;  // a human-readable block for the console
};

absl::StatusOr<PrepareSummary> PrepareDataset(const PrepareOptions& options);

}  // namespace cellflux::data

#endif  // CELLFLUX_COMMON_DATA_PREPARE_H_
