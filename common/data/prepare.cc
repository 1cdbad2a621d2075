#include "common/data/prepare.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/data/bbbc047.h"
#include "common/data/landmark_genes.h"
#include "common/data/manifest.h"
#include "common/data/pairing.h"
#include "common/data/platemap.h"
#include "common/io/csv.h"
#include "common/io/l1000_csv.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"

namespace cellflux::data {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kProgressEvery = 5000;

struct KeyInfo {
  std::string smiles;
  std::string name;
};

// Groups the (sorted) complete sites into wells with a plate-map entry; sites of kept wells are
// appended to m->sites. Wells without a plate-map entry are dropped with the reason.
std::vector<CpWell> BuildWells(const ScanResult& scan, const PlateMaps& maps, Manifest* m) {
  std::vector<CpWell> wells;
  std::map<std::string, int64_t> unmapped_plates;  // plate → sites
  const auto& sites = scan.sites;
  for (size_t i = 0; i < sites.size();) {
    size_t j = i;
    while (j < sites.size() && sites[j].plate == sites[i].plate && sites[j].well == sites[i].well)
      ++j;
    const std::string& plate = sites[i].plate;
    const std::string& well = sites[i].well;
    const WellTreatment* t = maps.Find(plate, well);
    if (!maps.barcode_to_map.count(plate)) {
      unmapped_plates[plate] += static_cast<int64_t>(j - i);
    } else if (t == nullptr) {
      m->dropped.push_back(
          {"well_not_in_platemap", absl::StrCat("CP plate ", plate, " well ", well),
           absl::StrCat(j - i, " site(s) imaged but the well is not in plate map '",
                        maps.barcode_to_map.at(plate), "'")});
    } else {
      CpWell w{plate, well, t->broad_sample, t->is_control() ? "" : CpSampleKey(*t), {}};
      for (size_t k = i; k < j; ++k) {
        w.site_ids.push_back(static_cast<int>(m->sites.size()));
        m->sites.push_back(sites[k]);
      }
      wells.push_back(std::move(w));
    }
    i = j;
  }
  for (const auto& [plate, n] : unmapped_plates) {
    m->dropped.push_back({"plate_not_in_platemap", absl::StrCat("CP plate ", plate),
                          absl::StrCat(n, " site(s) imaged but barcode ", plate,
                                       " is not in barcode_platemap.csv")});
  }
  return wells;
}

// Population mean/std per gene over the given expression rows.
void GeneStats(const Manifest& m, const std::set<int64_t>& rows, std::vector<double>* mean,
               std::vector<double>* sd) {
  const size_t g = m.gene_ids.size();
  mean->assign(g, 0.0);
  sd->assign(g, 1.0);
  if (rows.empty()) return;
  std::vector<double> sum(g, 0.0), sum2(g, 0.0);
  for (int64_t r : rows) {
    const float* v = m.expression.data() + r * g;
    for (size_t k = 0; k < g; ++k) sum[k] += v[k];
  }
  const double n = static_cast<double>(rows.size());
  for (size_t k = 0; k < g; ++k) (*mean)[k] = sum[k] / n;
  for (int64_t r : rows) {  // second pass: no cancellation
    const float* v = m.expression.data() + r * g;
    for (size_t k = 0; k < g; ++k) sum2[k] += (v[k] - (*mean)[k]) * (v[k] - (*mean)[k]);
  }
  for (size_t k = 0; k < g; ++k) (*sd)[k] = std::sqrt(sum2[k] / n);
}

std::string AbsoluteDir(const std::string& dir) {
  fs::path p = fs::absolute(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "a/b/" → "a/b"
  return p.string();
}

absl::Status Publish(const std::string& tmp, const std::string& out_dir) {
  CF_RETURN_IF_ERROR(FsyncDirectory(tmp));
  std::error_code ec;
  std::string old;
  if (fs::exists(out_dir, ec)) {
    old = absl::StrCat(out_dir, ".old-", ::getpid());
    fs::remove_all(old, ec);
    fs::rename(out_dir, old, ec);
    if (ec)
      return absl::InternalError(
          absl::StrCat("cannot move the existing '", out_dir, "' aside: ", ec.message()));
  }
  fs::rename(tmp, out_dir, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot rename '", tmp, "' to '", out_dir, "': ", ec.message()));
  CF_RETURN_IF_ERROR(FsyncDirectory(fs::path(out_dir).parent_path().string()));
  if (!old.empty()) fs::remove_all(old, ec);
  return absl::OkStatus();
}

}  // namespace

absl::Status PrepareOptions::Validate() const {
  if (images_dir.empty() || platemaps_dir.empty() || l1000_path.empty() || out_dir.empty()) {
    return absl::InvalidArgumentError(
        "prepare: images_dir, platemaps_dir, l1000_path and out_dir are all required");
  }
  if (test_perturbations < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("prepare: test_perturbations must be >= 0, got ", test_perturbations));
  }
  if (!(val_fraction >= 0.0 && val_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("prepare: val_fraction must be in [0, 1), got ", val_fraction));
  }
  if (split_level != "perturbation" && split_level != "pair" &&
      split_level != "compound-scaffold") {
    return absl::InvalidArgumentError(
        absl::StrCat("prepare: split_level must be perturbation, pair or compound-scaffold, got '",
                     split_level, "'"));
  }
  if (split_level == "compound-scaffold" && !parse_structure) {
    return absl::InvalidArgumentError(
        "prepare: split_level compound-scaffold needs a structure parser (cellflux-train prepare "
        "has RDKit's)");
  }
  return absl::OkStatus();
}

std::string PrepareSummary::ToJson() const {
  nlohmann::json j;
  j["plates"] = plates;
  j["wells"] = wells;
  j["sites"] = sites;
  j["cp_control_wells"] = cp_control_wells;
  j["l1000_rows_read"] = l1000_rows_read;
  j["l1000_rows_kept"] = l1000_rows_kept;
  j["l1000_control_rows"] = l1000_control_rows;
  j["l1000_plates"] = l1000_plates;
  j["matched_treatments"] = matched_treatments;
  j["perturbations"] = {{"total", perturbations},
                        {"train", train_perturbations},
                        {"val", val_perturbations},
                        {"test", test_perturbations}};
  j["pairs"] = {{"total", pairs}, {"train", train_pairs}, {"val", val_pairs}, {"test", test_pairs}};
  j["genes"] = genes;
  j["dropped"] = dropped;
  j["structures"] = {{"parsed", structures_parsed},
                     {"without", without_structure.size()},
                     {"without_structure", without_structure},
                     {"scaffold_groups", scaffold_groups}};
  return j.dump(2);
}

std::string PrepareSummary::ToText() const {
  std::string out = absl::StrCat(
      "Cell Painting: ", plates, " plates, ", wells, " wells (", cp_control_wells, " DMSO), ",
      sites, " sites\n", "L1000: ", l1000_rows_read, " rows read, ", l1000_rows_kept, " kept (",
      l1000_control_rows, " DMSO) on ", l1000_plates, " plates, ", genes, " genes\n",
      "matched treatments: ", matched_treatments, "; perturbations: ", perturbations, " (train ",
      train_perturbations, ", val ", val_perturbations, ", test ", test_perturbations, ")\n",
      "pairs: ", pairs, " (train ", train_pairs, ", val ", val_pairs, ", test ", test_pairs, ")\n");
  for (const auto& [kind, n] : dropped) absl::StrAppend(&out, "dropped ", kind, ": ", n, "\n");
  if (structures_parsed > 0 || !without_structure.empty()) {
    absl::StrAppend(&out, "structures: ", structures_parsed, " parsed, ", without_structure.size(),
                    " without a parsable structure");
    if (scaffold_groups > 0) absl::StrAppend(&out, "; ", scaffold_groups, " scaffold groups");
    absl::StrAppend(&out, "\n");
    int shown = 0;
    for (const auto& [id, why] : without_structure) {
      if (++shown > 20) {
        absl::StrAppend(&out, "  ... (all in summary.json)\n");
        break;
      }
      absl::StrAppend(&out, "  ", id, ": ", why, "\n");
    }
  }
  return out;
}

absl::StatusOr<PrepareSummary> PrepareDataset(const PrepareOptions& o) {
  CF_RETURN_IF_ERROR(o.Validate());
  auto report = [&](const char* stage, int64_t done, int64_t total) {
    if (o.progress) o.progress({stage, done, total});
  };
  PrepareSummary s;
  Manifest m;
  m.images_dir = AbsoluteDir(o.images_dir);

  report("platemaps", 0, -1);
  CF_ASSIGN_OR_RETURN(PlateMaps maps, ReadPlateMaps(o.platemaps_dir));
  report("scan", 0, -1);
  CF_ASSIGN_OR_RETURN(ScanResult scan, ScanImages(m.images_dir));
  report("scan", scan.files_matched, scan.files_matched);
  m.dropped = scan.dropped;
  std::vector<CpWell> wells = BuildWells(scan, maps, &m);
  std::set<std::string> cp_keys, cp_plates;
  for (const CpWell& w : wells) {
    cp_plates.insert(w.plate);
    if (w.is_control())
      ++s.cp_control_wells;
    else
      cp_keys.insert(w.key);
  }
  s.plates = static_cast<int64_t>(cp_plates.size());
  s.wells = static_cast<int64_t>(wells.size());
  s.sites = static_cast<int64_t>(m.sites.size());

  // Stream the L1000 table once, keeping DMSO rows and rows of imaged treatments.
  report("l1000", 0, -1);
  CF_ASSIGN_OR_RETURN(auto reader, io::L1000CsvReader::Open(o.l1000_path));
  const io::L1000Header& h = reader->header();
  const int i_pert = h.MetaIndex("pert_id"), i_plate = h.MetaIndex("det_plate"),
            i_key = h.MetaIndex("pert_sample_dose"), i_name = h.MetaIndex("CPD_NAME"),
            i_smiles = h.MetaIndex("CPD_SMILES");
  m.gene_ids = h.gene_ids;
  std::map<std::string, std::string> symbols;
  for (const LandmarkGene& g : LandmarkGenes()) symbols[g.probe_id] = g.symbol;
  for (const std::string& id : m.gene_ids)
    m.gene_symbols.push_back(symbols.count(id) ? symbols[id] : "");
  std::vector<L1000Record> records;
  std::map<std::string, KeyInfo> key_info;
  std::set<std::string> l1000_only;
  io::L1000Row row;
  while (true) {
    CF_ASSIGN_OR_RETURN(bool more, reader->Next(&row));
    if (!more) break;
    if (++s.l1000_rows_read % kProgressEvery == 0) report("l1000", s.l1000_rows_read, -1);
    const std::string& key = row.meta[i_key];
    const std::string& plate = row.meta[i_plate];
    const bool control = absl::EqualsIgnoreCase(row.meta[i_pert], "DMSO");
    if (!control && !cp_keys.count(key)) {
      l1000_only.insert(key);
      continue;
    }
    const std::string item =
        absl::StrCat("L1000 row ", row.row_index, " (line ", row.line, ", ", key, ")");
    if (!row.missing.empty()) {
      m.dropped.push_back(
          {"l1000_missing_values", item,
           absl::StrCat(row.missing.size(), " empty/NaN expression cell(s), first in column '",
                        m.gene_ids[row.missing[0]], "'")});
      continue;
    }
    if (plate.empty()) {
      m.dropped.push_back(
          {"l1000_no_plate", item, "empty det_plate: the row's DMSO controls cannot be found"});
      continue;
    }
    records.push_back({plate, key, row.meta[i_pert], control});
    m.expression_rows.push_back({row.row_index, plate, row.meta[i_pert], key, control});
    m.expression.insert(m.expression.end(), row.values.begin(), row.values.end());
    if (!control && !key_info.count(key)) {
      key_info[key] = {i_smiles >= 0 ? row.meta[i_smiles] : "",
                       i_name >= 0 ? row.meta[i_name] : ""};
    }
  }
  report("l1000", s.l1000_rows_read, s.l1000_rows_read);
  for (const std::string& key : l1000_only) {
    m.dropped.push_back({"l1000_only_treatment", absl::StrCat("treatment ", key),
                         "in the L1000 table but on no imaged Cell Painting well"});
  }
  s.l1000_rows_kept = static_cast<int64_t>(records.size());

  report("pairing", 0, -1);
  PairingResult pr = PairTreatments(wells, records, o.seed);
  m.dropped.insert(m.dropped.end(), pr.dropped.begin(), pr.dropped.end());
  s.matched_treatments = pr.matched_keys;
  std::vector<std::string> perts;
  for (const Pair& p : pr.pairs) perts.push_back(p.perturbation);
  // Structures: the L1000 CSV's CPD_SMILES, else the compound metadata CSV's.
  std::map<std::string, std::string> smiles_of;  // perturbation → SMILES
  for (const Pair& p : pr.pairs) {
    auto info = key_info.find(p.key);
    if (info != key_info.end() && !info->second.smiles.empty()) {
      smiles_of.emplace(p.perturbation, info->second.smiles);
    }
  }
  if (!o.compounds_csv.empty()) {
    CF_ASSIGN_OR_RETURN(io::CsvTable t, io::ReadCsvTable(o.compounds_csv));
    int id_col = t.Column("broad_sample");
    if (id_col < 0) id_col = t.Column("pert_id");
    int smiles_col = t.Column("CPD_SMILES");
    if (smiles_col < 0) smiles_col = t.Column("smiles");
    if (id_col < 0 || smiles_col < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(o.compounds_csv,
                       ": needs an id column (broad_sample or pert_id) and a structure column "
                       "(CPD_SMILES or smiles); header: ",
                       absl::StrJoin(t.header, ",")));
    }
    for (const auto& row : t.rows) {
      if (!row[smiles_col].empty()) smiles_of.emplace(row[id_col], row[smiles_col]);
    }
    for (const Pair& p : pr.pairs) {  // the vocabulary's smiles column too
      KeyInfo& info = key_info[p.key];
      auto it = smiles_of.find(p.perturbation);
      if (info.smiles.empty() && it != smiles_of.end()) info.smiles = it->second;
    }
  }
  for (const std::string& pert : perts) {
    auto it = smiles_of.find(pert);
    if (it != smiles_of.end()) m.structures[pert] = it->second;
  }
  std::map<std::string, std::string> scaffold_of;  // perturbation → scaffold group
  if (o.parse_structure) {
    std::set<std::string> distinct(perts.begin(), perts.end());
    std::set<std::string> groups;
    for (const std::string& pert : distinct) {
      auto it = smiles_of.find(pert);
      if (it == smiles_of.end()) {
        s.without_structure[pert] = "no SMILES";
        continue;
      }
      absl::StatusOr<PrepareOptions::StructureInfo> st = o.parse_structure(it->second);
      if (!st.ok()) {
        s.without_structure[pert] = std::string(st.status().message());
        continue;
      }
      ++s.structures_parsed;
      // Acyclic compounds have no scaffold: each is its own group (by canonical SMILES).
      scaffold_of[pert] = st->scaffold.empty() ? "acyclic:" + st->canonical_smiles : st->scaffold;
      groups.insert(scaffold_of[pert]);
    }
    if (o.split_level == "compound-scaffold") {
      s.scaffold_groups = static_cast<int64_t>(groups.size() + s.without_structure.size());
    }
  }
  m.split = o.split_level == "compound-scaffold"
                ? SplitPerturbationGroups(perts, scaffold_of, o.test_perturbations, o.val_fraction,
                                          o.seed)
                : SplitPerturbations(perts, o.test_perturbations, o.val_fraction, o.seed);

