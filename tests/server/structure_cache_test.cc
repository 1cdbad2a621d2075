// StructureCache: parsing once per distinct SMILES (an injected parser counts the calls), entries
// shared by spellings of one compound, vocabulary matches, the nearest training compound, LRU
// eviction order, pinning, RESOURCE_EXHAUSTED when everything is pinned, errors not cached, and
// the hit/miss counters. No threads: every case is a sequence of Resolve calls.
#include "server/structure_cache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "server/metrics.h"

namespace cellflux::server {
namespace {

using ::testing::HasSubstr;

// Toy chemistry: a SMILES "x" or "X" is compound X (upper case = canonical), with the bits below;
// "bad..." does not parse.
const std::map<std::string, std::vector<int>> kBits = {
    {"V0", {1, 2, 3}}, {"V1", {7, 8}}, {"A", {1, 2}}, {"B", {7, 9}}, {"C", {20}}, {"D", {21}}};

class StructureCacheTest : public ::testing::Test {
 protected:
  StructureCacheTest() {
    info_.model_id = "toy";
    info_.condition = "structure";
    info_.perturbations = {{"BRD-V0", 10.0, "v0", "V0", kBits.at("V0")},
                           {"BRD-V1", 0.0, "v1", "V1", kBits.at("V1")},
                           {"BRD-NOSTRUCT", 1.0, "", "", {}}};
    info_.BuildIndex();
  }

  std::shared_ptr<StructureCache> Make(int capacity) {
    StructureCacheOptions o;
    o.capacity = capacity;
    auto cache = StructureCache::Create(
        o, &info_,
        [this](const std::string& smiles) -> absl::StatusOr<chem::Structure> {
          ++parses_[smiles];
          if (smiles.rfind("bad", 0) == 0) {
            return absl::InvalidArgumentError("SMILES \"" + smiles + "\": syntax error");
          }
          chem::Structure s;
          s.smiles = smiles;
          for (char c : smiles) s.canonical_smiles += static_cast<char>(std::toupper(c));
          s.bits = kBits.at(s.canonical_smiles);
          return s;
        },
        [this](int slot, const std::vector<int>& bits, double dose) -> absl::StatusOr<int64_t> {
          if (fail_register_) return absl::InternalError("registration failed");
          registered_.push_back({slot, dose});
          return 100 + slot;
        },
        metrics_.get());
    EXPECT_TRUE(cache.ok()) << cache.status();
    return *cache;
  }

  std::shared_ptr<const ResolvedStructure> Resolve(StructureCache& cache, const std::string& smiles,
                                                   double dose = 0) {
    auto r = cache.Resolve(smiles, dose);
    EXPECT_TRUE(r.ok()) << smiles << ": " << r.status();
    return r.ok() ? *r : nullptr;
  }

  double Counter(const std::string& name) {
    for (const auto& family : registry_.Collect()) {
      if (family.name == name) return family.metric.at(0).counter.value;
    }
    ADD_FAILURE() << name << " not registered";
    return -1;
  }

