// The embedded synthetic CDRP-like dataset (`cellflux-tool synth`, DESIGN.md §2): writes the same
// on-disk layout as the real data so the real loaders run on it unchanged.
//
//   DIR/images/<barcode>/cdp2bioactives_<well a01..p24>_s<site>_w<1-5><UUID>.tif
//       16-bit grayscale TIFF (uncompressed, like BBBC047), 12-bit values; w1 DNA, w2 ER, w3 RNA,
//       w4 AGP, w5 Mito. UUID: deterministic hex, e.g. "7A9C0F3E-1B2D-4C5E-8F90-A1B2C3D4E5F6".
//   DIR/platemaps/barcode_platemap.csv   Plate_Map_Name,Assay_Plate_Barcode (one map per plate)
//   DIR/platemaps/platemap/<Plate_Map_Name>.txt
//       TSV well_position (A01), broad_sample (empty for DMSO), mmoles_per_liter, solvent (DMSO)
//   DIR/l1000/replicate_level_l1k.csv    Haghighi layout: replicate_id,pert_id,pert_dose,det_plate,
//       pert_sample_dose,CPD_NAME,CPD_SMILES, then the 978 landmark probe ids; DMSO rows have
//       pert_id DMSO, pert_dose -666, pert_sample_dose DMSO.
//   DIR/ground_truth.json                the generating model: per compound its SMILES, scaffold
//       template (scaffold_name, scaffold_smiles) and substituents (name, SMILES, attachment
//       weight), latent vector, strength, morphology deltas and expression shift per dose; the
//       fragment vectors ("fragments"); plate effects; gene baselines; loading matrices.
//
// Matching key, as in the real data: pert_sample_dose = broad_sample + "_" + PythonFloatString(
// round(2 * mmoles_per_liter, 2)), e.g. "BRD-K12345678-001-01-1_10.0".
//
// Structures: each compound is a real molecule (valid, unique canonical SMILES) from a fragment
// library: one of 8 scaffold templates (benzene, pyridine, thiophene, phenylpiperidine, indole,
// benzimidazole, quinoline, naphthalene) with 1-3 attachment points, each carrying one of 24
// acyclic substituents (methyl, F, OMe, CF3, NH2, CONH2, COOH, SO2NH2, CN, ...). Substituents hold
// no ring, so a compound's Bemis–Murcko scaffold is its template's ring system.
//
// The model: compound c has a unit latent z_c in R^k and a strength s_c (about a quarter exactly 0).
// z_c comes from its fragments: every template and every substituent has a fixed random unit
// vector u (from the seed), and z_c = normalize(u_scaffold + sum_i w_i u_substituent_i + 0.3 e_c)
// with attachment weights w_i proportional to 1, 0.75, 0.6 by point (sum w_i^2 = 1) and e_c a
// compound-specific random unit vector: scaffold and substituents carry about equal parts, so
// compounds sharing fragments have similar effects and an unseen scaffold's compounds are partly
// predictable from their substituents. s_c is compound-specific (uniform in [0.3, 1.5) or 0, as
// before; at least one null and one strong compound), not fragment-derived.
// At CP dose m its effect scale is e = s_c * m / (m + 1) / (5 / 6) (1 at the top dose m = 5).
// Morphology delta_j = max_j * tanh(e * (M z_c)_j) (M: fixed random [params x k]); expression of
// gene g = mean_g + plate_offset[p][g] + sd_g * (gain * e * (W z_c)_g + noise), W: fixed sparse
// random [978 x k]. A zero-strength compound is drawn from exactly the DMSO distribution.
//
// Deterministic from options.seed (same options -> byte-identical files, independent of threads).
#ifndef CELLFLUX_COMMON_DATA_SYNTH_H_
#define CELLFLUX_COMMON_DATA_SYNTH_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cellflux {

struct SynthOptions {
  int plates = 4;      // Cell Painting plates
  int compounds = 48;  // distinct compounds (each at 1 or 2 doses)
  uint64_t seed = 1;
  int image_width = 160;      // pixels
  int image_height = 160;     // pixels
  int sites = 2;              // fields of view per well (1..9)
  int wells_per_plate = 80;   // used wells per plate (<= 384); unfilled slots become DMSO
  int min_dmso_wells = 16;    // DMSO wells per plate, at least
  int max_cp_replicates = 4;  // replicate wells per treatment (>= 2 required to fit)
  int latent_dim = 6;         // k, the compound latent size
  int l1000_plates = 3;
  int l1000_replicates = 3;  // L1000 rows per treatment
  int l1000_dmso_per_plate = 8;
  int threads = 2;  // rendering threads (output does not depend on it)

  // INVALID_ARGUMENT naming the field and its allowed range.
  absl::Status Validate() const;
};

struct SynthSummary {
  int treatments = 0;  // (compound, dose) pairs
  int wells = 0;       // wells with images, DMSO included
  int images = 0;      // TIFF files
  int l1000_rows = 0;
};

// Writes the dataset under `out_dir` (created; existing files with the same names are replaced).
// Errors: INVALID_ARGUMENT for bad options (including too few wells for 2 replicates per
// treatment); INTERNAL/NOT_FOUND naming the file on write failures.
absl::StatusOr<SynthSummary> WriteSynthDataset(const SynthOptions& options,
                                               const std::string& out_dir);

// Python's str(round(x, 2)) for the doses used here: "10.0", "3.33", "0.5".
std::string PythonDoseString(double x);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_DATA_SYNTH_H_
