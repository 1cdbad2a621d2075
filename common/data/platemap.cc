#include "common/data/platemap.h"

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/io/csv.h"
#include "common/util/status_macros.h"

namespace cellflux::data {
namespace {

absl::StatusOr<int> RequireColumn(const io::CsvTable& table, const std::string& path,
                                  absl::string_view name) {
  int c = table.Column(name);
  if (c < 0)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":1: required column '", name, "' missing"));
  return c;
}

absl::StatusOr<std::map<std::string, WellTreatment>> ReadOneMap(const std::string& path) {
  CF_ASSIGN_OR_RETURN(io::CsvTable table, io::ReadCsvTable(path, '\t'));
  CF_ASSIGN_OR_RETURN(int c_well, RequireColumn(table, path, "well_position"));
  CF_ASSIGN_OR_RETURN(int c_sample, RequireColumn(table, path, "broad_sample"));
  CF_ASSIGN_OR_RETURN(int c_dose, RequireColumn(table, path, "mmoles_per_liter"));
  int c_solvent = table.Column("solvent");
  std::map<std::string, WellTreatment> wells;
  for (size_t i = 0; i < table.rows.size(); ++i) {
    const auto& row = table.rows[i];
    const int64_t line = table.lines[i];
    std::string well;
    if (!NormalizeWell(row[c_well], &well)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line, ": column well_position: expected a well A01..P24, found '",
                       row[c_well], "'"));
    }
    WellTreatment t;
    t.broad_sample = std::string(absl::StripAsciiWhitespace(row[c_sample]));
    if (absl::EqualsIgnoreCase(t.broad_sample, "DMSO")) t.broad_sample.clear();
    if (c_solvent >= 0) t.solvent = row[c_solvent];
    absl::string_view dose = absl::StripAsciiWhitespace(row[c_dose]);
    if (!t.is_control() || !(dose.empty() || dose == "NA" || absl::EqualsIgnoreCase(dose, "nan"))) {
      if (!absl::SimpleAtod(dose, &t.mmoles_per_liter) || !std::isfinite(t.mmoles_per_liter) ||
          t.mmoles_per_liter < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", line, ": column mmoles_per_liter: expected a ", "non-negative number for ",
            t.is_control() ? "DMSO" : t.broad_sample, ", found '", dose, "'"));
      }
    }
    if (!wells.emplace(well, t).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line, ": well ", well, " listed twice"));
    }
  }
  return wells;
}

}  // namespace

const WellTreatment* PlateMaps::Find(const std::string& barcode, const std::string& well) const {
  auto b = barcode_to_map.find(barcode);
  if (b == barcode_to_map.end()) return nullptr;
  auto m = maps.find(b->second);
  if (m == maps.end()) return nullptr;
  auto w = m->second.find(well);
  return w == m->second.end() ? nullptr : &w->second;
}

bool NormalizeWell(absl::string_view text, std::string* well) {
  text = absl::StripAsciiWhitespace(text);
  if (text.size() < 2 || text.size() > 3) return false;
  char row = absl::ascii_toupper(text[0]);
  int col = 0;
  if (row < 'A' || row > 'P' || !absl::SimpleAtoi(text.substr(1), &col) || col < 1 || col > 24)
    return false;
  if (!absl::ascii_isdigit(text[1])) return false;
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%c%02d", row, col);
  *well = buf;
  return true;
}

std::string FormatDose(double x) {
  // "%.2f" rounds the exact binary value correctly (glibc), which is what Python's round(x, 2)
  // does; Python's repr of that value is the same digits without trailing zeros.
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.2f", x);
  std::string s = buf;
  while (s.size() > 1 && s.back() == '0') s.pop_back();
  if (s.back() == '.') s.push_back('0');
  return s;
}

std::string CpSampleKey(const WellTreatment& treatment) {
  return absl::StrCat(treatment.broad_sample, "_", FormatDose(2.0 * treatment.mmoles_per_liter));
}

absl::StatusOr<PlateMaps> ReadPlateMaps(const std::string& platemaps_dir) {
  const std::string barcode_path = platemaps_dir + "/barcode_platemap.csv";
  CF_ASSIGN_OR_RETURN(io::CsvTable table, io::ReadCsvTable(barcode_path, ','));
  CF_ASSIGN_OR_RETURN(int c_map, RequireColumn(table, barcode_path, "Plate_Map_Name"));
  CF_ASSIGN_OR_RETURN(int c_barcode, RequireColumn(table, barcode_path, "Assay_Plate_Barcode"));
  PlateMaps out;
  for (size_t i = 0; i < table.rows.size(); ++i) {
    std::string map_name(absl::StripAsciiWhitespace(table.rows[i][c_map]));
    std::string barcode(absl::StripAsciiWhitespace(table.rows[i][c_barcode]));
    if (map_name.empty() || barcode.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          barcode_path, ":", table.lines[i], ": empty Plate_Map_Name or Assay_Plate_Barcode"));
    }
    auto [it, inserted] = out.barcode_to_map.emplace(barcode, map_name);
    if (!inserted && it->second != map_name) {
      return absl::InvalidArgumentError(absl::StrCat(barcode_path, ":", table.lines[i], ": plate ",
                                                     barcode, " mapped to both '", it->second,
                                                     "' and '", map_name, "'"));
    }
    if (out.maps.count(map_name)) continue;
    const std::string map_path = absl::StrCat(platemaps_dir, "/platemap/", map_name, ".txt");
    CF_ASSIGN_OR_RETURN(auto wells, ReadOneMap(map_path));
    out.maps.emplace(map_name, std::move(wells));
  }
  return out;
}

}  // namespace cellflux::data
