// The lifecycle of one sample inside the scheduler, in one place.
//
// A Predict task of N samples becomes N Samples. Each is held by exactly one stage at a time and
// only that stage moves it (SetState, the one writer of Sample::state):
//
//   stage            state                        next
//   admission queue  kQueued      waiting         kEncoding (codec claims the task) | end
//                    kEncoding    being encoded   kReady (latents stored) | end
//                    kReady       z holds z_0     kRunning (admitted into a row) | end
//   step loop        kRunning     step k of N     kRunning (k+1) … kDecoding (k = N) | end
//   codec stage      kDecoding    retired         kDone | end
//   end:             kFailed (an error, the deadline, shutdown) or kCancelled (the client)
//
// A task's samples go through kQueued → kEncoding → kReady together (one Encode call for the
// task) and leave the queue one row at a time. When a task fails, every stage drops the samples
// of it that it holds at its next boundary (kFailed/kCancelled); `done` has already been called.
//
// IsAllowedTransition is the table above; SetState checks it in debug builds (assert) and the
// scheduler test checks the table itself.
#ifndef CELLFLUX_SERVER_SAMPLE_H_
#define CELLFLUX_SERVER_SAMPLE_H_

#include <atomic>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/flow/joint_latent.h"
#include "server/predict_task.h"

namespace cellflux::server {

enum class SampleState {
  kQueued,
  kEncoding,
  kReady,
  kRunning,
  kDecoding,
  kDone,
  kFailed,
  kCancelled,
};

const char* SampleStateName(SampleState s);
bool IsAllowedTransition(SampleState from, SampleState to);
// kCancelled for CANCELLED (the client left), kFailed for everything else.
SampleState EndStateFor(const absl::Status& status);

// One request inside the scheduler, shared by the stages that hold its samples.
struct TaskState {
  std::unique_ptr<PredictTask> task;
  absl::Time enqueued;
  // Written by the admission queue (under its lock) when the first sample is admitted; read when
  // the task completes (after its last decode, which the stages' locks order after it).
  absl::Time first_admitted = absl::InfiniteFuture();
  std::atomic<int> remaining{0};  // samples not yet decoded
  // kRunning while the task is live; then kDone, kFailed or kCancelled, set once by whichever
  // thread calls done (Scheduler::Fail or Complete); every stage reads it to drop dead samples.
  std::atomic<SampleState> outcome{SampleState::kRunning};
  // outputs[k] is written by the thread that decodes sample k before it counts `remaining` down.
  std::vector<SampleOutput> outputs;

  // True for the one caller that moves the task from live to `end` (that caller calls done).
  bool Finish(SampleState end) {
    SampleState live = SampleState::kRunning;
    return outcome.compare_exchange_strong(live, end);
  }
  bool finished() const { return outcome.load() != SampleState::kRunning; }
};

// One sample = one row of the batch once admitted.
struct Sample {
  std::shared_ptr<TaskState> task;
  int index = 0;  // within the task (seed = task seed + index)
  SampleState state = SampleState::kQueued;
  int step = 0;  // steps done (kRunning)
  // Heun only: 1 between its two forwards of a step (z_mid holds the Euler predictor at
  // t_{step+1}), 0 otherwise. Euler rows stay at 0.
  int substep = 0;
  JointLatent z;       // [1, ...] on the backend's device: z_0 from kReady, then z at t_step
  JointLatent z_mid;   // Heun predictor, defined while substep == 1
  absl::Time retired;  // entered kDecoding
};

// Whether a task should leave now: cancelled by the client (CANCELLED) or past its deadline on
// the scheduler's clock (DEADLINE_EXCEEDED); *why says which.
bool TaskIsDead(const PredictTask& task, absl::Time now, absl::Status* why);

// The one writer of Sample::state.
void SetState(Sample* sample, SampleState to);
// A sample whose task has finished leaves its stage in the task's end state.
inline void Drop(Sample* sample) {
  const SampleState end = sample->task->outcome.load();
  SetState(sample, end == SampleState::kCancelled ? end : SampleState::kFailed);
}

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_SAMPLE_H_
