// GetModelInfo from the client's side: fetching it (with the screen's retry policy, since a
// server that is still warming up answers UNAVAILABLE) and printing it for `cellflux-client info`.
#ifndef CELLFLUX_CLIENT_MODEL_INFO_H_
#define CELLFLUX_CLIENT_MODEL_INFO_H_

#include <string>

#include "absl/status/statusor.h"
#include "cellflux/v1/cellflux.pb.h"
#include "client/connection.h"
#include "client/retry.h"
#include "client/stop_signal.h"

namespace cellflux::client {

// Blocks for at most (retries + 1) × deadline_seconds plus backoff. `stop` may be null; a stop
// request ends the retries early with CANCELLED.
absl::StatusOr<cellflux::v1::GetModelInfoResponse> FetchModelInfo(const Connection& connection,
                                                                  const RetryPolicy& retry,
                                                                  double deadline_seconds,
                                                                  const StopSignal* stop);

// Human-readable summary: model id, step, channels, image size, genes (count + first few),
// vocabulary size, control bank size, defaults and limits. One item per line.
std::string FormatModelInfo(const cellflux::v1::GetModelInfoResponse& info,
                            const std::string& server);

// Sleeps `seconds` in short slices, returning early (false) when `stop` requests a stop.
bool SleepUnlessStopped(double seconds, const StopSignal* stop);

}  // namespace cellflux::client

#endif  // CELLFLUX_CLIENT_MODEL_INFO_H_
