#include "common/data/manifest.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/io/csv.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "expression.f32 is written in host order");

namespace cellflux::data {
namespace {

namespace fs = std::filesystem;

std::string JoinIds(const std::vector<int>& ids) { return absl::StrJoin(ids, ";"); }

std::string Num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

absl::Status WriteTable(const std::string& path, char delim, const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  CF_ASSIGN_OR_RETURN(auto w, io::CsvWriter::Open(path, delim));
  CF_RETURN_IF_ERROR(w->Write(header));
  for (const auto& r : rows) CF_RETURN_IF_ERROR(w->Write(r));
  return w->Close();
}

// Reads `file` in `dir` and checks the header is exactly `header`.
absl::StatusOr<io::CsvTable> ReadTable(const std::string& dir, const std::string& file, char delim,
                                       const std::vector<std::string>& header) {
  const std::string path = dir + "/" + file;
  CF_ASSIGN_OR_RETURN(io::CsvTable t, io::ReadCsvTable(path, delim));
  if (t.header != header) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":1: expected header '", absl::StrJoin(header, std::string(1, delim)),
                     "', found '", absl::StrJoin(t.header, std::string(1, delim)), "'"));
  }
  return t;
}

// Parses an integer field in [lo, hi).
absl::StatusOr<int64_t> Int(const io::CsvTable& t, size_t i, int col, const std::string& file,
                            int64_t lo, int64_t hi) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(t.rows[i][col], &v) || v < lo || v >= hi) {
    return absl::InvalidArgumentError(absl::StrCat(file, ":", t.lines[i], ": column ",
                                                   t.header[col], ": expected an integer in [", lo,
                                                   ", ", hi, "), found '", t.rows[i][col], "'"));
  }
  return v;
}

absl::StatusOr<std::vector<int>> Ids(const io::CsvTable& t, size_t i, int col,
                                     const std::string& file, int64_t n) {
  std::vector<int> out;
  if (t.rows[i][col].empty()) return out;
  for (absl::string_view part : absl::StrSplit(t.rows[i][col], ';')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 0 || v >= n) {
      return absl::InvalidArgumentError(absl::StrCat(file, ":", t.lines[i], ": column ",
                                                     t.header[col], ": site id '", part,
                                                     "' not in [0, ", n, ")"));
    }
    out.push_back(static_cast<int>(v));
  }
  return out;
}

absl::StatusOr<Split> ParseSplit(const io::CsvTable& t, size_t i, int col,
                                 const std::string& file) {
  const std::string& s = t.rows[i][col];
  if (s == "train") return Split::kTrain;
  if (s == "val") return Split::kVal;
  if (s == "test") return Split::kTest;
  return absl::InvalidArgumentError(absl::StrCat(
      file, ":", t.lines[i], ": column split: expected train, val or test, found '", s, "'"));
}

const std::vector<std::string> kSitesHeader = {"site_id", "plate", "well", "site", "DNA",
                                               "RNA",     "ER",    "AGP",  "Mito"};
const std::vector<std::string> kPairsHeader = {"pair_id",
                                               "perturbation",
                                               "dose",
                                               "key",
                                               "split",
                                               "cp_plate",
                                               "well",
                                               "site_ids",
                                               "l1000_plate",
                                               "l1000_row",
                                               "control_well",
                                               "control_site_ids",
                                               "control_l1000_row"};
const std::vector<std::string> kCpControlsHeader = {"plate", "well", "site_ids"};
const std::vector<std::string> kL1000ControlsHeader = {"l1000_plate", "l1000_row"};
const std::vector<std::string> kExprRowsHeader = {"l1000_row", "source_row", "det_plate",
                                                  "pert_id",   "key",        "is_control"};
const std::vector<std::string> kGenesHeader = {"index", "probe_id", "symbol"};
const std::vector<std::string> kGeneStatsHeader = {"probe_id", "mean", "std"};
const std::vector<std::string> kVocabHeader = {"row", "perturbation_id", "dose", "smiles", "name"};
const std::vector<std::string> kSplitHeader = {"perturbation_id", "split"};
const std::vector<std::string> kStructuresHeader = {"perturbation_id", "smiles"};
const std::vector<std::string> kDroppedHeader = {"kind", "item", "reason"};

}  // namespace

int Manifest::VocabRow(const std::string& perturbation_id) const {
  for (size_t i = 0; i < vocabulary.size(); ++i) {
    if (vocabulary[i].perturbation_id == perturbation_id) return static_cast<int>(i);
  }
  return -1;
}

