#include "client/screen_outputs.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/report.h"
#include "client/row_outputs.h"
#include "common/data/landmark_genes.h"
#include "common/io/csv.h"
#include "common/util/status_macros.h"

namespace cellflux::client {

std::string GeneSymbol(const std::string& probe_id) {
  static const auto* const kSymbols = [] {
    auto* map = new absl::flat_hash_map<std::string, std::string>();
    for (const LandmarkGene& gene : LandmarkGenes()) map->emplace(gene.probe_id, gene.symbol);
    return map;
  }();
  auto it = kSymbols->find(probe_id);
  return it == kSymbols->end() ? "-666" : it->second;
}

namespace {

// Our metadata field name, prefixed when the plan already uses it.
std::string OwnField(const Plan& plan, const std::string& name) {
  const bool taken = std::find(plan.header.begin(), plan.header.end(), name) != plan.header.end();
  return taken ? absl::StrCat("cf_", name) : name;
}

// Plans with a smiles column: what the server said about each row's compound
// (PredictResponse.structure); empty for perturbation_id rows.
constexpr const char* kStructureFields[] = {"canonical_smiles", "in_vocabulary",
                                            "nearest_perturbation_id", "nearest_similarity",
                                            "model_dose_um"};
std::vector<std::string> StructureFields(const RowRecord& r) {
  if (r.smiles.empty()) return std::vector<std::string>(std::size(kStructureFields));
  return {r.canonical_smiles, r.in_vocabulary ? "true" : "false", r.nearest_perturbation_id,
          absl::StrFormat("%.4f", r.nearest_similarity), absl::StrCat(r.dose_um)};
}

absl::Status WriteResults(const std::string& out_dir, const Plan& plan,
                          const std::vector<RowRecord>& records) {
  CF_ASSIGN_OR_RETURN(auto writer, io::CsvWriter::Open(absl::StrCat(out_dir, "/results.csv")));
  std::vector<std::string> header = {"row"};
  header.insert(header.end(), plan.header.begin(), plan.header.end());
  for (const char* field : {"sample", "seed", "model_id", "composite", "image_dir", "attempts",
                            "queue_seconds", "compute_seconds", "total_seconds"}) {
    header.push_back(field);
  }
  if (plan.has_smiles)
    header.insert(header.end(), std::begin(kStructureFields), std::end(kStructureFields));
  CF_RETURN_IF_ERROR(writer->Write(header));
  for (const RowRecord& record : records) {
    for (const SampleRecord& sample : record.samples) {
      std::vector<std::string> fields = {RowName(record.row)};
      const auto& plan_fields = plan.rows[record.row].fields;
      fields.insert(fields.end(), plan_fields.begin(), plan_fields.end());
      fields.push_back(absl::StrCat(sample.sample));
      fields.push_back(absl::StrCat(sample.seed));
      fields.push_back(record.model_id);
      fields.push_back(sample.composite);
      fields.push_back(RowImageDir(record.row));
      fields.push_back(absl::StrCat(record.attempts));
      fields.push_back(absl::StrFormat("%.4f", record.queue_seconds));
      fields.push_back(absl::StrFormat("%.4f", record.compute_seconds));
      fields.push_back(absl::StrFormat("%.4f", record.total_seconds));
      if (plan.has_smiles) {
        for (std::string& f : StructureFields(record)) fields.push_back(std::move(f));
      }
      CF_RETURN_IF_ERROR(writer->Write(fields));
    }
  }
  return writer->Close();
}

absl::Status WriteFailures(const std::string& out_dir, const Plan& plan,
                           const std::vector<RowFailure>& failures) {
  CF_ASSIGN_OR_RETURN(auto writer, io::CsvWriter::Open(absl::StrCat(out_dir, "/failures.csv")));
  std::vector<std::string> header = {"row", "line"};
  header.insert(header.end(), plan.header.begin(), plan.header.end());
  for (const char* field : {"code", "message", "attempts"}) header.push_back(field);
  CF_RETURN_IF_ERROR(writer->Write(header));
  for (const RowFailure& failure : failures) {
    const PlanRow& row = plan.rows[failure.row];
    std::vector<std::string> fields = {RowName(row.index), absl::StrCat(row.line)};
    fields.insert(fields.end(), row.fields.begin(), row.fields.end());
    fields.push_back(absl::StatusCodeToString(failure.status.code()));
    fields.push_back(std::string(failure.status.message()));
    fields.push_back(absl::StrCat(failure.attempts));
    CF_RETURN_IF_ERROR(writer->Write(fields));
  }
  return writer->Close();
}

}  // namespace

absl::StatusOr<io::GctMatrix> BuildPredictionsGct(const Plan& plan,
                                                  const std::vector<RowRecord>& records) {
  io::GctMatrix gct;
  if (records.empty()) return gct;
  gct.row_ids = records.front().gene_ids;
  std::vector<std::string> symbols;
  for (const std::string& gene : gct.row_ids) symbols.push_back(GeneSymbol(gene));
  gct.row_meta.emplace_back("pr_gene_symbol", std::move(symbols));

  const size_t plan_cols = plan.header.size();
  for (const std::string& name : plan.header)
    gct.col_meta.emplace_back(name, std::vector<std::string>{});
  for (const char* name : {"row", "sample", "seed", "model_id", "control"}) {
    gct.col_meta.emplace_back(OwnField(plan, name), std::vector<std::string>{});
  }
  const size_t own_cols = gct.col_meta.size();
  if (plan.has_smiles) {
    for (const char* name : kStructureFields) {
      gct.col_meta.emplace_back(OwnField(plan, name), std::vector<std::string>{});
    }
  }
  std::vector<std::vector<float>> columns;
  for (const RowRecord& record : records) {
    if (record.gene_ids != gct.row_ids) {
      return absl::InternalError(
          absl::StrCat(RowName(record.row), " was predicted by a model with other genes (model ",
                       record.model_id, ", first row's model ", records.front().model_id,
                       "); use a fresh --out for a different model"));
    }
    const auto& fields = plan.rows[record.row].fields;
    for (const SampleRecord& sample : record.samples) {
      gct.col_ids.push_back(absl::StrCat(RowName(record.row), "_s", sample.sample));
      for (size_t i = 0; i < plan_cols; ++i) {
        gct.col_meta[i].second.push_back(fields[i].empty() ? "-666" : fields[i]);
      }
      gct.col_meta[plan_cols + 0].second.push_back(RowName(record.row));
      gct.col_meta[plan_cols + 1].second.push_back(absl::StrCat(sample.sample));
      gct.col_meta[plan_cols + 2].second.push_back(absl::StrCat(sample.seed));
      gct.col_meta[plan_cols + 3].second.push_back(record.model_id);
      gct.col_meta[plan_cols + 4].second.push_back(record.control);
      if (plan.has_smiles) {
        const std::vector<std::string> structure = StructureFields(record);
        for (size_t i = 0; i < structure.size(); ++i) {
          gct.col_meta[own_cols + i].second.push_back(structure[i].empty() ? "-666" : structure[i]);
        }
      }
      columns.push_back(sample.expression);
    }
  }
  const size_t rows = gct.row_ids.size();
  gct.data.assign(rows * columns.size(), 0.0f);
  for (size_t c = 0; c < columns.size(); ++c) {
    for (size_t r = 0; r < rows; ++r) gct.data[r * columns.size() + c] = columns[c][r];
  }
  CF_RETURN_IF_ERROR(gct.Validate());
  return gct;
}

absl::Status WriteScreenOutputs(const std::string& out_dir, const Plan& plan,
                                const std::vector<RowRecord>& records,
                                const std::vector<RowFailure>& failures, int report_max_rows) {
  CF_RETURN_IF_ERROR(WriteResults(out_dir, plan, records));
  CF_RETURN_IF_ERROR(WriteFailures(out_dir, plan, failures));
  if (!records.empty() && !records.front().gene_ids.empty()) {
    CF_ASSIGN_OR_RETURN(io::GctMatrix gct, BuildPredictionsGct(plan, records));
    CF_RETURN_IF_ERROR(io::WriteGct(absl::StrCat(out_dir, "/predictions.gct"), gct));
  }
  ReportOptions report;
  report.max_rows = report_max_rows;
  return WriteReport(out_dir, plan, records, failures, report);
}

}  // namespace cellflux::client
