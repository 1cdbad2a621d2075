// Admission classes of Predict requests (PredictOptions.priority). LibTorch-free: metrics and
// validation use it too.
#ifndef CELLFLUX_SERVER_PRIORITY_H_
#define CELLFLUX_SERVER_PRIORITY_H_

namespace cellflux::server {

// Interactive samples are admitted before batch ones; batch ones still get a bounded share
// (SchedulerOptions::batch_turn, admission_queue.h).
enum class Priority { kInteractive = 0, kBatch = 1 };
inline constexpr int kNumPriorities = 2;

// "interactive" / "batch" (metric labels, log lines).
inline const char* PriorityName(Priority p) {
  return p == Priority::kBatch ? "batch" : "interactive";
}

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_PRIORITY_H_
