#include "common/util/allocator.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "absl/strings/str_cat.h"

namespace cellflux {

AllocatorTuning TuneAllocatorForTensors(size_t threshold_bytes) {
  AllocatorTuning out;
  const char* opt_out = std::getenv("CELLFLUX_MALLOC_TUNING");
  if (opt_out != nullptr && std::strcmp(opt_out, "0") == 0) {
    out.why = "malloc: glibc defaults (CELLFLUX_MALLOC_TUNING=0)";
    return out;
  }
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr ||
      std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr) {
    out.why =
        "malloc: thresholds from the environment (MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_)";
    return out;
  }
#if defined(__GLIBC__)
  const int bytes =
      static_cast<int>(threshold_bytes > (size_t{1} << 30) ? (size_t{1} << 30) : threshold_bytes);
  // One arena: a thread's own arena deletes a heap as soon as it empties, trim threshold or not.
  const bool one_arena = std::getenv("MALLOC_ARENA_MAX") != nullptr || mallopt(M_ARENA_MAX, 1) == 1;
  if (mallopt(M_MMAP_THRESHOLD, bytes) == 1 && mallopt(M_TRIM_THRESHOLD, bytes) == 1 && one_arena) {
    out.applied = true;
    out.why = absl::StrCat("malloc: blocks up to ", bytes >> 20,
                           " MiB reused instead of mmap'd per call, one arena");
  } else {
    out.why = "malloc: mallopt refused the thresholds; glibc defaults";
  }
#else
  out.why = "malloc: not glibc; defaults";
#endif
  return out;
}

}  // namespace cellflux
