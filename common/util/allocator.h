// glibc malloc tuning for tensor workloads.
//
// LibTorch's CPU allocator gets every activation and im2col buffer from malloc. glibc serves
// blocks above its mmap threshold (dynamic, at most 32 MiB) with a fresh mmap and unmaps them on
// free, so every forward pays a page fault per 4 KiB page again. On the 2-core VMs we build on a
// minor fault costs ~14 µs: a 16×16-channel 3×3 conv on a batch of 16 64×64 images took 8.4 ms per
// image with 9,473 faults per call, against 0.39 ms and 922 faults once the blocks are reused
// (bench/RESULTS.md, "Allocator"). Raising the mmap and trim thresholds keeps freed blocks in the
// heap for reuse, and one arena for all threads keeps glibc from unmapping a worker thread's
// extra heaps whenever they empty.
#ifndef CELLFLUX_COMMON_UTIL_ALLOCATOR_H_
#define CELLFLUX_COMMON_UTIL_ALLOCATOR_H_

#include <cstddef>
#include <string>

namespace cellflux {

struct AllocatorTuning {
  bool applied = false;
  std::string why;  // one line for the start-up log: what was set, or why nothing was
};

// Sets M_MMAP_THRESHOLD and M_TRIM_THRESHOLD to `threshold_bytes` (default 1 GiB) and M_ARENA_MAX
// to 1 (unless MALLOC_ARENA_MAX is set). Does nothing when the user chose glibc's own
// MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_, when CELLFLUX_MALLOC_TUNING=0, or when the C
// library is not glibc. Call once at start-up, before other threads allocate.
AllocatorTuning TuneAllocatorForTensors(size_t threshold_bytes = size_t{1} << 30);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_UTIL_ALLOCATOR_H_
