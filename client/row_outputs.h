// Writes one successful prediction row to disk: per-sample channel TIFFs and composite PNG, the
// control's composite when the control came from disk, then the RowRecord (row_record.h). The
// caller journals the row only after this returns OK.
//
// Response checks (INTERNAL naming the row: the server broke its contract): at least one
// prediction, decodable images with DNA/RNA/ER, and one expression value per model gene.
#ifndef CELLFLUX_CLIENT_ROW_OUTPUTS_H_
#define CELLFLUX_CLIENT_ROW_OUTPUTS_H_

#include <string>

#include "absl/status/statusor.h"
#include "cellflux/v1/cellflux.pb.h"
#include "client/plan.h"
#include "client/request_builder.h"
#include "client/row_record.h"

namespace cellflux::client {

// Folder of a row's images, relative to the out folder: "predictions/r000012".
std::string RowImageDir(int row);

absl::StatusOr<RowRecord> WriteRowOutputs(const std::string& out_dir, const PlanRow& row,
                                          const std::string& fingerprint,
                                          const PreparedRow& prepared,
                                          const cellflux::v1::PredictResponse& response,
                                          const cellflux::v1::GetModelInfoResponse& info,
                                          int attempts);

}  // namespace cellflux::client

#endif  // CELLFLUX_CLIENT_ROW_OUTPUTS_H_
