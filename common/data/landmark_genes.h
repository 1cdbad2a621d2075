// The 978 L1000 landmark genes (Affymetrix probe id + HGNC symbol), embedded so that tools such as
// `cellflux-tool synth` can write real gene columns without any data file at run time.
// Order: as in the CMap level-3 fixture (tests/fixtures/l1000/test_l1000.gct), which is the
// order the generated common/data/landmark_genes.cc lists them in (scripts/gen_landmark_genes.py).
#ifndef CELLFLUX_COMMON_DATA_LANDMARK_GENES_H_
#define CELLFLUX_COMMON_DATA_LANDMARK_GENES_H_

#include <array>
#include <cstddef>

namespace cellflux {

inline constexpr std::size_t kNumLandmarkGenes = 978;

struct LandmarkGene {
  const char* probe_id;  // e.g. "200814_at"
  const char* symbol;    // e.g. "PSME1"
};

// The table; static storage, thread-safe, never empty.
const std::array<LandmarkGene, kNumLandmarkGenes>& LandmarkGenes();

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_DATA_LANDMARK_GENES_H_
