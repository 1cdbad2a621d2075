// StructureCache: a compound given by SMILES (PredictRequest.smiles) → the label the velocity
// network takes, for models with a structure encoder (ModelInfo::uses_structure).
//
//   auto cache = StructureCache::Create(options, &info, parser, registrar, metrics);
//   CF_ASSIGN_OR_RETURN(std::shared_ptr<const ResolvedStructure> s,
//                       cache->Resolve("CN(C)C(=N)N=C(N)N.Cl", /*dose_um=*/10));
//   task->label = s->label;   // keep `s` until the request is answered: it pins the label
//
// What Resolve does with a (SMILES, dose) it has not seen:
//  1. parses it (the injected parser: chem::ParseStructure with the model's fingerprint length in
//     the server) → canonical SMILES of the parent + Morgan bits. An unparsable SMILES is
//     INVALID_ARGUMENT "smiles: <the parser's message>" (it names the SMILES and RDKit's reason);
//     failures are not cached.
//  2. compares it with the vocabulary (ModelInfo::perturbations): a row with the same canonical
//     SMILES and the same dose (or any dose when dose_um is 0: the first such row) is used as is
//     — its vocabulary label, no slot (in_vocabulary). Otherwise the nearest vocabulary compound by
//     Tanimoto similarity of the fingerprints (the first on a tie) is reported beside it.
//  3. otherwise takes an extra-structure slot (0 … capacity − 1) and registers the bits and dose
//     there through the registrar (Backend::RegisterStructure): the label is what it returns.
// Entries are keyed by (canonical SMILES, dose): two spellings of one compound share an entry
// and its slot; each spelling is parsed once (up to kMaxAliases spellings are remembered per
// entry). Two first requests for the same SMILES that race may both parse it; one entry is kept.
//
// Capacity and eviction: at most `capacity` entries (vocabulary matches included), so at most
// `capacity` slots. A full cache evicts its least recently used entry that no request holds and
// reuses its slot (the registrar overwrites it). An entry is pinned while any ResolvedStructure
// returned for it is alive — the service keeps it until the response is written — so a slot is
// never overwritten under a request that still samples with its label. When every entry is
// pinned a new compound gets RESOURCE_EXHAUSTED (retryable: pins go as requests finish).
// Errors from the registrar are returned as they are; the entry is not kept.
//
// Metrics (when given): cellflux_structure_cache_hits_total (a known spelling: no parse) and
// cellflux_structure_cache_misses_total (parsed), updated after the lock is released.
//
// Thread-safety: Resolve from any thread. The cache's mutex is held while registering (a small
// copy-on-write of the extra rows, not a forward) so slots are registered in order; parsing and
// the similarity search run outside it. LibTorch-free.
#ifndef CELLFLUX_SERVER_STRUCTURE_CACHE_H_
#define CELLFLUX_SERVER_STRUCTURE_CACHE_H_

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/chem/chem.h"
#include "server/metrics.h"
#include "server/model_info.h"
#include "server/structure_resolver.h"

namespace cellflux::server {

struct StructureCacheOptions {
  // Distinct (canonical SMILES, dose) compounds kept, and so the most extra-structure slots the
  // model gets (each costs fingerprint_bits floats on the device). ≥ 1.
  int capacity = 1024;
};

// SMILES → its parent's canonical SMILES and Morgan bits (chem::ParseStructure in the server).
using StructureParser = std::function<absl::StatusOr<chem::Structure>(const std::string& smiles)>;
// Registers `bits` at `dose_um` (0 = unknown) under extra slot `slot` (slot ≤ the slots registered
// so far: equal appends, smaller overwrites) and returns the label (Backend::RegisterStructure).
using StructureRegistrar =
    std::function<absl::StatusOr<int64_t>(int slot, const std::vector<int>& bits, double dose_um)>;

class StructureCache final : public StructureResolver,
                             public std::enable_shared_from_this<StructureCache> {
 public:
  static constexpr int kMaxAliases = 4;

  // `info` (the vocabulary) must outlive the cache; metrics may be null. INVALID_ARGUMENT for a
  // capacity < 1.
  static absl::StatusOr<std::shared_ptr<StructureCache>> Create(
      const StructureCacheOptions& options, const ModelInfo* info, StructureParser parser,
      StructureRegistrar registrar, ServerMetrics* metrics = nullptr);

  // `dose_um` must already be validated (finite, ≥ 0; 0 = unknown). Errors: INVALID_ARGUMENT
  // (unparsable SMILES), RESOURCE_EXHAUSTED (every entry pinned), or the registrar's.
  absl::StatusOr<std::shared_ptr<const ResolvedStructure>> Resolve(const std::string& smiles,
                                                                   double dose_um) override;

  int size() const;    // entries
  int pinned() const;  // entries with a live ResolvedStructure
  bool Contains(const std::string& canonical_smiles, double dose_um) const;  // tests

  // Implementation details follow; API users need not read.
  StructureCache(const StructureCacheOptions& options, const ModelInfo* info,
                 StructureParser parser, StructureRegistrar registrar, ServerMetrics* metrics);

 private:
  using Key = std::pair<std::string, double>;  // (canonical SMILES or spelling, dose)
  struct Entry {
    ResolvedStructure value;
    int pins = 0;
    std::list<Key>::iterator lru;  // position in lru_
    std::vector<std::string> aliases;
  };

  // Vocabulary match and nearest compound for a parsed structure (no lock: `info_` is immutable).
  ResolvedStructure Compare(const chem::Structure& s, double dose_um) const;
  std::shared_ptr<const ResolvedStructure> PinLocked(Entry& entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unpin(const Key& key);
  // Frees room for one entry; false when every entry is pinned.
  bool EvictOneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const StructureCacheOptions options_;
  const ModelInfo* const info_;
  const StructureParser parser_;
  const StructureRegistrar registrar_;
  ServerMetrics* const metrics_;

  mutable absl::Mutex mu_;
  // Invariants: every key of aliases_ maps to a key of entries_; lru_ holds exactly the keys of
  // entries_, most recently used first; the slots of entries_ plus free_slots_ are exactly
  // 0 … next_slot_ − 1; entries_.size() ≤ capacity.
  std::map<Key, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::map<Key, Key> aliases_ ABSL_GUARDED_BY(mu_);  // (spelling, dose) → entries_ key
  std::list<Key> lru_ ABSL_GUARDED_BY(mu_);
  std::vector<int> free_slots_ ABSL_GUARDED_BY(mu_);
  int next_slot_ ABSL_GUARDED_BY(mu_) = 0;  // slots ever registered (the model's extra rows)
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_STRUCTURE_CACHE_H_
