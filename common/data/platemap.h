// BBBC047 / CDRP plate maps, LibTorch-free.
//
//   <platemaps>/barcode_platemap.csv       Plate_Map_Name,Assay_Plate_Barcode
//   <platemaps>/platemap/<Plate_Map_Name>.txt
//       TSV, header well_position, broad_sample, mmoles_per_liter, solvent (solvent optional;
//       extra columns ignored); well_position like "A01" (normalised to upper case, "A1" → "A01").
// A well is a DMSO control when broad_sample is empty or "DMSO" (any case); its
// mmoles_per_liter may then be empty or "NA". A treated well needs a finite, non-negative dose.
// Every plate map named in barcode_platemap.csv must exist; a malformed line is an error naming
// the file, line and column (plate maps are small and hand-curated: failing loudly is better than
// silently losing a plate).
#ifndef CELLFLUX_COMMON_DATA_PLATEMAP_H_
#define CELLFLUX_COMMON_DATA_PLATEMAP_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cellflux::data {

struct WellTreatment {
  std::string broad_sample;       // empty for DMSO
  double mmoles_per_liter = 0.0;  // the CP plate map's dose column (0 for DMSO)
  std::string solvent;
  bool is_control() const { return broad_sample.empty(); }
};

struct PlateMaps {
  std::map<std::string, std::string> barcode_to_map;  // Assay_Plate_Barcode → Plate_Map_Name
  // Plate_Map_Name → well ("A01") → treatment.
  std::map<std::string, std::map<std::string, WellTreatment>> maps;

  // The treatment of a well of a plate, or nullptr when the plate or the well is unknown.
  const WellTreatment* Find(const std::string& barcode, const std::string& well) const;
};

absl::StatusOr<PlateMaps> ReadPlateMaps(const std::string& platemaps_dir);

// "A1", "a01", "A01" → "A01". False when not a letter A..P followed by 1..24.
bool NormalizeWell(absl::string_view text, std::string* well);

// Python's str(round(x, 2)): round half-even on the exact binary value to 2 decimals, then the
// shortest text with at least one decimal: 10 → "10.0", 3.333 → "3.33", 0.5 → "0.5".
std::string FormatDose(double x);

// Cell Painting sample key: broad_sample + "_" + FormatDose(2 × mmoles_per_liter), the CP dose
// doubled to meet the L1000 µM value (Haghighi et al. 2022); equals L1000 pert_sample_dose.
std::string CpSampleKey(const WellTreatment& treatment);

}  // namespace cellflux::data

#endif  // CELLFLUX_COMMON_DATA_PLATEMAP_H_
