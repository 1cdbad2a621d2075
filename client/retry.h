// Which failed calls to retry, and how long to wait in between.
//
// Retryable: UNAVAILABLE (server starting, draining, or unreachable) and RESOURCE_EXHAUSTED (the
// server's queue is full) — both say "try again later". Everything else, notably
// INVALID_ARGUMENT and NOT_FOUND, would fail the same way again and is reported at once.
// Backoff before retry k (0-based) is drawn uniformly from [d/2, d] with
// d = min(max_backoff_seconds, initial_backoff_seconds · multiplier^k): exponential growth, and
// jitter so that many clients rejected together do not come back together.
#ifndef CELLFLUX_CLIENT_RETRY_H_
#define CELLFLUX_CLIENT_RETRY_H_

#include "absl/random/random.h"
#include "absl/status/status.h"

namespace cellflux::client {

struct RetryPolicy {
  int max_retries = 5;                   // retries after the first attempt
  double initial_backoff_seconds = 0.5;  // seconds
  double max_backoff_seconds = 30.0;     // seconds
  double multiplier = 2.0;

  absl::Status Validate() const;
};

bool IsRetryable(absl::StatusCode code);

// Seconds to wait before retry `retry` (0 = the first retry).
double BackoffSeconds(const RetryPolicy& policy, int retry, absl::BitGen& rng);

}  // namespace cellflux::client

#endif  // CELLFLUX_CLIENT_RETRY_H_
