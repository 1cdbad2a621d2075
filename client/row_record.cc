#include "client/row_record.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/plan.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"

namespace cellflux::client {
namespace {

using nlohmann::json;

json ToJson(const RowRecord& r) {
  json samples = json::array();
  for (const SampleRecord& s : r.samples) {
    samples.push_back({{"sample", s.sample},
                       {"seed", s.seed},
                       {"composite", s.composite},
                       {"expression", s.expression},
                       {"profile", s.profile}});
  }
  return {{"row", r.row},
          {"fingerprint", r.fingerprint},
          {"perturbation_id", r.perturbation_id},
          {"smiles", r.smiles},
          {"dose_um", r.dose_um},
          {"canonical_smiles", r.canonical_smiles},
          {"in_vocabulary", r.in_vocabulary},
          {"nearest_perturbation_id", r.nearest_perturbation_id},
          {"nearest_similarity", r.nearest_similarity},
          {"control", r.control},
          {"control_composite", r.control_composite},
          {"control_expression", r.control_expression},
          {"control_profile", r.control_profile},
          {"gene_ids", r.gene_ids},
          {"model_id", r.model_id},
          {"attempts", r.attempts},
          {"queue_seconds", r.queue_seconds},
          {"compute_seconds", r.compute_seconds},
          {"total_seconds", r.total_seconds},
          {"samples", samples}};
}

RowRecord FromJson(const json& j) {
  RowRecord r;
  r.row = j.at("row").get<int>();
  r.fingerprint = j.at("fingerprint").get<std::string>();
  r.perturbation_id = j.at("perturbation_id").get<std::string>();
  // Records written before structures existed have none of these.
  r.smiles = j.value("smiles", std::string());
  r.dose_um = j.value("dose_um", 0.0);
  r.canonical_smiles = j.value("canonical_smiles", std::string());
  r.in_vocabulary = j.value("in_vocabulary", false);
  r.nearest_perturbation_id = j.value("nearest_perturbation_id", std::string());
  r.nearest_similarity = j.value("nearest_similarity", 0.0);
  r.control = j.at("control").get<std::string>();
  r.control_composite = j.at("control_composite").get<std::string>();
  r.control_expression = j.at("control_expression").get<std::vector<float>>();
  r.control_profile = j.value("control_profile", std::vector<double>());
  r.gene_ids = j.at("gene_ids").get<std::vector<std::string>>();
  r.model_id = j.at("model_id").get<std::string>();
  r.attempts = j.at("attempts").get<int>();
  r.queue_seconds = j.at("queue_seconds").get<double>();
  r.compute_seconds = j.at("compute_seconds").get<double>();
  r.total_seconds = j.at("total_seconds").get<double>();
  for (const json& s : j.at("samples")) {
    SampleRecord sample;
    sample.sample = s.at("sample").get<int>();
    sample.seed = s.at("seed").get<uint64_t>();
    sample.composite = s.at("composite").get<std::string>();
    sample.expression = s.at("expression").get<std::vector<float>>();
    sample.profile = s.value("profile", std::vector<double>());
    r.samples.push_back(std::move(sample));
  }
  return r;
}

}  // namespace

std::string RowRecordPath(const std::string& out_dir, int row) {
  return absl::StrCat(out_dir, "/rows/", RowName(row), ".json");
}

absl::Status WriteRowRecord(const std::string& out_dir, const RowRecord& record) {
  CF_RETURN_IF_ERROR(MakeDirs(absl::StrCat(out_dir, "/rows")));
  return WriteFileAtomic(RowRecordPath(out_dir, record.row), ToJson(record).dump());
}

absl::StatusOr<RowRecord> ReadRowRecord(const std::string& out_dir, int row) {
  const std::string path = RowRecordPath(out_dir, row);
  CF_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  try {
    return FromJson(json::parse(text));
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": corrupt row record (", e.what(),
                                            "); delete it and its journal line to redo the row"));
  }
}

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(const std::string& out_dir) {
  CF_RETURN_IF_ERROR(MakeDirs(out_dir));
  const std::string path = absl::StrCat(out_dir, "/journal.jsonl");
  absl::flat_hash_map<int, std::string> done;
  auto text = ReadFile(path);
  if (text.ok()) {
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
      // A torn last line (crash during append) does not parse: that row simply is not done.
      const json entry = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (entry.is_discarded() || !entry.contains("row") || !entry.contains("fingerprint")) {
        continue;
      }
      done[entry["row"].get<int>()] = entry["fingerprint"].get<std::string>();
    }
  } else if (!absl::IsNotFound(text.status())) {
    return text.status();
  }
  FILE* file = std::fopen(path.c_str(), "a");
  if (file == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot open for appending (", std::strerror(errno), ")"));
  }
  // A torn last line left by a crash would swallow the next append: start on a fresh line.
  if (text.ok() && !text->empty() && text->back() != '\n') std::fputc('\n', file);
  return std::unique_ptr<Journal>(new Journal(path, file, std::move(done)));
}

Journal::Journal(std::string path, FILE* file, absl::flat_hash_map<int, std::string> done)
    : path_(std::move(path)), file_(file), done_(std::move(done)) {}

Journal::~Journal() {
  absl::MutexLock lock(&mu_);
  if (file_ != nullptr) std::fclose(file_);
}

bool Journal::IsDone(int row, const std::string& fingerprint) const {
  absl::MutexLock lock(&mu_);
  auto it = done_.find(row);
  return it != done_.end() && it->second == fingerprint;
}

absl::Status Journal::Append(int row, const std::string& fingerprint) {
  const std::string line =
      absl::StrCat(json({{"row", row}, {"fingerprint", fingerprint}}).dump(), "\n");
  absl::MutexLock lock(&mu_);
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0 ||
      fsync(fileno(file_)) != 0) {
    return absl::DataLossError(
        absl::StrCat(path_, ": cannot append row ", row, " (", std::strerror(errno), ")"));
  }
  done_[row] = fingerprint;
  return absl::OkStatus();
}

absl::Status Journal::Clear() {
  absl::MutexLock lock(&mu_);
  FILE* file = std::freopen(path_.c_str(), "w", file_);
  if (file == nullptr) {
    file_ = nullptr;
    return absl::PermissionDeniedError(absl::StrCat(path_, ": cannot truncate"));
  }
  file_ = file;
  done_.clear();
  return absl::OkStatus();
}

}  // namespace cellflux::client
