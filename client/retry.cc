#include "client/retry.h"

#include <algorithm>
#include <cmath>

namespace cellflux::client {

absl::Status RetryPolicy::Validate() const {
  if (max_retries < 0) return absl::InvalidArgumentError("--retries must be ≥ 0");
  if (initial_backoff_seconds < 0 || max_backoff_seconds < initial_backoff_seconds) {
    return absl::InvalidArgumentError("backoff: need 0 ≤ initial ≤ max seconds");
  }
  if (multiplier < 1) return absl::InvalidArgumentError("backoff multiplier must be ≥ 1");
  return absl::OkStatus();
}

bool IsRetryable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kResourceExhausted;
}

double BackoffSeconds(const RetryPolicy& policy, int retry, absl::BitGen& rng) {
  const double exponent = std::min(retry, 60);  // beyond this the cap applies anyway
  const double ceiling =
      std::min(policy.max_backoff_seconds,
               policy.initial_backoff_seconds * std::pow(policy.multiplier, exponent));
  if (ceiling <= 0) return 0;
  return absl::Uniform(absl::IntervalClosedClosed, rng, ceiling / 2, ceiling);
}

}  // namespace cellflux::client
