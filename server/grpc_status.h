// The one place absl::Status becomes grpc::Status (the wire). Codes map one to one (both are
// the canonical codes); the message is kept as is.
#ifndef CELLFLUX_SERVER_GRPC_STATUS_H_
#define CELLFLUX_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"

namespace cellflux::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

// "OK", "INVALID_ARGUMENT", ... (the label value of cellflux_requests_total{code}).
std::string GrpcCodeName(grpc::StatusCode code);

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_GRPC_STATUS_H_
