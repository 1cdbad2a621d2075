#include "client/request_builder.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "client/expression_source.h"
#include "common/util/status_macros.h"

namespace cellflux::client {
namespace {

absl::Status WithLine(const PlanRow& row, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(RowOrigin(row), ": ", status.message()));
}

}  // namespace

absl::Status SamplingOptions::Validate(const cellflux::v1::GetModelInfoResponse* info) const {
  if (num_samples && *num_samples < 1) return absl::InvalidArgumentError("--samples must be ≥ 1");
  if (num_steps && *num_steps < 1) return absl::InvalidArgumentError("--steps must be ≥ 1");
  if (guidance_scale && *guidance_scale < 0) {
    return absl::InvalidArgumentError("--guidance must be ≥ 0");
  }
  if (info == nullptr) return absl::OkStatus();
  const auto& limits = info->limits();
  if (num_samples && limits.max_samples() > 0 && *num_samples > limits.max_samples()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--samples ", *num_samples, " exceeds the server's limit of ", limits.max_samples()));
  }
  if (num_steps && limits.max_steps() > 0 && *num_steps > limits.max_steps()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--steps ", *num_steps, " exceeds the server's limit of ", limits.max_steps()));
  }
  if (guidance_scale && limits.max_guidance_scale() > 0 &&
      *guidance_scale > limits.max_guidance_scale()) {
    return absl::InvalidArgumentError(absl::StrCat("--guidance ", *guidance_scale,
                                                   " exceeds the server's limit of ",
                                                   limits.max_guidance_scale()));
  }
  return absl::OkStatus();
}

std::string SamplingOptions::Describe() const {
  return absl::StrCat("samples=", num_samples ? absl::StrCat(*num_samples) : "default",
                      " steps=", num_steps ? absl::StrCat(*num_steps) : "default",
                      " guidance=", guidance_scale ? absl::StrCat(*guidance_scale) : "default",
                      " seed=", seed ? absl::StrCat(*seed) : "random");
}

absl::StatusOr<PreparedRow> PrepareRow(const PlanRow& row,
                                       const cellflux::v1::GetModelInfoResponse& info,
                                       const SamplingOptions& sampling) {
  PreparedRow prepared;
  auto& request = prepared.request;
  request.set_perturbation_id(row.perturbation_id);
  request.set_smiles(row.smiles);
  request.set_dose_um(row.dose_um);
  request.set_request_id(RowName(row.index));
  if (row.control_ref) {
    auto* ref = request.mutable_ref();
    ref->set_plate(row.control_ref->plate);
    ref->set_well(row.control_ref->well);
    ref->set_site(row.control_ref->site);
    prepared.control_label = absl::StrCat("ref ", row.control_ref->plate, ":",
                                          row.control_ref->well, ":", row.control_ref->site);
    // The client has no pixels of a bank well: the server sends the crop it started from.
    request.mutable_options()->set_return_control(true);
  } else {
    prepared.control_label = row.control_dir;
    auto image = LoadControlImage(row.control_dir, info.image_size(), row.control_bit_depth);
    if (!image.ok()) return WithLine(row, image.status());
    const std::vector<std::string> names(info.channel_names().begin(), info.channel_names().end());
    auto proto = ToProtoImage(*image, names);
    if (!proto.ok()) return WithLine(row, proto.status());
    *request.mutable_data()->mutable_image() = *std::move(proto);
    if (image->bit_depth == 16) {  // the report shows the control in the predictions' 12-bit scale
      for (cv::Mat& channel : image->channels) {
        channel.convertTo(channel, CV_16U, 4095.0 / 65535.0);
      }
      image->bit_depth = 12;
    }
    prepared.control_image = *std::move(image);
    const std::vector<std::string> genes(info.gene_ids().begin(), info.gene_ids().end());
    if (!row.control_expression.empty()) {
      auto expression = LoadExpression(row.control_expression, genes);
      if (!expression.ok()) return WithLine(row, expression.status());
      auto* out = request.mutable_data()->mutable_expression();
      out->mutable_values()->Assign(expression->values.begin(), expression->values.end());
      out->mutable_gene_ids()->Assign(expression->gene_ids.begin(), expression->gene_ids.end());
      prepared.control_expression = std::move(expression->values);
    } else if (!genes.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(RowOrigin(row), ": control_dir ", row.control_dir,
                       " needs control_expression (the model predicts ", genes.size(), " genes)"));
    }
  }
  auto* options = request.mutable_options();
  if (sampling.num_samples) options->set_num_samples(*sampling.num_samples);
  if (sampling.num_steps) options->set_num_steps(*sampling.num_steps);
  if (sampling.guidance_scale) options->set_guidance_scale(*sampling.guidance_scale);
  if (row.seed) {
    options->set_seed(*row.seed);
  } else if (sampling.seed) {
    const int per_row = sampling.num_samples.value_or(std::max(1, info.defaults().num_samples()));
    options->set_seed(*sampling.seed + static_cast<uint64_t>(row.index) * per_row);
  }
  return prepared;
}

}  // namespace cellflux::client