  // Pair-level split: one held-out pair per test/val perturbation, chosen by the seed.
  std::map<size_t, Split> held_out_pair;
  if (o.split_level == "pair") {
    std::map<std::string, std::vector<size_t>> by_pert;
    for (size_t i = 0; i < pr.pairs.size(); ++i) by_pert[pr.pairs[i].perturbation].push_back(i);
    for (const auto& [pert, idx] : by_pert) {
      Split sp = m.split.at(pert);
      if (sp == Split::kTrain) continue;
      uint64_t h =
          0xcbf29ce484222325ULL ^ (o.seed * 0x9E3779B97F4A7C15ULL);  // FNV-1a: stable everywhere
      for (unsigned char ch : pert) h = (h ^ ch) * 0x100000001b3ULL;
      held_out_pair[idx[h % idx.size()]] = sp;
    }
  }
  std::set<int64_t> stat_rows;
  std::map<std::string, std::map<std::string, int64_t>> train_doses;  // perturbation → dose → pairs
  for (size_t pair_index = 0; pair_index < pr.pairs.size(); ++pair_index) {
    const Pair& p = pr.pairs[pair_index];
    const CpWell& w = wells[p.cp_well];
    const CpWell& c = wells[p.control_cp_well];
    ManifestPair mp;
    mp.pair_id = static_cast<int64_t>(m.pairs.size());
    mp.perturbation = p.perturbation;
    mp.key = p.key;
    mp.dose = p.key.substr(p.perturbation.size() + 1);
    mp.split = m.split.at(p.perturbation);
    if (o.split_level == "pair") {
      auto h = held_out_pair.find(pair_index);
      mp.split = h == held_out_pair.end() ? Split::kTrain : h->second;
    }
    mp.cp_plate = w.plate;
    mp.well = w.well;
    mp.site_ids = w.site_ids;
    mp.l1000_plate = records[p.l1000_row].plate;
    mp.l1000_row = p.l1000_row;
    mp.control_well = c.well;
    mp.control_site_ids = c.site_ids;
    mp.control_l1000_row = p.control_l1000_row;
    if (mp.split == Split::kTrain) {
      stat_rows.insert(mp.l1000_row);
      ++train_doses[mp.perturbation][mp.dose];
      ++s.train_pairs;
    } else if (mp.split == Split::kVal) {
      ++s.val_pairs;
    } else {
      ++s.test_pairs;
    }
    m.pairs.push_back(std::move(mp));
  }
  for (const CpWell& w : wells) {
    if (w.is_control()) m.cp_controls.push_back({w.plate, w.well, w.site_ids});
  }
  for (const auto& [plate, rows] : pr.l1000_controls) {
    for (int r : rows) {
      m.l1000_controls[plate].push_back(r);
      stat_rows.insert(r);
      ++s.l1000_control_rows;
    }
  }
  GeneStats(m, stat_rows, &m.gene_mean, &m.gene_std);

