#include "client/row_outputs.h"

#include <array>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/image_output.h"
#include "common/io/tiff.h"
#include "common/metrics/cell_profile.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"

namespace cellflux::client {
namespace {

// The morphology profile (common/metrics/cell_profile.h) of 12-bit channels in any order: they are
// put in the profile's canonical order by name and scaled to [0, 1]. Empty when a channel is
// missing (a model with other channels), so the report simply has no morphology for the row.
absl::StatusOr<std::vector<double>> Profile(const std::vector<NamedChannel>& channels) {
  std::array<cv::Mat, kProfileChannels> ordered;
  for (int c = 0; c < kProfileChannels; ++c) {
    for (const NamedChannel& ch : channels) {
      if (ch.name == CanonicalChannelNames()[c])
        ch.pixels.convertTo(ordered[c], CV_32F, 1.0 / 4095);
    }
    if (ordered[c].empty()) return std::vector<double>();
  }
  return ComputeProfile(ordered);
}

}  // namespace

std::string RowImageDir(int row) { return absl::StrCat("predictions/", RowName(row)); }

absl::StatusOr<RowRecord> WriteRowOutputs(const std::string& out_dir, const PlanRow& row,
                                          const std::string& fingerprint,
                                          const PreparedRow& prepared,
                                          const cellflux::v1::PredictResponse& response,
                                          const cellflux::v1::GetModelInfoResponse& info,
                                          int attempts) {
  const std::string name = RowName(row.index);
  if (response.predictions().empty()) {
    return absl::InternalError(absl::StrCat(name, ": the server returned no predictions"));
  }
  const std::string rel_dir = RowImageDir(row.index);
  const std::string dir = absl::StrCat(out_dir, "/", rel_dir);
  CF_RETURN_IF_ERROR(MakeDirs(dir));

  RowRecord record;
  record.row = row.index;
  record.fingerprint = fingerprint;
  record.perturbation_id = row.perturbation_id;
  record.smiles = row.smiles;
  if (response.has_structure()) {
    const cellflux::v1::StructureMatch& s = response.structure();
    record.dose_um = s.dose_um();
    record.canonical_smiles = s.canonical_smiles();
    record.in_vocabulary = s.in_vocabulary();
    record.nearest_perturbation_id = s.nearest_perturbation_id();
    record.nearest_similarity = s.nearest_similarity();
  }
  record.control = prepared.control_label;
  record.control_expression = prepared.control_expression;
  record.gene_ids.assign(info.gene_ids().begin(), info.gene_ids().end());
  record.model_id = response.model_id();
  record.attempts = attempts;
  record.queue_seconds = response.timing().queue_seconds();
  record.compute_seconds = response.timing().compute_seconds();
  record.total_seconds = response.timing().total_seconds();

  if (prepared.control_image) {
    std::vector<NamedChannel> channels;
    for (int c = 0; c < kNumChannels; ++c) {
      channels.push_back({CanonicalChannelNames()[c], prepared.control_image->channels[c]});
    }
    CF_ASSIGN_OR_RETURN(cv::Mat composite, MakeComposite(channels));
    record.control_composite = absl::StrCat(rel_dir, "/control_composite.png");
    CF_RETURN_IF_ERROR(
        io::WritePng(absl::StrCat(out_dir, "/", record.control_composite), composite));
    CF_ASSIGN_OR_RETURN(record.control_profile, Profile(channels));
  } else if (response.has_control_image()) {  // a bank control, echoed by the server
    auto channels = DecodeImage(response.control_image(), absl::StrCat(name, " control"));
    if (!channels.ok()) return absl::InternalError(channels.status().message());
    CF_ASSIGN_OR_RETURN(cv::Mat composite, MakeComposite(*channels));
    record.control_composite = absl::StrCat(rel_dir, "/control_composite.png");
    CF_RETURN_IF_ERROR(
        io::WritePng(absl::StrCat(out_dir, "/", record.control_composite), composite));
    CF_ASSIGN_OR_RETURN(record.control_profile, Profile(*channels));
    if (record.control_expression.empty()) {
      record.control_expression.assign(response.control_expression().begin(),
                                       response.control_expression().end());
    }
  }

  for (int k = 0; k < response.predictions_size(); ++k) {
    const auto& prediction = response.predictions(k);
    const std::string label = absl::StrCat(name, " sample ", k);
    auto channels = DecodeImage(prediction.image(), label);
    if (!channels.ok()) return absl::InternalError(channels.status().message());
    auto composite = WriteImageSet(dir, absl::StrCat("s", k), *channels);
    if (!composite.ok()) {
      if (absl::IsInvalidArgument(composite.status())) {
        return absl::InternalError(absl::StrCat(label, ": ", composite.status().message()));
      }
      return composite.status();
    }
    if (prediction.expression_size() != info.gene_ids_size()) {
      return absl::InternalError(
          absl::StrCat(label, ": the server returned ", prediction.expression_size(),
                       " expression values for ", info.gene_ids_size(), " model genes"));
    }
    SampleRecord sample;
    sample.sample = k;
    sample.seed = prediction.seed();
    sample.composite = absl::StrCat(rel_dir, "/s", k, "_composite.png");
    sample.expression.assign(prediction.expression().begin(), prediction.expression().end());
    CF_ASSIGN_OR_RETURN(sample.profile, Profile(*channels));
    record.samples.push_back(std::move(sample));
  }
  CF_RETURN_IF_ERROR(WriteRowRecord(out_dir, record));
  return record;
}

}  // namespace cellflux::client
