// common/util/allocator: large freed blocks are reused (no page fault per page again), and the
// opt-outs leave glibc alone.
#include "common/util/allocator.h"

#include <sys/resource.h>

#include <cstdlib>
#include <cstring>
#include <thread>

#include "gtest/gtest.h"

namespace cellflux {
namespace {

constexpr size_t kBlock = size_t{40}
                          << 20;  // above glibc's largest dynamic mmap threshold (32 MiB)
constexpr size_t kPage = 4096;

long MinorFaults() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return u.ru_minflt;
}

// Minor faults of one malloc + touch every page + free of kBlock bytes.
long FaultsOfOneRound() {
  const long before = MinorFaults();
  volatile char* p = static_cast<volatile char*>(std::malloc(kBlock));
  EXPECT_NE(p, nullptr);
  for (size_t i = 0; i < kBlock; i += kPage) p[i] = static_cast<char>(i);
  std::free(const_cast<char*>(p));
  return MinorFaults() - before;
}

TEST(AllocatorTest, LargeBlocksAreReusedWithoutFaultingAgain) {
  AllocatorTuning t = TuneAllocatorForTensors();
  ASSERT_TRUE(t.applied) << t.why;
  FaultsOfOneRound();                                    // first use faults the heap in once
  const long pages = static_cast<long>(kBlock / kPage);  // 10,240
  for (int round = 0; round < 3; ++round) {
    // With glibc's defaults every round is a fresh mmap: 10,240 faults (measured).
    EXPECT_LT(FaultsOfOneRound(), pages / 10) << "round " << round;
  }
}

// The server's scheduler and the trainer's workers allocate on their own threads. glibc gives
// those threads their own arenas, whose heaps are unmapped as soon as they empty, whatever the
// trim threshold: a block freed there faulted all its pages in again on the next round (measured
// 516 faults per sample in the step-batching server).
TEST(AllocatorTest, LargeBlocksAreReusedOnOtherThreadsToo) {
  AllocatorTuning t = TuneAllocatorForTensors();
  ASSERT_TRUE(t.applied) << t.why;
  std::thread worker([] {
    // A long-lived block fills most of the thread arena's first heap (64 MiB at most), so each
    // 40 MiB block needs a second heap: the one glibc deletes when the block is freed.
    void* resident = std::malloc(size_t{30} << 20);
    std::memset(resident, 1, size_t{30} << 20);
    FaultsOfOneRound();
    for (int round = 0; round < 3; ++round) {
      EXPECT_LT(FaultsOfOneRound(), static_cast<long>(kBlock / kPage) / 10) << "round " << round;
    }
    std::free(resident);
  });
  worker.join();
}

// TuneAllocatorForTensors() with one environment variable set for the call.
AllocatorTuning TuneWith(const char* name, const char* value) {
  setenv(name, value, 1);
  AllocatorTuning t = TuneAllocatorForTensors();
  unsetenv(name);
  return t;
}

TEST(AllocatorTest, OptOutLeavesGlibcDefaults) {
  AllocatorTuning t = TuneWith("CELLFLUX_MALLOC_TUNING", "0");
  EXPECT_FALSE(t.applied);
  EXPECT_NE(t.why.find("CELLFLUX_MALLOC_TUNING=0"), std::string::npos) << t.why;
}

TEST(AllocatorTest, UserThresholdsWin) {
  AllocatorTuning t = TuneWith("MALLOC_MMAP_THRESHOLD_", "131072");
  EXPECT_FALSE(t.applied);
  EXPECT_NE(t.why.find("environment"), std::string::npos) << t.why;
}

}  // namespace
}  // namespace cellflux