  for (const auto& [pert, doses] : train_doses) {  // sorted by id
    auto best = std::max_element(doses.begin(), doses.end(), [](const auto& a, const auto& b) {
      return a.second < b.second;
    });  // first max
    const KeyInfo& info = key_info[absl::StrCat(pert, "_", best->first)];
    m.vocabulary.push_back({pert, best->first, info.smiles, info.name});
  }
  std::set<std::string> l1000_plates;
  for (const L1000Record& r : records) l1000_plates.insert(r.plate);
  s.l1000_plates = static_cast<int64_t>(l1000_plates.size());
  s.perturbations = static_cast<int64_t>(m.split.size());
  for (const auto& [pert, split] : m.split) {
    if (split == Split::kTrain)
      ++s.train_perturbations;
    else if (split == Split::kVal)
      ++s.val_perturbations;
    else
      ++s.test_perturbations;
  }
  s.pairs = static_cast<int64_t>(m.pairs.size());
  s.genes = static_cast<int64_t>(m.gene_ids.size());
  for (const DroppedItem& d : m.dropped) ++s.dropped[d.kind];

  report("write", 0, 1);
  const std::string out_dir = AbsoluteDir(o.out_dir);
  const std::string tmp = absl::StrCat(out_dir, ".tmp-", ::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  CF_RETURN_IF_ERROR(MakeDirs(tmp));
  absl::Status written = WriteManifestFiles(tmp, m);
  if (written.ok()) {
    nlohmann::json j = nlohmann::json::parse(s.ToJson());
    j["images_dir"] = m.images_dir;
    j["options"] = {{"l1000_path", o.l1000_path},
                    {"platemaps_dir", o.platemaps_dir},
                    {"test_perturbations_requested", o.test_perturbations},
                    {"split_level", o.split_level},
                    {"compounds_csv", o.compounds_csv},
                    {"val_fraction", o.val_fraction},
                    {"seed", o.seed}};
    written = WriteFileAtomic(tmp + "/summary.json", j.dump(2) + "\n");
  }
  if (written.ok()) written = Publish(tmp, out_dir);
  if (!written.ok()) {
    fs::remove_all(tmp, ec);
    return written;
  }
  report("write", 1, 1);
  return s;
}

}  // namespace cellflux::data