absl::Status WriteManifestFiles(const std::string& dir, const Manifest& m) {
  std::vector<std::vector<std::string>> rows;
  const fs::path root(m.images_dir);
  for (size_t i = 0; i < m.sites.size(); ++i) {
    const SiteFiles& s = m.sites[i];
    std::vector<std::string> r = {absl::StrCat(i), s.plate, s.well, absl::StrCat(s.site)};
    for (const std::string& p : s.paths) {
      std::string rel = fs::path(p).lexically_relative(root).generic_string();
      if (rel.empty() || rel.rfind("..", 0) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("site file '", p, "' is not under images_dir '", m.images_dir, "'"));
      }
      r.push_back(rel);
    }
    rows.push_back(std::move(r));
  }
  CF_RETURN_IF_ERROR(WriteTable(dir + "/sites.csv", ',', kSitesHeader, rows));

  rows.clear();
  for (const ManifestPair& p : m.pairs) {
    rows.push_back({absl::StrCat(p.pair_id), p.perturbation, p.dose, p.key, SplitName(p.split),
                    p.cp_plate, p.well, JoinIds(p.site_ids), p.l1000_plate,
                    absl::StrCat(p.l1000_row), p.control_well, JoinIds(p.control_site_ids),
                    absl::StrCat(p.control_l1000_row)});
  }
  CF_RETURN_IF_ERROR(WriteTable(dir + "/manifest.csv", ',', kPairsHeader, rows));

  rows.clear();
  for (const ControlWell& c : m.cp_controls) rows.push_back({c.plate, c.well, JoinIds(c.site_ids)});
  CF_RETURN_IF_ERROR(WriteTable(dir + "/controls_cp.csv", ',', kCpControlsHeader, rows));

  rows.clear();
  for (const auto& [plate, ids] : m.l1000_controls) {
    for (int64_t r : ids) rows.push_back({plate, absl::StrCat(r)});
  }
  CF_RETURN_IF_ERROR(WriteTable(dir + "/controls_l1000.csv", ',', kL1000ControlsHeader, rows));

  rows.clear();
  for (size_t i = 0; i < m.expression_rows.size(); ++i) {
    const ExpressionRow& e = m.expression_rows[i];
    rows.push_back({absl::StrCat(i), absl::StrCat(e.source_row), e.plate, e.pert_id, e.key,
                    e.is_control ? "1" : "0"});
  }
  CF_RETURN_IF_ERROR(WriteTable(dir + "/expression_rows.csv", ',', kExprRowsHeader, rows));

  const size_t n_genes = m.gene_ids.size();
  if (m.expression.size() != m.expression_rows.size() * n_genes) {
    return absl::InvalidArgumentError(absl::StrCat("expression has ", m.expression.size(),
                                                   " values, expected rows ",
                                                   m.expression_rows.size(), " x genes ", n_genes));
  }
  {
    const std::string path = dir + "/expression.f32";
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) return absl::InternalError(absl::StrCat("cannot create '", path, "'"));
    size_t written = std::fwrite(m.expression.data(), sizeof(float), m.expression.size(), f);
    bool ok = written == m.expression.size() && std::fflush(f) == 0;
    ok = std::fclose(f) == 0 && ok;
    if (!ok) return absl::InternalError(absl::StrCat("cannot write '", path, "'"));
  }

  rows.clear();
  for (size_t g = 0; g < n_genes; ++g) {
    rows.push_back(
        {absl::StrCat(g), m.gene_ids[g], g < m.gene_symbols.size() ? m.gene_symbols[g] : ""});
  }
  CF_RETURN_IF_ERROR(WriteTable(dir + "/genes.tsv", '\t', kGenesHeader, rows));
  rows.clear();
  for (size_t g = 0; g < n_genes; ++g)
    rows.push_back({m.gene_ids[g], Num(m.gene_mean[g]), Num(m.gene_std[g])});
  CF_RETURN_IF_ERROR(WriteTable(dir + "/gene_stats.csv", ',', kGeneStatsHeader, rows));

  rows.clear();
  for (size_t i = 0; i < m.vocabulary.size(); ++i) {
    const VocabEntry& v = m.vocabulary[i];
    rows.push_back({absl::StrCat(i), v.perturbation_id, v.dose, v.smiles, v.name});
  }
  CF_RETURN_IF_ERROR(WriteTable(dir + "/perturbations.tsv", '\t', kVocabHeader, rows));
  rows.clear();
  for (const auto& [id, split] : m.split) rows.push_back({id, SplitName(split)});
  CF_RETURN_IF_ERROR(WriteTable(dir + "/split.csv", ',', kSplitHeader, rows));
  rows.clear();
  for (const auto& [id, smiles] : m.structures) rows.push_back({id, smiles});
  CF_RETURN_IF_ERROR(WriteTable(dir + "/structures.tsv", '\t', kStructuresHeader, rows));
  rows.clear();
  for (const DroppedItem& d : m.dropped) rows.push_back({d.kind, d.item, d.reason});
  return WriteTable(dir + "/dropped.csv", ',', kDroppedHeader, rows);
}

