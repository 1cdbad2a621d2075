#include "common/checkpoint/vocab_tsv.h"

#include <charconv>
#include <cmath>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace cellflux {
namespace {

constexpr char kPerturbationsHeader[] = "row_index\tbroad_id\tdose\tsmiles\tname";
constexpr char kGenesHeader[] = "order\tprobe_id\tsymbol";

absl::Status CheckField(const std::string& label, size_t row, absl::string_view field,
                        absl::string_view value) {
  if (value.find_first_of("\t\r\n") != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        label, ": row ", row, ", field '", field, "' contains a tab or line break: '", value, "'"));
  }
  return absl::OkStatus();
}

// Shortest decimal that parses back to the same double (std::to_chars round-trip guarantee).
std::string DoseString(double dose) {
  if (std::isnan(dose)) return "";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), dose);
  return std::string(buf, res.ptr);
}

absl::StatusOr<double> ParseDose(absl::string_view s, const std::string& where) {
  if (s.empty()) return std::numeric_limits<double>::quiet_NaN();
  double v = 0;
  auto res = std::from_chars(s.data(), s.data() + s.size(), v);
  if (res.ec != std::errc() || res.ptr != s.data() + s.size() || !std::isfinite(v)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ", field 'dose': '", s, "' is not a finite number"));
  }
  return v;
}

// Splits into lines (accepting a trailing newline and \r\n endings) and checks the header.
absl::StatusOr<std::vector<absl::string_view>> Lines(absl::string_view text,
                                                     const std::string& label,
                                                     absl::string_view header) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  for (absl::string_view& l : lines) {
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
  }
  if (lines.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": empty file, expected the header row"));
  }
  if (lines[0] != header) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": line 1: header is '", lines[0],
                                                   "', expected '", header, "' (tab-separated)"));
  }
  return lines;
}

absl::Status CheckIndex(absl::string_view s, size_t expected, const std::string& where,
                        absl::string_view field) {
  uint64_t v = 0;
  if (!absl::SimpleAtoi(s, &v) || v != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ", field '", field, "': '", s, "', expected ", expected));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> PerturbationsToTsv(const std::vector<PerturbationEntry>& rows,
                                               const std::string& label) {
  std::string out = absl::StrCat(kPerturbationsHeader, "\n");
  std::set<absl::string_view> seen;
  for (size_t i = 0; i < rows.size(); ++i) {
    const PerturbationEntry& p = rows[i];
    if (p.id.empty())
      return absl::InvalidArgumentError(absl::StrCat(label, ": row ", i, ": empty broad_id"));
    if (!seen.insert(p.id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": row ", i, ": duplicate broad_id '", p.id, "'"));
    }
    if (!std::isnan(p.dose) && !std::isfinite(p.dose)) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": row ", i, ": dose is infinite"));
    }
    if (absl::Status s = CheckField(label, i, "broad_id", p.id); !s.ok()) return s;
    if (absl::Status s = CheckField(label, i, "smiles", p.smiles); !s.ok()) return s;
    if (absl::Status s = CheckField(label, i, "name", p.name); !s.ok()) return s;
    absl::StrAppend(&out, i, "\t", p.id, "\t", DoseString(p.dose), "\t", p.smiles, "\t", p.name,
                    "\n");
  }
  return out;
}

absl::StatusOr<std::string> GenesToTsv(const std::vector<GeneEntry>& rows,
                                       const std::string& label) {
  std::string out = absl::StrCat(kGenesHeader, "\n");
  std::set<absl::string_view> seen;
  for (size_t i = 0; i < rows.size(); ++i) {
    const GeneEntry& g = rows[i];
    if (g.probe_id.empty())
      return absl::InvalidArgumentError(absl::StrCat(label, ": row ", i, ": empty probe_id"));
    if (!seen.insert(g.probe_id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": row ", i, ": duplicate probe_id '", g.probe_id, "'"));
    }
    if (absl::Status s = CheckField(label, i, "probe_id", g.probe_id); !s.ok()) return s;
    if (absl::Status s = CheckField(label, i, "symbol", g.symbol); !s.ok()) return s;
    absl::StrAppend(&out, i, "\t", g.probe_id, "\t", g.symbol, "\n");
  }
  return out;
}

absl::StatusOr<std::vector<PerturbationEntry>> ParsePerturbationsTsv(absl::string_view text,
                                                                     const std::string& label) {
  absl::StatusOr<std::vector<absl::string_view>> lines = Lines(text, label, kPerturbationsHeader);
  if (!lines.ok()) return lines.status();
  std::vector<PerturbationEntry> rows;
  std::set<std::string> seen;
  for (size_t n = 1; n < lines->size(); ++n) {
    const size_t row = n - 1;
    const std::string where = absl::StrCat(label, ": line ", n + 1, " (row ", row, ")");
    std::vector<absl::string_view> f = absl::StrSplit((*lines)[n], '\t');
    if (f.size() != 5) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", f.size(),
                                                     " fields, expected 5 "
                                                     "(row_index, broad_id, dose, smiles, name)"));
    }
    if (absl::Status s = CheckIndex(f[0], row, where, "row_index"); !s.ok()) return s;
    PerturbationEntry p;
    p.id = std::string(f[1]);
    if (p.id.empty())
      return absl::InvalidArgumentError(absl::StrCat(where, ", field 'broad_id': empty"));
    if (!seen.insert(p.id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ", field 'broad_id': duplicate id '", p.id, "'"));
    }
    absl::StatusOr<double> dose = ParseDose(f[2], where);
    if (!dose.ok()) return dose.status();
    p.dose = *dose;
    p.smiles = std::string(f[3]);
    p.name = std::string(f[4]);
    rows.push_back(std::move(p));
  }
  return rows;
}

absl::StatusOr<std::vector<GeneEntry>> ParseGenesTsv(absl::string_view text,
                                                     const std::string& label) {
  absl::StatusOr<std::vector<absl::string_view>> lines = Lines(text, label, kGenesHeader);
  if (!lines.ok()) return lines.status();
  std::vector<GeneEntry> rows;
  std::set<std::string> seen;
  for (size_t n = 1; n < lines->size(); ++n) {
    const size_t row = n - 1;
    const std::string where = absl::StrCat(label, ": line ", n + 1, " (row ", row, ")");
    std::vector<absl::string_view> f = absl::StrSplit((*lines)[n], '\t');
    if (f.size() != 3) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", f.size(), " fields, expected 3 (order, probe_id, symbol)"));
    }
    if (absl::Status s = CheckIndex(f[0], row, where, "order"); !s.ok()) return s;
    GeneEntry g{std::string(f[1]), std::string(f[2])};
    if (g.probe_id.empty())
      return absl::InvalidArgumentError(absl::StrCat(where, ", field 'probe_id': empty"));
    if (!seen.insert(g.probe_id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ", field 'probe_id': duplicate id '", g.probe_id, "'"));
    }
    rows.push_back(std::move(g));
  }
  return rows;
}

}  // namespace cellflux
