#include "server/structure_cache.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace cellflux::server {
namespace {

// Doses written in a vocabulary and typed by a person differ in the last digits (10 vs 10.000001).
bool SameDose(double a, double b) { return std::abs(a - b) <= 1e-6 * std::max(a, b); }

}  // namespace

absl::StatusOr<std::shared_ptr<StructureCache>> StructureCache::Create(
    const StructureCacheOptions& options, const ModelInfo* info, StructureParser parser,
    StructureRegistrar registrar, ServerMetrics* metrics) {
  if (options.capacity < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("structure cache capacity must be ≥ 1, got ", options.capacity));
  }
  return std::make_shared<StructureCache>(options, info, std::move(parser), std::move(registrar),
                                          metrics);
}

StructureCache::StructureCache(const StructureCacheOptions& options, const ModelInfo* info,
                               StructureParser parser, StructureRegistrar registrar,
                               ServerMetrics* metrics)
    : options_(options),
      info_(info),
      parser_(std::move(parser)),
      registrar_(std::move(registrar)),
      metrics_(metrics) {}

int StructureCache::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(entries_.size());
}

int StructureCache::pinned() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(
      std::count_if(entries_.begin(), entries_.end(), [](const auto& e) { return e.second.pins; }));
}

bool StructureCache::Contains(const std::string& canonical_smiles, double dose_um) const {
  absl::MutexLock lock(&mu_);
  return entries_.count({canonical_smiles, dose_um}) > 0;
}

ResolvedStructure StructureCache::Compare(const chem::Structure& s, double dose_um) const {
  ResolvedStructure out;
  out.label = -1;  // −1 until a vocabulary row or a slot gives one
  out.canonical_smiles = s.canonical_smiles;
  out.dose_um = dose_um;
  const std::vector<PerturbationEntry>& vocab = info_->perturbations;
  int64_t same = -1;  // first vocabulary row of the same compound
  for (size_t r = 0; r < vocab.size(); ++r) {
    if (vocab[r].canonical_smiles.empty() || vocab[r].canonical_smiles != s.canonical_smiles) {
      continue;
    }
    if (same < 0) same = static_cast<int64_t>(r);
    if (dose_um == 0 || SameDose(vocab[r].dose, dose_um)) {
      out.label = static_cast<int64_t>(r);
      out.dose_um = vocab[r].dose;
      out.in_vocabulary = true;
      out.nearest_id = vocab[r].id;
      out.nearest_similarity = 1.0;
      return out;
    }
  }
  if (same >= 0) {  // the compound at a dose the vocabulary does not have: needs a slot
    out.in_vocabulary = true;
    out.nearest_id = vocab[same].id;
    out.nearest_similarity = 1.0;
    return out;
  }
  double best = -1;
  for (const PerturbationEntry& e : vocab) {
    if (e.bits.empty()) continue;
    const double sim = chem::Tanimoto(s.bits, e.bits);
    if (sim > best) {
      best = sim;
      out.nearest_id = e.id;
      out.nearest_similarity = sim;
    }
  }
  return out;
}

std::shared_ptr<const ResolvedStructure> StructureCache::PinLocked(Entry& entry) {
  ++entry.pins;
  lru_.splice(lru_.begin(), lru_, entry.lru);
  const Key key = *entry.lru;
  auto* copy = new ResolvedStructure(entry.value);
  std::shared_ptr<StructureCache> self = shared_from_this();
  return std::shared_ptr<const ResolvedStructure>(copy, [self, key](const ResolvedStructure* r) {
    self->Unpin(key);
    delete r;
  });
}

void StructureCache::Unpin(const Key& key) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it != entries_.end() && it->second.pins > 0) --it->second.pins;
}

bool StructureCache::EvictOneLocked() {
  for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
    auto e = entries_.find(*it);
    if (e->second.pins > 0) continue;
    if (e->second.value.slot >= 0) free_slots_.push_back(e->second.value.slot);
    for (const std::string& alias : e->second.aliases) aliases_.erase({alias, e->first.second});
    lru_.erase(std::next(it).base());
    entries_.erase(e);
    return true;
  }
  return false;
}

absl::StatusOr<std::shared_ptr<const ResolvedStructure>> StructureCache::Resolve(
    const std::string& smiles, double dose_um) {
  std::shared_ptr<const ResolvedStructure> hit;
  {
    absl::MutexLock lock(&mu_);
    auto alias = aliases_.find({smiles, dose_um});
    if (alias != aliases_.end()) hit = PinLocked(entries_.at(alias->second));
  }
  if (hit != nullptr) {
    if (metrics_ != nullptr) metrics_->StructureCacheHit();
    return hit;
  }
  if (metrics_ != nullptr) metrics_->StructureCacheMiss();
  absl::StatusOr<chem::Structure> parsed = parser_(smiles);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        absl::StrCat("smiles: ", parsed.status().message()));
  }
  ResolvedStructure value = Compare(*parsed, dose_um);
  const bool needs_slot = value.label < 0;  // not a vocabulary entry as it is

  absl::MutexLock lock(&mu_);
  const Key key{value.canonical_smiles, dose_um};
  auto found = entries_.find(key);
  if (found == entries_.end()) {
    if (static_cast<int>(entries_.size()) >= options_.capacity && !EvictOneLocked()) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "the server's structure cache is full: all %d compounds in it belong to requests in "
          "flight (--structure-cache); retry when some have finished",
          options_.capacity));
    }
    if (needs_slot) {
      int slot = next_slot_;
      if (!free_slots_.empty()) {
        slot = free_slots_.back();
        free_slots_.pop_back();
      }
      absl::StatusOr<int64_t> label = registrar_(slot, parsed->bits, dose_um);
      if (!label.ok()) {
        if (slot != next_slot_) free_slots_.push_back(slot);
        return label.status();
      }
      if (slot == next_slot_) ++next_slot_;
      value.slot = slot;
      value.label = *label;
      value.dose_um = dose_um;
    }
    lru_.push_front(key);
    Entry entry;
    entry.value = std::move(value);
    entry.lru = lru_.begin();
    found = entries_.emplace(key, std::move(entry)).first;
  }
  Entry& entry = found->second;
  if (aliases_.emplace(Key{smiles, dose_um}, key).second) {
    entry.aliases.push_back(smiles);
    if (static_cast<int>(entry.aliases.size()) > kMaxAliases) {
      aliases_.erase({entry.aliases.front(), dose_um});
      entry.aliases.erase(entry.aliases.begin());
    }
  }
  return PinLocked(entry);
}

}  // namespace cellflux::server