absl::StatusOr<Manifest> LoadManifest(const std::string& dir, bool load_expression) {
  Manifest m;
  CF_ASSIGN_OR_RETURN(m.summary_json, ReadFile(dir + "/summary.json"));
  {
    nlohmann::json j = nlohmann::json::parse(m.summary_json, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("images_dir") ||
        !j["images_dir"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, "/summary.json: not a JSON object with a string 'images_dir'"));
    }
    m.images_dir = j["images_dir"].get<std::string>();
  }
  const std::string f_sites = dir + "/sites.csv";
  CF_ASSIGN_OR_RETURN(io::CsvTable t, ReadTable(dir, "sites.csv", ',', kSitesHeader));
  for (size_t i = 0; i < t.rows.size(); ++i) {
    CF_ASSIGN_OR_RETURN(int64_t id, Int(t, i, 0, f_sites, i, i + 1));  // ids are 0..n-1 in order
    CF_ASSIGN_OR_RETURN(int64_t site, Int(t, i, 3, f_sites, 1, 1000));
    SiteFiles s{t.rows[i][1], t.rows[i][2], static_cast<int>(site), {}};
    for (int c = 0; c < kNumChannels; ++c)
      s.paths[c] = (fs::path(m.images_dir) / t.rows[i][4 + c]).string();
    (void)id;
    m.sites.push_back(std::move(s));
  }
  const int64_t n_sites = static_cast<int64_t>(m.sites.size());

  const std::string f_rows = dir + "/expression_rows.csv";
  CF_ASSIGN_OR_RETURN(t, ReadTable(dir, "expression_rows.csv", ',', kExprRowsHeader));
  for (size_t i = 0; i < t.rows.size(); ++i) {
    CF_RETURN_IF_ERROR(Int(t, i, 0, f_rows, i, i + 1).status());
    CF_ASSIGN_OR_RETURN(int64_t src, Int(t, i, 1, f_rows, 0, INT64_MAX));
    CF_ASSIGN_OR_RETURN(int64_t ctl, Int(t, i, 5, f_rows, 0, 2));
    m.expression_rows.push_back({src, t.rows[i][2], t.rows[i][3], t.rows[i][4], ctl == 1});
  }
  const int64_t n_rows = static_cast<int64_t>(m.expression_rows.size());

  const std::string f_pairs = dir + "/manifest.csv";
  CF_ASSIGN_OR_RETURN(t, ReadTable(dir, "manifest.csv", ',', kPairsHeader));
  for (size_t i = 0; i < t.rows.size(); ++i) {
    const auto& r = t.rows[i];
    ManifestPair p;
    CF_ASSIGN_OR_RETURN(p.pair_id, Int(t, i, 0, f_pairs, 0, INT64_MAX));
    p.perturbation = r[1];
    p.dose = r[2];
    p.key = r[3];
    CF_ASSIGN_OR_RETURN(p.split, ParseSplit(t, i, 4, f_pairs));
    p.cp_plate = r[5];
    p.well = r[6];
    CF_ASSIGN_OR_RETURN(p.site_ids, Ids(t, i, 7, f_pairs, n_sites));
    p.l1000_plate = r[8];
    CF_ASSIGN_OR_RETURN(p.l1000_row, Int(t, i, 9, f_pairs, 0, n_rows));
    p.control_well = r[10];
    CF_ASSIGN_OR_RETURN(p.control_site_ids, Ids(t, i, 11, f_pairs, n_sites));
    CF_ASSIGN_OR_RETURN(p.control_l1000_row, Int(t, i, 12, f_pairs, 0, n_rows));
    if (m.expression_rows[p.control_l1000_row].plate != p.l1000_plate) {
      return absl::InvalidArgumentError(
          absl::StrCat(f_pairs, ":", t.lines[i], ": control_l1000_row ", p.control_l1000_row,
                       " is on L1000 plate ", m.expression_rows[p.control_l1000_row].plate,
                       ", expected ", p.l1000_plate));
    }
    m.pairs.push_back(std::move(p));
  }

  const std::string f_cpc = dir + "/controls_cp.csv";
  CF_ASSIGN_OR_RETURN(t, ReadTable(dir, "controls_cp.csv", ',', kCpControlsHeader));
  for (size_t i = 0; i < t.rows.size(); ++i) {
    CF_ASSIGN_OR_RETURN(auto ids, Ids(t, i, 2, f_cpc, n_sites));
    m.cp_controls.push_back({t.rows[i][0], t.rows[i][1], std::move(ids)});
  }
  const std::string f_lc = dir + "/controls_l1000.csv";
  CF_ASSIGN_OR_RETURN(t, ReadTable(dir, "controls_l1000.csv", ',', kL1000ControlsHeader));
  for (size_t i = 0; i < t.rows.size(); ++i) {
    CF_ASSIGN_OR_RETURN(int64_t row, Int(t, i, 1, f_lc, 0, n_rows));
    m.l1000_controls[t.rows[i][0]].push_back(row);
  }

  CF_ASSIGN_OR_RETURN(t, ReadTable(dir, "genes.tsv", '\t', kGenesHeader));
  for (const auto& r : t.rows) {
    m.gene_ids.push_back(r[1]);
    m.gene_symbols.push_back(r[2]);
  }
  const std::string f_stats = dir + "/gene_stats.csv";
  CF_ASSIGN_OR_RETURN(t, ReadTable(dir, "gene_stats.csv", ',', kGeneStatsHeader));
  if (t.rows.size() != m.gene_ids.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        f_stats, ": ", t.rows.size(), " rows, expected one per gene (", m.gene_ids.size(), ")"));
  }
  for (size_t i = 0; i < t.rows.size(); ++i) {
    double mean = 0, sd = 0;
    if (t.rows[i][0] != m.gene_ids[i] || !absl::SimpleAtod(t.rows[i][1], &mean) ||
        !absl::SimpleAtod(t.rows[i][2], &sd)) {
      return absl::InvalidArgumentError(absl::StrCat(f_stats, ":", t.lines[i], ": expected gene '",
                                                     m.gene_ids[i], "' with numeric mean and std"));
    }
    m.gene_mean.push_back(mean);
    m.gene_std.push_back(sd);
  }
  CF_ASSIGN_OR_RETURN(t, ReadTable(dir, "perturbations.tsv", '\t', kVocabHeader));
  for (const auto& r : t.rows) m.vocabulary.push_back({r[1], r[2], r[3], r[4]});
  const std::string f_split = dir + "/split.csv";
  CF_ASSIGN_OR_RETURN(t, ReadTable(dir, "split.csv", ',', kSplitHeader));
  for (size_t i = 0; i < t.rows.size(); ++i) {
    CF_ASSIGN_OR_RETURN(Split s, ParseSplit(t, i, 1, f_split));
    m.split[t.rows[i][0]] = s;
  }
  CF_ASSIGN_OR_RETURN(t, ReadTable(dir, "dropped.csv", ',', kDroppedHeader));
  for (const auto& r : t.rows) m.dropped.push_back({r[0], r[1], r[2]});
  if (fs::exists(dir + "/structures.tsv")) {
    CF_ASSIGN_OR_RETURN(t, ReadTable(dir, "structures.tsv", '\t', kStructuresHeader));
    for (const auto& r : t.rows) m.structures[r[0]] = r[1];
  }

  const std::string f_expr = dir + "/expression.f32";
  std::error_code ec;
  const uint64_t want = static_cast<uint64_t>(n_rows) * m.gene_ids.size() * sizeof(float);
  const uint64_t have = fs::file_size(f_expr, ec);
  if (ec || have != want) {
    return absl::InvalidArgumentError(
        absl::StrCat(f_expr, ": ", ec ? ec.message() : absl::StrCat(have, " bytes"), "; expected ",
                     want, " bytes (rows ", n_rows, " x genes ", m.gene_ids.size(), " x 4)"));
  }
  if (load_expression) {
    m.expression.resize(static_cast<size_t>(n_rows) * m.gene_ids.size());
    FILE* f = std::fopen(f_expr.c_str(), "rb");
    if (f == nullptr) return absl::NotFoundError(absl::StrCat("cannot open '", f_expr, "'"));
    size_t got = std::fread(m.expression.data(), sizeof(float), m.expression.size(), f);
    std::fclose(f);
    if (got != m.expression.size())
      return absl::DataLossError(absl::StrCat(f_expr, ": short read"));
  }
  return m;
}

}  // namespace cellflux::data
