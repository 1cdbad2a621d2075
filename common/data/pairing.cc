#include "common/data/pairing.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"

namespace cellflux::data {

uint64_t DeterministicRng::Uniform(uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do {
    x = Next();
  } while (x >= limit);
  return x % n;
}

PairingResult PairTreatments(const std::vector<CpWell>& cp_wells,
                             const std::vector<L1000Record>& l1000, uint64_t seed) {
  PairingResult result;
  for (size_t i = 0; i < cp_wells.size(); ++i) {
    if (cp_wells[i].is_control())
      result.cp_controls[cp_wells[i].plate].push_back(static_cast<int>(i));
  }
  for (size_t i = 0; i < l1000.size(); ++i) {
    if (l1000[i].is_control) result.l1000_controls[l1000[i].plate].push_back(static_cast<int>(i));
  }
  // key → usable treated wells / rows (in input order; shuffled below).
  std::map<std::string, std::vector<int>> cp_by_key, l1000_by_key;
  std::set<std::string> cp_keys, l1000_keys;
  for (size_t i = 0; i < cp_wells.size(); ++i) {
    const CpWell& w = cp_wells[i];
    if (w.is_control()) continue;
    cp_keys.insert(w.key);
    if (!result.cp_controls.count(w.plate)) {
      result.dropped.push_back(
          {"cp_plate_without_dmso",
           absl::StrCat("CP plate ", w.plate, " well ", w.well, " (", w.key, ")"),
           absl::StrCat("no DMSO well on CP plate ", w.plate, " to pair as control")});
      continue;
    }
    cp_by_key[w.key].push_back(static_cast<int>(i));
  }
  for (size_t i = 0; i < l1000.size(); ++i) {
    const L1000Record& r = l1000[i];
    if (r.is_control) continue;
    l1000_keys.insert(r.key);
    if (!result.l1000_controls.count(r.plate)) {
      result.dropped.push_back(
          {"l1000_plate_without_dmso",
           absl::StrCat("L1000 row ", i, " plate ", r.plate, " (", r.key, ")"),
           absl::StrCat("no DMSO row on L1000 plate ", r.plate, " to pair as control")});
      continue;
    }
    l1000_by_key[r.key].push_back(static_cast<int>(i));
  }
  for (const std::string& key : cp_keys) {
    if (!l1000_keys.count(key)) {
      result.dropped.push_back({"cp_only_treatment", absl::StrCat("treatment ", key),
                                "in the Cell Painting plate maps but with no usable L1000 row"});
    }
  }
  for (const std::string& key : l1000_keys) {
    if (!cp_keys.count(key)) {
      result.dropped.push_back({"l1000_only_treatment", absl::StrCat("treatment ", key),
                                "in the L1000 table but on no imaged Cell Painting well"});
    }
  }

  DeterministicRng rng(seed);
  for (auto& [key, wells] : cp_by_key) {
    auto rows_it = l1000_by_key.find(key);
    if (rows_it == l1000_by_key.end()) continue;
    std::vector<int>& rows = rows_it->second;
    ++result.matched_keys;
    rng.Shuffle(&wells);
    rng.Shuffle(&rows);
    const size_t n = std::max(wells.size(), rows.size());
    for (size_t i = 0; i < n; ++i) {
      Pair p;
      p.key = key;
      p.cp_well = wells[i % wells.size()];
      p.l1000_row = rows[i % rows.size()];
      p.perturbation = cp_wells[p.cp_well].broad_sample;
      const auto& cp_pool = result.cp_controls.at(cp_wells[p.cp_well].plate);
      const auto& l1000_pool = result.l1000_controls.at(l1000[p.l1000_row].plate);
      p.control_cp_well = cp_pool[rng.Uniform(cp_pool.size())];
      p.control_l1000_row = l1000_pool[rng.Uniform(l1000_pool.size())];
      result.pairs.push_back(std::move(p));
    }
  }
  return result;
}

const char* SplitName(Split split) {
  switch (split) {
    case Split::kTrain:
      return "train";
    case Split::kVal:
      return "val";
    case Split::kTest:
      return "test";
  }
  return "?";
}

SplitCounts ComputeSplitCounts(int64_t n, int64_t requested_test, double val_fraction) {
  SplitCounts c;
  if (n <= 0) return c;
  c.test = std::min<int64_t>(std::max<int64_t>(requested_test, 0),
                             static_cast<int64_t>(kMaxTestFraction * n));
  if (requested_test > 0 && n >= 3 && c.test == 0) c.test = 1;
  const int64_t rest = n - c.test;
  c.val = static_cast<int64_t>(std::llround(std::max(val_fraction, 0.0) * rest));
  if (val_fraction > 0 && rest >= 2 && c.val == 0) c.val = 1;
  c.val = std::min(c.val, rest - 1);  // keep at least one training perturbation
  if (c.val < 0) c.val = 0;
  return c;
}

std::map<std::string, Split> SplitPerturbations(std::vector<std::string> perturbations,
                                                int64_t requested_test, double val_fraction,
                                                uint64_t seed) {
  std::sort(perturbations.begin(), perturbations.end());
  perturbations.erase(std::unique(perturbations.begin(), perturbations.end()), perturbations.end());
  SplitCounts counts =
      ComputeSplitCounts(static_cast<int64_t>(perturbations.size()), requested_test, val_fraction);
  // A different stream from the pairing's, so changing the split does not reshuffle pairs.
  DeterministicRng rng(seed ^ 0x5EED5EED5EED5EEDULL);
  rng.Shuffle(&perturbations);
  std::map<std::string, Split> out;
  for (size_t i = 0; i < perturbations.size(); ++i) {
    Split s = static_cast<int64_t>(i) < counts.test                ? Split::kTest
              : static_cast<int64_t>(i) < counts.test + counts.val ? Split::kVal
                                                                   : Split::kTrain;
    out.emplace(perturbations[i], s);
  }
  return out;
}

std::map<std::string, Split> SplitPerturbationGroups(
    std::vector<std::string> perturbations, const std::map<std::string, std::string>& group_of,
    int64_t requested_test, double val_fraction, uint64_t seed) {
  std::sort(perturbations.begin(), perturbations.end());
  perturbations.erase(std::unique(perturbations.begin(), perturbations.end()), perturbations.end());
  const SplitCounts counts =
      ComputeSplitCounts(static_cast<int64_t>(perturbations.size()), requested_test, val_fraction);
  std::map<std::string, std::vector<std::string>> members;  // group → perturbations
  for (const std::string& p : perturbations) {
    auto it = group_of.find(p);
    members[it == group_of.end() ? "\x01" + p : it->second].push_back(p);
  }
  std::vector<std::string> groups;
  for (const auto& [g, ps] : members) groups.push_back(g);
  DeterministicRng rng(seed ^ 0x5EED5EED5EED5EEDULL);
  rng.Shuffle(&groups);
  std::map<std::string, Split> out;
  int64_t test = 0, val = 0;
  for (size_t i = 0; i < groups.size(); ++i) {
    const std::vector<std::string>& ps = members[groups[i]];
    const bool last = i + 1 == groups.size();
    Split s = Split::kTrain;
    if (test < counts.test && !last) {
      s = Split::kTest;
      test += static_cast<int64_t>(ps.size());
    } else if (val < counts.val && !last) {
      s = Split::kVal;
      val += static_cast<int64_t>(ps.size());
    }
    for (const std::string& p : ps) out.emplace(p, s);
  }
  return out;
}

}  // namespace cellflux::data
