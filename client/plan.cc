#include "client/plan.h"

#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/io/csv.h"
#include "common/util/status_macros.h"

namespace cellflux::client {

std::string RowOrigin(const PlanRow& row) {
  return row.line > 0 ? absl::StrCat("plan line ", row.line) : std::string("command line");
}

std::string RowSubject(const PlanRow& row) {
  if (row.smiles.empty()) return row.perturbation_id;
  if (row.dose_um == 0) return absl::StrCat("smiles ", row.smiles);
  return absl::StrCat("smiles ", row.smiles, " at ", row.dose_um, " µM");
}
namespace {

std::string ResolveAgainst(const std::string& base_dir, const std::string& path) {
  if (path.empty() || path[0] == '/' || base_dir.empty()) return path;
  return absl::StrCat(base_dir, "/", path);
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

}  // namespace

absl::StatusOr<ControlRefSpec> ParseControlRef(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("control ref '", text, "' is not PLATE:WELL[:SITE] (e.g. 24277:a01:1)"));
  }
  ControlRefSpec ref;
  ref.plate = std::string(absl::StripAsciiWhitespace(parts[0]));
  ref.well = std::string(absl::StripAsciiWhitespace(parts[1]));
  if (parts.size() == 3 && (!absl::SimpleAtoi(parts[2], &ref.site) || ref.site < 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("control ref '", text, "': site '", parts[2], "' is not a number ≥ 0"));
  }
  return ref;
}

absl::StatusOr<Plan> ReadPlan(const std::string& path) {
  CF_ASSIGN_OR_RETURN(io::CsvTable table, io::ReadCsvTable(path));
  Plan plan;
  plan.path = path;
  plan.header = table.header;
  const int col_pert = table.Column("perturbation_id");
  const int col_ref = table.Column("control_ref");
  const int col_dir = table.Column("control_dir");
  const int col_expr = table.Column("control_expression");
  const int col_seed = table.Column("seed");
  const int col_bits = table.Column("control_bit_depth");
  const int col_smiles = table.Column("smiles");
  const int col_dose = table.Column("dose_um");
  if (col_pert < 0 && col_smiles < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no perturbation_id column and no smiles column (header: ",
                     absl::StrJoin(table.header, ","), ")"));
  }
  plan.has_smiles = col_smiles >= 0;
  if (col_ref < 0 && col_dir < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": needs a control_ref column or a control_dir column (header: ",
                     absl::StrJoin(table.header, ","), ")"));
  }
  const std::string base_dir = DirName(path);
  for (size_t i = 0; i < table.rows.size(); ++i) {
    const auto& fields = table.rows[i];
    const std::string where = absl::StrCat(path, " line ", table.lines[i]);
    PlanRow row;
    row.index = static_cast<int>(i);
    row.line = table.lines[i];
    row.fields = fields;
    if (col_pert >= 0)
      row.perturbation_id = std::string(absl::StripAsciiWhitespace(fields[col_pert]));
    if (col_smiles >= 0) row.smiles = std::string(absl::StripAsciiWhitespace(fields[col_smiles]));
    if (row.perturbation_id.empty() && row.smiles.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, col_smiles < 0 ? " column perturbation_id: empty"
                 : col_pert < 0 ? " column smiles: empty"
                                : ": perturbation_id and smiles are both empty; set one"));
    }
    if (!row.perturbation_id.empty() && !row.smiles.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": set exactly one of perturbation_id and smiles, not both"));
    }
    if (col_dose >= 0 && !absl::StripAsciiWhitespace(fields[col_dose]).empty()) {
      const std::string text(absl::StripAsciiWhitespace(fields[col_dose]));
      if (!absl::SimpleAtod(text, &row.dose_um) || !std::isfinite(row.dose_um) || row.dose_um < 0) {
        return absl::InvalidArgumentError(absl::StrCat(where, " column dose_um: '", text,
                                                       "' is not a dose in µM (a number ≥ 0)"));
      }
      if (row.dose_um != 0 && row.smiles.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, " column dose_um: a dose goes with a smiles row (perturbation ",
                         row.perturbation_id, " has its vocabulary dose)"));
      }
    }
    const std::string ref = col_ref >= 0 ? fields[col_ref] : "";
    const std::string dir = col_dir >= 0 ? fields[col_dir] : "";
    if (ref.empty() == dir.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": set exactly one of control_ref and control_dir (got ",
                       ref.empty() ? "neither" : "both", ")"));
    }
    if (!ref.empty()) {
      auto parsed = ParseControlRef(ref);
      if (!parsed.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, " column control_ref: ", parsed.status().message()));
      }
      row.control_ref = *std::move(parsed);
    } else {
      row.control_dir = ResolveAgainst(base_dir, dir);
      if (col_expr >= 0) row.control_expression = ResolveAgainst(base_dir, fields[col_expr]);
    }
    if (col_seed >= 0 && !fields[col_seed].empty()) {
      uint64_t seed = 0;
      if (!absl::SimpleAtoi(fields[col_seed], &seed)) {
        return absl::InvalidArgumentError(absl::StrCat(where, " column seed: '", fields[col_seed],
                                                       "' is not an unsigned integer"));
      }
      row.seed = seed;
    }
    if (col_bits >= 0 && !fields[col_bits].empty()) {
      if (!absl::SimpleAtoi(fields[col_bits], &row.control_bit_depth) ||
          (row.control_bit_depth != 12 && row.control_bit_depth != 16)) {
        return absl::InvalidArgumentError(absl::StrCat(where, " column control_bit_depth: '",
                                                       fields[col_bits], "' is not 12 or 16"));
      }
    }
    plan.rows.push_back(std::move(row));
  }
  return plan;
}

std::string RowName(int index) { return absl::StrFormat("r%06d", index); }

std::string Fingerprint(const std::vector<std::string>& parts) {
  uint64_t hash = 1469598103934665603ULL;
  for (const std::string& part : parts) {
    for (unsigned char c : part) {
      hash ^= c;
      hash *= 1099511628211ULL;
    }
    hash ^= 0x1f;  // separator so ("ab","c") != ("a","bc")
    hash *= 1099511628211ULL;
  }
  return absl::StrFormat("%016x", hash);
}

}  // namespace cellflux::client
