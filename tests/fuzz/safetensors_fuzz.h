// The safetensors fuzz body, shared by the libFuzzer target (safetensors_fuzz.cc, clang only) and
// the corpus replay test (safetensors_fuzz_replay_test.cc, any compiler).
#ifndef CELLFLUX_TESTS_FUZZ_SAFETENSORS_FUZZ_H_
#define CELLFLUX_TESTS_FUZZ_SAFETENSORS_FUZZ_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace cellflux::fuzz {

// Parses `bytes` with SafetensorsFile::Parse and, if it is valid, reads every byte of every
// tensor and checks the reader's invariants: byte size = numel × dtype size, Find/Expect return
// each tensor, and serializing the parsed tensors and metadata again gives a file that parses to
// the same tensors and bytes. Returns the parse status (OK or INVALID_ARGUMENT) or INTERNAL when an
// invariant is broken.
absl::Status FuzzSafetensors(absl::string_view bytes);

}  // namespace cellflux::fuzz

#endif  // CELLFLUX_TESTS_FUZZ_SAFETENSORS_FUZZ_H_
