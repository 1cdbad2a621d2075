#include "common/io/l1000_csv.h"

#include <cmath>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/io/gct.h"
#include "common/util/status_macros.h"

namespace cellflux::io {

bool IsProbeColumn(absl::string_view name) { return absl::EndsWith(name, "_at"); }

int L1000Header::MetaIndex(absl::string_view name) const {
  for (size_t i = 0; i < meta_names.size(); ++i) {
    if (meta_names[i] == name) return static_cast<int>(i);
  }
  return -1;
}

absl::StatusOr<std::unique_ptr<L1000CsvReader>> L1000CsvReader::Open(
    const std::string& path, const std::vector<std::string>& required_meta) {
  CF_ASSIGN_OR_RETURN(auto csv, CsvReader::Open(path, ','));
  L1000Header header;
  CF_ASSIGN_OR_RETURN(bool has_header, csv->Next(&header.columns));
  if (!has_header)
    return absl::InvalidArgumentError(absl::StrCat(path, ": empty file (no header line)"));
  std::set<std::string> seen;
  for (size_t i = 0; i < header.columns.size(); ++i) {
    const std::string& name = header.columns[i];
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", csv->line(), ": column ", i + 1,
                                                     ": duplicate column name '", name, "'"));
    }
    if (IsProbeColumn(name)) {
      header.gene_ids.push_back(name);
      header.gene_columns.push_back(static_cast<int>(i));
    } else {
      header.meta_names.push_back(name);
      header.meta_columns.push_back(static_cast<int>(i));
    }
  }
  if (header.gene_ids.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ":", csv->line(), ": no probe columns (names ending in '_at') in the header"));
  }
  for (const std::string& name : required_meta) {
    if (header.MetaIndex(name) < 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", csv->line(), ": required column '",
                                                     name, "' missing from the header"));
    }
  }
  return std::unique_ptr<L1000CsvReader>(new L1000CsvReader(std::move(csv), std::move(header)));
}

absl::StatusOr<bool> L1000CsvReader::Next(L1000Row* row) {
  CF_ASSIGN_OR_RETURN(bool more, csv_->Next(&fields_));
  if (!more) return false;
  const std::string& path = csv_->path();
  if (fields_.size() != header_.columns.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", csv_->line(), ": expected ", header_.columns.size(),
                     " fields (as in the header), found ", fields_.size()));
  }
  row->row_index = next_row_++;
  row->line = csv_->line();
  row->meta.resize(header_.meta_names.size());
  for (size_t k = 0; k < header_.meta_columns.size(); ++k)
    row->meta[k] = std::move(fields_[header_.meta_columns[k]]);
  row->values.resize(header_.gene_ids.size());
  row->missing.clear();
  for (size_t g = 0; g < header_.gene_columns.size(); ++g) {
    const std::string& cell = fields_[header_.gene_columns[g]];
    float v = 0;
    if (!ParseFloatCell(cell, &v)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", row->line, ": column ", header_.gene_columns[g] + 1, " ('",
          header_.gene_ids[g], "'): expected a number, found '", cell.substr(0, 40), "'"));
    }
    if (std::isnan(v)) row->missing.push_back(static_cast<int>(g));
    row->values[g] = v;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<L1000CsvWriter>> L1000CsvWriter::Open(
    const std::string& path, std::vector<std::string> meta_names,
    std::vector<std::string> gene_ids) {
  for (const auto& name : meta_names) {
    if (IsProbeColumn(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": metadata column '", name, "' ends in '_at' and would read back as a probe"));
    }
  }
  for (const auto& name : gene_ids) {
    if (!IsProbeColumn(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": probe column '", name, "' must end in '_at' to read back as a probe"));
    }
  }
  CF_ASSIGN_OR_RETURN(auto csv, CsvWriter::Open(path, ','));
  std::vector<std::string> header = meta_names;
  header.insert(header.end(), gene_ids.begin(), gene_ids.end());
  CF_RETURN_IF_ERROR(csv->Write(header));
  return std::unique_ptr<L1000CsvWriter>(
      new L1000CsvWriter(std::move(csv), meta_names.size(), gene_ids.size()));
}

absl::Status L1000CsvWriter::Write(const std::vector<std::string>& meta,
                                   const std::vector<float>& values) {
  if (meta.size() != n_meta_ || values.size() != n_genes_) {
    return absl::InvalidArgumentError(
        absl::StrCat("L1000 row: expected ", n_meta_, " metadata values and ", n_genes_,
                     " expression values, got ", meta.size(), " and ", values.size()));
  }
  std::string line = FormatCsvRecord(meta, ',');
  for (float v : values) {
    line.push_back(',');
    line += FormatFloat(v);
  }
  line.push_back('\n');
  return csv_->WriteRaw(line);
}

absl::Status L1000CsvWriter::Close() { return csv_->Close(); }

}  // namespace cellflux::io
