// What the scheduler is given (PredictTask: one validated Predict request) and what it gives back
// (PredictResult). See scheduler.h for who owns a task and on which thread `done` runs.
#ifndef CELLFLUX_SERVER_PREDICT_TASK_H_
#define CELLFLUX_SERVER_PREDICT_TASK_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/flow/sampler.h"
#include "server/backend.h"
#include "server/model_info.h"
#include "server/priority.h"

namespace cellflux::server {

// What a finished task gets.
struct PredictResult {
  std::vector<SampleOutput> samples;  // num_samples, sample k drawn with seed + k
  double queue_seconds = 0;           // enqueue → first row admitted
  double compute_seconds = 0;         // first row admitted → last row decoded
  double decode_seconds = 0;  // of which: last row's last step → decoded (waiting + decoding)
  // queue_seconds includes the encode of the control (codec stage) before a row was free.
};

struct PredictTask {
  std::shared_ptr<Backend> backend;              // the model to run on (keeps it alive)
  std::shared_ptr<const ControlInput> control;   // the source
  int64_t label = 0;                             // perturbation row
  int num_steps = 50;                            // ≥ 1 (Heun: 2 velocity evaluations each)
  double guidance = 1.0;                         // α
  uint64_t seed = 0;                             // sample k uses seed + k
  int num_samples = 1;                           // ≥ 1
  SamplerKind sampler = SamplerKind::kEuler;     // how each row integrates
  Priority priority = Priority::kInteractive;    // admission class
  absl::Time deadline = absl::InfiniteFuture();  // on the scheduler's clock
  // Set to true (from any thread) to abandon the task; checked at iteration boundaries.
  std::shared_ptr<std::atomic<bool>> cancelled;
  // Called exactly once if Schedule accepted the task. See scheduler.h for the thread rules.
  std::function<void(absl::StatusOr<PredictResult>)> done;
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_PREDICT_TASK_H_
