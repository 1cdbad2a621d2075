// Treatment-level matching of Cell Painting wells with L1000 replicates, the random pairing of
// replicates and same-plate DMSO controls, and the perturbation split. LibTorch-free; every
// result is a deterministic function of the inputs and the seed (own RNG, not std::
// distributions, so the output is the same with every standard library).
//
// Matching: a CP well's key is CpSampleKey(treatment) (broad_sample + "_" + doubled dose), an
// L1000 row's key is its pert_sample_dose. A key present in both modalities is "matched".
// Pairing, per matched key with W usable CP wells and R usable L1000 rows (both shuffled): max(W, R)
// pairs, pair i = (well[i mod W], row[i mod R]), so every replicate of both modalities is used and
// none more than ceil(max/min) times. Each pair then gets one DMSO control drawn uniformly from
// the same CP plate (a control well) and one from the same L1000 plate (a control row); a treated
// well whose CP plate has no DMSO well, or an L1000 row whose plate has no DMSO row, cannot be
// paired and is dropped with that reason before pairing.
#ifndef CELLFLUX_COMMON_DATA_PAIRING_H_
#define CELLFLUX_COMMON_DATA_PAIRING_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/data/bbbc047.h"
#include "common/util/seed.h"

namespace cellflux::data {

// SplitMix64 (common/util/seed.h) with unbiased bounded draws and a shuffle.
class DeterministicRng {
 public:
  explicit DeterministicRng(uint64_t seed) : rng_(seed) {}
  uint64_t Next() { return rng_.Next(); }
  // Uniform in [0, n), n > 0 (rejection sampling: no modulo bias).
  uint64_t Uniform(uint64_t n);
  template <typename T>
  void Shuffle(std::vector<T>* v) {
    for (size_t i = v->size(); i > 1; --i) std::swap((*v)[i - 1], (*v)[Uniform(i)]);
  }

 private:
  SplitMix64 rng_;
};

struct CpWell {
  std::string plate;
  std::string well;           // "A01"
  std::string broad_sample;   // empty for DMSO
  std::string key;            // CpSampleKey; empty for DMSO
  std::vector<int> site_ids;  // indices into the site table
  bool is_control() const { return broad_sample.empty(); }
};

struct L1000Record {
  std::string plate;  // det_plate
  std::string key;    // pert_sample_dose
  std::string pert_id;
  bool is_control = false;  // pert_id == "DMSO"
};

struct Pair {
  std::string key;
  std::string perturbation;    // broad_sample of the CP well
  int cp_well = -1;            // index into the CP wells
  int l1000_row = -1;          // index into the L1000 records
  int control_cp_well = -1;    // a DMSO well on the same CP plate
  int control_l1000_row = -1;  // a DMSO row on the same L1000 plate
};

struct PairingResult {
  std::vector<Pair> pairs;                                 // sorted by key, then pairing order
  std::map<std::string, std::vector<int>> cp_controls;     // CP plate → DMSO well indices
  std::map<std::string, std::vector<int>> l1000_controls;  // L1000 plate → DMSO row indices
  std::vector<DroppedItem> dropped;  // kinds: cp_only_treatment, l1000_only_treatment,
                                     // cp_plate_without_dmso, l1000_plate_without_dmso
  int64_t matched_keys = 0;
};

PairingResult PairTreatments(const std::vector<CpWell>& cp_wells,
                             const std::vector<L1000Record>& l1000, uint64_t seed);

enum class Split { kTrain, kVal, kTest };
const char* SplitName(Split split);

struct SplitCounts {
  int64_t test = 0;
  int64_t val = 0;
};
// How many of n perturbations go to test and val. Rule: test = min(requested_test,
// floor(kMaxTestFraction × n)), but at least 1 when requested_test > 0 and n ≥ 3; val =
// round(val_fraction × (n − test)), at least 1 when val_fraction > 0 and n − test ≥ 2; train keeps
// the rest (≥ 1 whenever n ≥ 1). With the paper's numbers (≈26.8k perturbations, 5,000 requested)
// the clamp does not bite; on small data (synthetic plates, tests) it keeps most for training.
inline constexpr double kMaxTestFraction = 0.25;
SplitCounts ComputeSplitCounts(int64_t n, int64_t requested_test, double val_fraction);

// Assigns each perturbation (deduplicated, sorted first so input order does not matter) a split,
// shuffled with `seed`.
std::map<std::string, Split> SplitPerturbations(std::vector<std::string> perturbations,
                                                int64_t requested_test, double val_fraction,
                                                uint64_t seed);

// Like SplitPerturbations, but whole groups go to one split (e.g. every compound sharing a
// Bemis–Murcko scaffold, so test compounds are not near-duplicates of training ones). `group_of`
// names each perturbation's group; a perturbation missing from it is a group of its own. Groups
// (sorted by name, then shuffled with `seed`) fill test until it holds at least the
// ComputeSplitCounts test count, then val likewise; at least one group always stays in train.
std::map<std::string, Split> SplitPerturbationGroups(
    std::vector<std::string> perturbations, const std::map<std::string, std::string>& group_of,
    int64_t requested_test, double val_fraction, uint64_t seed);

}  // namespace cellflux::data

#endif  // CELLFLUX_COMMON_DATA_PAIRING_H_
