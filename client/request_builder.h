// From a plan row to a PredictRequest (loading a control from disk when the row names a folder).
//
// Seeds: a row's seed is its own "seed" column when present, else `seed + index × samples` when
// the screen has a seed (so every prediction of a screen has a distinct, reproducible seed), else
// unset (the server picks one and reports it per prediction).
// Images from a control folder are centre-cropped to the model's image_size before sending.
// Errors (unreadable control, expression not matching the model's genes) are INVALID_ARGUMENT /
// NOT_FOUND naming the plan line and the file; they are never worth retrying.
#ifndef CELLFLUX_CLIENT_REQUEST_BUILDER_H_
#define CELLFLUX_CLIENT_REQUEST_BUILDER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cellflux/v1/cellflux.pb.h"
#include "client/control_dir.h"
#include "client/plan.h"

namespace cellflux::client {

// Sampling knobs; unset → the server's defaults (GetModelInfo.defaults).
struct SamplingOptions {
  std::optional<int> num_samples;
  std::optional<int> num_steps;
  std::optional<double> guidance_scale;
  std::optional<uint64_t> seed;  // screen base seed

  // Checks against the server's limits when `info` is given (messages name the flag).
  absl::Status Validate(const cellflux::v1::GetModelInfoResponse* info) const;
  // Stable text of the set knobs, part of a row's fingerprint.
  std::string Describe() const;
};

struct PreparedRow {
  cellflux::v1::PredictRequest request;
  std::string control_label;                  // "ref 24277:a01:1" or the folder
  std::optional<ControlImage> control_image;  // cropped, for the report; unset for bank controls
                                              // (their request asks for options.return_control)
  std::vector<float> control_expression;      // model gene order; empty when none was sent
};

absl::StatusOr<PreparedRow> PrepareRow(const PlanRow& row,
                                       const cellflux::v1::GetModelInfoResponse& info,
                                       const SamplingOptions& sampling);

}  // namespace cellflux::client

#endif  // CELLFLUX_CLIENT_REQUEST_BUILDER_H_
