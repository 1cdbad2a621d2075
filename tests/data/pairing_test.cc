#include "common/data/pairing.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellflux::data {
namespace {

std::vector<CpWell> Wells() {
  return {
      {"P1", "A01", "", "", {0}},          {"P1", "A02", "", "", {1}},
      {"P1", "B01", "K1", "K1_10.0", {2}}, {"P2", "A01", "", "", {3}},
      {"P2", "B01", "K1", "K1_10.0", {4}}, {"P2", "B02", "K2", "K2_10.0", {5}},
      {"P3", "B01", "K3", "K3_10.0", {6}},  // no DMSO on P3
  };
}

std::vector<L1000Record> Rows() {
  return {
      {"L1", "DMSO", "DMSO", true},   {"L1", "K1_10.0", "K1", false},
      {"L1", "K1_10.0", "K1", false}, {"L1", "K1_10.0", "K1", false},
      {"L2", "DMSO", "DMSO", true},   {"L2", "K2_10.0", "K2", false},
      {"L3", "K2_10.0", "K2", false},  // no DMSO on L3
      {"L1", "K3_10.0", "K3", false}, {"L1", "K9_10.0", "K9", false},
  };
}

TEST(PairingTest, MatchesPairsAndDrawsSamePlateControls) {
  const auto wells = Wells();
  const auto rows = Rows();
  PairingResult r = PairTreatments(wells, rows, 42);
  EXPECT_EQ(r.matched_keys, 2);  // K1, K2 (K3's only CP well has no same-plate DMSO)
  std::map<std::string, int> per_key;
  std::set<int> k1_wells, k1_rows;
  for (const Pair& p : r.pairs) {
    ++per_key[p.key];
    EXPECT_EQ(wells[p.cp_well].key, p.key);
    EXPECT_EQ(rows[p.l1000_row].key, p.key);
    EXPECT_TRUE(wells[p.control_cp_well].is_control());
    EXPECT_EQ(wells[p.control_cp_well].plate, wells[p.cp_well].plate);
    EXPECT_TRUE(rows[p.control_l1000_row].is_control);
    EXPECT_EQ(rows[p.control_l1000_row].plate, rows[p.l1000_row].plate);
    if (p.key == "K1_10.0") {
      k1_wells.insert(p.cp_well);
      k1_rows.insert(p.l1000_row);
    }
  }
  EXPECT_EQ(per_key["K1_10.0"], 3);  // max(2 wells, 3 rows)
  EXPECT_EQ(per_key["K2_10.0"], 1);  // the L3 row has no control
  EXPECT_EQ(k1_wells.size(), 2u);
  EXPECT_EQ(k1_rows.size(), 3u);
  std::multiset<std::string> kinds;
  for (const DroppedItem& d : r.dropped) kinds.insert(d.kind);
  EXPECT_EQ(kinds.count("cp_plate_without_dmso"), 1u);
  EXPECT_EQ(kinds.count("l1000_plate_without_dmso"), 1u);
  EXPECT_EQ(kinds.count("l1000_only_treatment"), 1u);  // K9
  EXPECT_EQ(kinds.count("cp_only_treatment"), 0u);     // K3 exists in both, it just cannot pair
  EXPECT_EQ(r.cp_controls.at("P1"), (std::vector<int>{0, 1}));
}

TEST(PairingTest, DeterministicFromSeed) {
  auto a = PairTreatments(Wells(), Rows(), 1);
  auto b = PairTreatments(Wells(), Rows(), 1);
  ASSERT_EQ(a.pairs.size(), b.pairs.size());
  for (size_t i = 0; i < a.pairs.size(); ++i) {
    EXPECT_EQ(a.pairs[i].cp_well, b.pairs[i].cp_well);
    EXPECT_EQ(a.pairs[i].l1000_row, b.pairs[i].l1000_row);
    EXPECT_EQ(a.pairs[i].control_cp_well, b.pairs[i].control_cp_well);
  }
  DeterministicRng r1(5), r2(5);
  for (int i = 0; i < 100; ++i) {
    uint64_t x = r1.Uniform(7);
    EXPECT_EQ(x, r2.Uniform(7));
    EXPECT_LT(x, 7u);
  }
}

TEST(PairingTest, SplitCountsFollowTheClampRule) {
  auto c = ComputeSplitCounts(26782, 5000, 0.05);  // the paper's scale: no clamp
  EXPECT_EQ(c.test, 5000);
  EXPECT_EQ(c.val, 1089);  // round(0.05 × 21782)
  c = ComputeSplitCounts(8, 5000, 0.05);
  EXPECT_EQ(c.test, 2);
  EXPECT_EQ(c.val, 1);
  c = ComputeSplitCounts(2, 5000, 0.05);
  EXPECT_EQ(c.test, 0);
  EXPECT_EQ(c.val, 1);
  c = ComputeSplitCounts(10, 0, 0.0);
  EXPECT_EQ(c.test + c.val, 0);
}

TEST(PairingTest, SplitIsDisjointAndSeeded) {
  std::vector<std::string> perts;
  for (int i = 0; i < 40; ++i) perts.push_back("K" + std::to_string(i));
  auto a = SplitPerturbations(perts, 5000, 0.1, 3);
  std::vector<std::string> reversed(perts.rbegin(), perts.rend());
  auto b = SplitPerturbations(reversed, 5000, 0.1, 3);  // input order does not matter
  auto c = SplitPerturbations(perts, 5000, 0.1, 4);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::map<Split, int> n;
  for (const auto& [p, s] : a) ++n[s];
  EXPECT_EQ(a.size(), 40u);
  EXPECT_EQ(n[Split::kTest], 10);
  EXPECT_EQ(n[Split::kVal], 3);
  EXPECT_EQ(n[Split::kTrain], 27);
}

TEST(PairingTest, GroupSplitKeepsEveryScaffoldInOneSplit) {
  // 40 compounds in 10 scaffold groups of 4, plus 2 without a structure (groups of their own).
  std::vector<std::string> perts;
  std::map<std::string, std::string> scaffold;
  for (int i = 0; i < 40; ++i) {
    perts.push_back("BRD-" + std::to_string(100 + i));
    scaffold[perts.back()] = "scaffold" + std::to_string(i % 10);
  }
  perts.push_back("BRD-nostructure-1");
  perts.push_back("BRD-nostructure-2");
  const auto split = SplitPerturbationGroups(perts, scaffold, /*requested_test=*/8,
                                             /*val_fraction=*/0.1, /*seed=*/3);
  ASSERT_EQ(split.size(), perts.size());
  std::map<std::string, std::set<Split>> splits_of_group;
  std::map<Split, int> count;
  for (const auto& [p, s] : split) {
    ++count[s];
    auto it = scaffold.find(p);
    if (it != scaffold.end()) splits_of_group[it->second].insert(s);
  }
  for (const auto& [g, s] : splits_of_group) EXPECT_EQ(s.size(), 1u) << g << " is split";
  // Test: ≥ 8 (whole groups of 4: 8, or 9-12 when a singleton comes first); val ≥ 3.
  EXPECT_GE(count[Split::kTest], 8);
  EXPECT_LE(count[Split::kTest], 12);
  EXPECT_GE(count[Split::kVal], 3);
  EXPECT_GE(count[Split::kTrain], 20);
  // Seeded: the same seed gives the same split, another seed another one.
  EXPECT_EQ(split, SplitPerturbationGroups(perts, scaffold, 8, 0.1, 3));
  EXPECT_NE(split, SplitPerturbationGroups(perts, scaffold, 8, 0.1, 4));
}

TEST(PairingTest, GroupSplitAlwaysKeepsATrainingGroup) {
  std::vector<std::string> perts = {"a", "b", "c", "d"};
  std::map<std::string, std::string> one_group = {{"a", "g"}, {"b", "g"}, {"c", "g"}, {"d", "g"}};
  const auto split = SplitPerturbationGroups(perts, one_group, 1, 0.5, 0);
  for (const auto& [p, s] : split) EXPECT_EQ(s, Split::kTrain) << p;
}

}  // namespace
}  // namespace cellflux::data