  ModelInfo info_;
  std::map<std::string, int> parses_;
  std::vector<std::pair<int, double>> registered_;  // (slot, dose) per registration
  bool fail_register_ = false;
  prometheus::Registry registry_;
  std::unique_ptr<ServerMetrics> metrics_ = std::make_unique<ServerMetrics>(registry_);
};

TEST_F(StructureCacheTest, ParsesAndRegistersOncePerDistinctSmilesAndDose) {
  auto cache = Make(8);
  const int64_t label = Resolve(*cache, "A", 5)->label;
  EXPECT_EQ(label, 100);
  EXPECT_EQ(Resolve(*cache, "A", 5)->label, label);
  EXPECT_EQ(Resolve(*cache, "A", 5)->label, label);
  EXPECT_EQ(parses_["A"], 1);
  EXPECT_EQ(registered_.size(), 1u);
  // Another spelling of the same compound: parsed once, same entry and slot.
  auto other = Resolve(*cache, "a", 5);
  EXPECT_EQ(other->label, label);
  EXPECT_EQ(other->canonical_smiles, "A");
  Resolve(*cache, "a", 5);
  EXPECT_EQ(parses_["a"], 1);
  EXPECT_EQ(registered_.size(), 1u);
  EXPECT_EQ(cache->size(), 1);
  // Another dose is another condition: a new slot.
  EXPECT_EQ(Resolve(*cache, "A", 0.5)->label, 101);
  EXPECT_EQ(parses_["A"], 2);
  ASSERT_EQ(registered_.size(), 2u);
  EXPECT_EQ(registered_[1], std::make_pair(1, 0.5));
  EXPECT_EQ(Counter("cellflux_structure_cache_misses_total"), 3);  // A@5, a@5, A@0.5
  EXPECT_EQ(Counter("cellflux_structure_cache_hits_total"), 3);
}

TEST_F(StructureCacheTest, VocabularyCompoundUsesItsLabelAtItsDoseOrAnUnknownDose) {
  auto cache = Make(8);
  auto unknown_dose = Resolve(*cache, "v0", 0);
  EXPECT_EQ(unknown_dose->label, 0);
  EXPECT_TRUE(unknown_dose->in_vocabulary);
  EXPECT_EQ(unknown_dose->nearest_id, "BRD-V0");
  EXPECT_DOUBLE_EQ(unknown_dose->nearest_similarity, 1.0);
  EXPECT_DOUBLE_EQ(unknown_dose->dose_um, 10.0);  // the vocabulary entry's
  EXPECT_EQ(Resolve(*cache, "V0", 10.0)->label, 0);
  EXPECT_TRUE(registered_.empty());
  // At a dose the vocabulary does not have: still the same compound, conditioned on a slot.
  auto new_dose = Resolve(*cache, "V0", 3.0);
  EXPECT_TRUE(new_dose->in_vocabulary);
  EXPECT_EQ(new_dose->label, 100);
  EXPECT_DOUBLE_EQ(new_dose->dose_um, 3.0);
  ASSERT_EQ(registered_.size(), 1u);
  EXPECT_EQ(registered_[0], std::make_pair(0, 3.0));
}

TEST_F(StructureCacheTest, ReportsTheNearestVocabularyCompoundByTanimoto) {
  auto cache = Make(8);
  auto a = Resolve(*cache, "A", 1);  // {1,2}: V0 {1,2,3} → 2/3, V1 {7,8} → 0
  EXPECT_FALSE(a->in_vocabulary);
  EXPECT_EQ(a->nearest_id, "BRD-V0");
  EXPECT_DOUBLE_EQ(a->nearest_similarity, 2.0 / 3.0);
  auto b = Resolve(*cache, "B", 1);  // {7,9}: V1 {7,8} → 1/3
  EXPECT_EQ(b->nearest_id, "BRD-V1");
  EXPECT_DOUBLE_EQ(b->nearest_similarity, 1.0 / 3.0);
  auto c = Resolve(*cache, "C", 1);  // shares no bit: the first row with a structure, 0
  EXPECT_EQ(c->nearest_id, "BRD-V0");
  EXPECT_DOUBLE_EQ(c->nearest_similarity, 0.0);
}

TEST_F(StructureCacheTest, EvictsTheLeastRecentlyUsedEntryAndReusesItsSlot) {
  auto cache = Make(2);
  Resolve(*cache, "A", 1);  // slot 0
  Resolve(*cache, "B", 1);  // slot 1
  Resolve(*cache, "A", 1);  // A is now the most recent
  auto c = Resolve(*cache, "C", 1);
  EXPECT_TRUE(cache->Contains("A", 1));
  EXPECT_FALSE(cache->Contains("B", 1));
  EXPECT_TRUE(cache->Contains("C", 1));
  EXPECT_EQ(c->label, 101);  // B's slot, overwritten
  ASSERT_EQ(registered_.size(), 3u);
  EXPECT_EQ(registered_[2].first, 1);
  // B is parsed again when it comes back, and takes the slot of A (now least recent).
  Resolve(*cache, "B", 1);
  EXPECT_EQ(parses_["B"], 2);
  EXPECT_FALSE(cache->Contains("A", 1));
  EXPECT_EQ(registered_.back().first, 0);
}

TEST_F(StructureCacheTest, PinnedEntriesAreNeverEvicted) {
  auto cache = Make(2);
  auto a = Resolve(*cache, "A", 1);  // held: a request in flight
  Resolve(*cache, "B", 1);           // released at once
  auto c = Resolve(*cache, "C", 1);  // evicts B, although A is older
  EXPECT_TRUE(cache->Contains("A", 1));
  EXPECT_FALSE(cache->Contains("B", 1));
  EXPECT_EQ(cache->pinned(), 2);
  auto d = cache->Resolve("D", 1);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("all 2 compounds"));
  EXPECT_EQ(registered_.size(), 3u);  // nothing registered, nothing overwritten
  // Two requests share A's pin: one finishing keeps it pinned.
  auto a2 = Resolve(*cache, "A", 1);
  a.reset();
  EXPECT_EQ(cache->pinned(), 2);
  c.reset();  // C's request finished: its slot may go
  auto d2 = Resolve(*cache, "D", 1);
  EXPECT_EQ(d2->label, 100 + registered_[2].first);  // C's slot
  EXPECT_TRUE(cache->Contains("A", 1));
  EXPECT_FALSE(cache->Contains("C", 1));
}

TEST_F(StructureCacheTest, ErrorsAreReturnedAndNotCached) {
  auto cache = Make(2);
  auto bad = cache->Resolve("bad(", 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("smiles: SMILES \"bad(\""));
  EXPECT_FALSE(cache->Resolve("bad(", 1).ok());
  EXPECT_EQ(parses_["bad("], 2);
  EXPECT_EQ(cache->size(), 0);

  fail_register_ = true;
  auto failed = cache->Resolve("A", 1);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(cache->size(), 0);
  fail_register_ = false;
  EXPECT_EQ(Resolve(*cache, "A", 1)->label, 100);  // slot 0 was not used up
}

TEST_F(StructureCacheTest, CapacityMustBePositive) {
  StructureCacheOptions o;
  o.capacity = 0;
  auto cache = StructureCache::Create(o, &info_, nullptr, nullptr);
  ASSERT_FALSE(cache.ok());
  EXPECT_EQ(cache.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace cellflux::server
