// libFuzzer target for PredictRequest decoding + validation (built only with -DCELLFLUX_FUZZ=ON
// and clang):
//   build-fuzz/tests/fuzz/request_fuzz -max_len=65536 tests/fuzz/corpus/predict_request
// Any broken invariant aborts so libFuzzer records the input; validation errors are expected.
#include "tests/fuzz/request_fuzz.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::Status s = cellflux::fuzz::FuzzPredictRequest(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  if (s.code() == absl::StatusCode::kInternal) {
    std::fprintf(stderr, "invariant broken: %s\n", std::string(s.message()).c_str());
    std::abort();
  }
  return 0;
}
