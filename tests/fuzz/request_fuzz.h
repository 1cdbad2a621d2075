// The PredictRequest fuzz body: bytes → cellflux.v1.PredictRequest (protobuf wire format) →
// ValidatePredict against a small fixed model, shared by the libFuzzer target (request_fuzz.cc,
// clang only), the fixed-run driver (fuzz_runs_main.cc) and the replay test.
#ifndef CELLFLUX_TESTS_FUZZ_REQUEST_FUZZ_H_
#define CELLFLUX_TESTS_FUZZ_REQUEST_FUZZ_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/model_info.h"

namespace cellflux::fuzz {

// The model requests are validated against: 5 channels (DNA RNA ER AGP Mito) of 8×8, 4 genes
// with training statistics, 6 perturbations, two bank controls.
const server::ModelInfo& FuzzModelInfo();

// A valid serialized request for FuzzModelInfo (a seed for the corpus): a bank reference when
// `bank`, else 8×8 RAW channels and 4 expression values.
std::string ValidRequestBytes(bool bank);

// Decodes `bytes` and validates the request. Returns OK when it validates, the validation error
// (INVALID_ARGUMENT / NOT_FOUND) or INVALID_ARGUMENT when the bytes are not a PredictRequest, and
// INTERNAL when an invariant is broken: an accepted request whose checked fields are out of range
// (pixel count, expression length or finiteness or |z| bound, options limits), an error with
// another code, or an error message longer than kMaxMessageChars (echoed input must be capped).
absl::Status FuzzPredictRequest(absl::string_view bytes);

inline constexpr size_t kMaxMessageChars = 512;

}  // namespace cellflux::fuzz

#endif  // CELLFLUX_TESTS_FUZZ_REQUEST_FUZZ_H_
