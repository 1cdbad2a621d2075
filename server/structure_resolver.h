// What validation needs from the structure cache: a compound given by SMILES → the label the
// velocity network takes, plus how far the compound is from the vocabulary. StructureCache
// (structure_cache.h) implements it; validate.cc depends only on this interface, so it links
// (and fuzzes) without RDKit or the metrics.
#ifndef CELLFLUX_SERVER_STRUCTURE_RESOLVER_H_
#define CELLFLUX_SERVER_STRUCTURE_RESOLVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace cellflux::server {

// A resolved compound. While any copy of the shared_ptr Resolve returned is alive, the label
// stays the compound's (the cache never evicts or overwrites it).
struct ResolvedStructure {
  int64_t label = 0;             // what PredictTask::label takes
  std::string canonical_smiles;  // of the parent
  bool in_vocabulary = false;    // the canonical SMILES is a vocabulary compound's
  std::string nearest_id;        // nearest vocabulary compound by Tanimoto; "" if none has bits
  double nearest_similarity = 0;
  double dose_um = 0;  // the dose the label stands for (µM, 0 = unknown)
  int slot = -1;       // extra-structure slot; −1 = a vocabulary label
};

class StructureResolver {
 public:
  virtual ~StructureResolver() = default;
  // `dose_um` already validated (finite, ≥ 0; 0 = unknown). Any thread. Errors:
  // INVALID_ARGUMENT (unparsable SMILES, naming it), RESOURCE_EXHAUSTED (no free slot).
  virtual absl::StatusOr<std::shared_ptr<const ResolvedStructure>> Resolve(
      const std::string& smiles, double dose_um) = 0;
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_STRUCTURE_RESOLVER_H_
