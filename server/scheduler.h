// The scheduler of cellflux-server: owns the model's time, turns Predict tasks into rows of one
// batch and integrates them (Euler or Heun, per request) with shared velocity forwards.
//
// A PredictTask (predict_task.h) is one request: num_samples samples of one perturbation from one
// control, each with its own seed (task seed + sample index). Every sample is one row of the batch.
//
//   Scheduler::Create(options, metrics) → scheduler (its threads started at once)
//   scheduler->Schedule(&task)          → OK: the scheduler owns the task and will call
//                                         task->done exactly once. Error: the caller still owns
//                                         it and done is never called.
//   scheduler->NumEnqueuedTasks()       → tasks waiting (not yet fully admitted)
//   scheduler->SchedulingCapacity(p)    → samples class p can still queue
//   scheduler->Stop(grace)              → rejects new work, drains, joins the threads
//
// Schedule never blocks on the model: it takes the queue lock, checks, appends and returns.
//   UNAVAILABLE         Stop() has been called
//   RESOURCE_EXHAUSTED  the task's class (priority) has max_queue samples queued already
//   INVALID_ARGUMENT    the task is malformed (no backend/control/done, sizes < 1)
//
// Three stages, one owner each (server/README.md draws one request through them):
//  1. the admission queue (admission_queue.h): capacity, deadlines and cancellation while queued,
//     priorities, the order of encodes;
//  2. the step loop (this file, thread "cf-batch"): the rows of the batch, one guided velocity
//     forward over all of them per iteration;
//  3. the codec stage (codec_stage.h, threads "cf-codec"): encodes queued tasks ahead of
//     admission and decodes retired rows; the step loop lends it a hand when it falls behind
//     (encodes; decodes only with an empty batch unless help_decode_in_flight).
// A sample moves through them as sample.h's state machine says.
//
// Two batching modes:
//  * kStep (continuous batching, the default). Each iteration of the step loop: admit ready
//    samples into free rows (up to max_batch rows), run ONE velocity forward over all rows (each
//    row with its own t, dt, α, label; conditional and unconditional halves in the same forward;
//    an Euler row advances one step per forward, a Heun row one half-step), and hand the rows
//    that reached t = 1 to the codec stage. A sample waits at most one forward for a free row
//    once rows free up; a long request never blocks a short one behind it.
//  * kRequest (Triton-style dynamic batching, for comparison). When the batch is empty, wait
//    until max_batch samples are queued or the oldest has waited max_queue_delay, admit up to
//    max_batch samples (once encoded), and run them to completion before admitting more.
//
// Priorities: PredictTask::priority. Interactive samples are encoded and admitted before batch
// ones, but of every batch_turn samples admitted while both classes wait, at least one is batch
// (admission_queue.h states the bound). max_queue applies to each class on its own.
//
// Latency bound (kStep, one model): a sample admitted into an iteration finishes after
// num_steps forwards (Euler) or 2·num_steps (Heun); a forward costs one velocity evaluation over
// ≤ max_batch rows (2× rows for rows with α ≠ 1). Before: its encode; after: its decode (codec
// stage, in retirement order).
//
// Deadlines and cancellation: a task whose deadline (on the scheduler's clock) passes or whose
// `cancelled` flag is set leaves at the next iteration boundary: its queued samples are dropped,
// its rows leave the batch (freeing them for others) and done gets DEADLINE_EXCEEDED or
// CANCELLED. A backend error fails only the tasks whose rows were in that call.
//
// Determinism: a sample's result depends only on its control, label, steps, α, sampler and seed,
// never on the rows it shares a forward with (Backend's row-wise contract), so a request gives
// the same bits alone or under load, and the same bits as SampleEuler/SampleHeun offline.
//
// Model swaps: each task carries the backend it was validated against; rows of different
// backends run in separate forwards in the same iteration, so a reload lets in-flight requests
// finish on the model they started with.
//
// Threads: Schedule/NumEnqueuedTasks/SchedulingCapacity/Stop are thread-safe. `done` runs on the
// step loop's thread (failures found there) or on whichever thread ran the codec job (results,
// codec failures: a codec worker, or the step loop lending a hand), exactly once per task, never
// under a scheduler lock: it must be quick and must not call Stop(). Metrics are updated outside
// the locks. backend.h lists which Backend calls may overlap.
//
// Invariants (what is always true; the tests check them through a contract-checking fake):
//  * every accepted task gets done exactly once; after Stop() returns, every task has;
//  * a sample is held by exactly one stage (queue, step loop, codec) until it ends;
//  * at most max_batch rows are in the batch, and each forward holds rows of one backend;
//  * Backend::Step never overlaps another Step; Encode/Decode run on at most codec_threads + 1
//    threads at once; no backend call begins after Stop() returns;
//  * a retired row reaches Decode only after Backend::HandOffForDecode, called on the step loop
//    after the row's last write (a failed hand-off fails its task instead);
//  * queued samples per class ≤ max_queue.
//
// Implementation details follow; API users need not read.
#ifndef CELLFLUX_SERVER_SCHEDULER_H_
#define CELLFLUX_SERVER_SCHEDULER_H_

#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/admission_queue.h"
#include "server/backend.h"
#include "server/clock.h"
#include "server/codec_stage.h"
#include "server/metrics.h"
#include "server/predict_task.h"
#include "server/sample.h"

namespace cellflux::server {

struct SchedulerOptions {
  BatchingMode mode = BatchingMode::kStep;
  int max_batch = 16;   // rows (samples) per velocity forward; ≥ 1
  int max_queue = 256;  // samples waiting per priority class; beyond → RESOURCE_EXHAUSTED; ≥ 1
  absl::Duration max_queue_delay = absl::Milliseconds(10);  // kRequest only; ≥ 0
  // While both classes wait, at least one of every batch_turn admitted samples (and encoded
  // tasks) is batch; ≥ 1 (1 = batch first, 2 = alternate, ...).
  int batch_turn = 4;
  int codec_threads = 1;  // codec stage workers; ≥ 1
  // Whether the step loop, when the codec stage is behind, may run a decode between two forwards
  // while rows are in flight (they wait for it). With an empty batch it always may; encodes it
  // always may (they bring waiting samples into free rows). Off by default: on the 2-core CPU at
  // half load it cost every in-flight row a decode (open-loop p95 0.31 s on vs 0.25 s off,
  // bench/RESULTS.md).
  bool help_decode_in_flight = false;
  Clock* clock = nullptr;  // nullptr = real time; not owned, must outlive the scheduler

  absl::Status Validate() const;
};

class Scheduler final : private CodecClient {
 public:
  // metrics may be nullptr; not owned, must outlive the scheduler.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(const SchedulerOptions& options,
                                                           ServerMetrics* metrics);
  // Stops with a zero grace period if Stop() was not called.
  ~Scheduler() override;

  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Non-blocking. On OK takes ownership (*task becomes null); on error leaves *task untouched.
  absl::Status Schedule(std::unique_ptr<PredictTask>* task);

  size_t NumEnqueuedTasks() const;
  // Samples class p can still queue before RESOURCE_EXHAUSTED (0 once stopping).
  int64_t SchedulingCapacity(Priority p = Priority::kInteractive) const;
  // Samples in the batch right now.
  int64_t NumActiveSamples() const;
  // Queued samples whose source latents the codec stage has encoded (admittable at once).
  int64_t NumReadySamples() const;

  // Rejects new work (UNAVAILABLE), lets queued and active tasks finish for up to `grace`, then
  // fails what is left with UNAVAILABLE and joins every thread. Idempotent; blocks.
  void Stop(absl::Duration grace = absl::InfiniteDuration());

 private:
  Scheduler(const SchedulerOptions& options, ServerMetrics* metrics);

  // The step loop (thread "cf-batch").
  void Run();
  // One iteration. Returns false when the loop should exit.
  bool Iterate();
  // One velocity forward per backend over the active rows; advances each row by its sampler.
  void StepActive();
  // Hands rows that reached t = 1 to the codec stage (kRunning → kDecoding).
  void RetireFinished();
  // Rows of dead (deadline, cancel) or finished tasks leave the batch.
  void DropDeadActive(absl::Time now);
  void PublishGauges();

  // CodecClient (codec stage threads, or the step loop lending a hand).
  std::shared_ptr<TaskState> ClaimEncode() override;
  void Encoded(const std::shared_ptr<TaskState>& task,
               absl::StatusOr<std::vector<JointLatent>> rows) override;
  void Decoded(Sample row, absl::StatusOr<SampleOutput> output) override;

  // Calls done once (any thread): Fail with an error, Complete with the decoded samples.
  void Fail(const std::shared_ptr<TaskState>& task, const absl::Status& status);
  void Complete(const std::shared_ptr<TaskState>& task, absl::Time last_retired);

  const SchedulerOptions options_;
  ServerMetrics* const metrics_;
  Clock* const clock_;

  // Stage 1 and 3 (their own locks). codec_ is created after queue_ and destroyed before it.
  AdmissionQueue queue_;
  std::unique_ptr<CodecStage> codec_;

  // Step loop thread only: the rows of the current batch.
  std::vector<Sample> active_;

  mutable absl::Mutex mu_;
  int64_t active_samples_ ABSL_GUARDED_BY(mu_) = 0;  // mirror of active_.size() for readers
  bool exited_ ABSL_GUARDED_BY(mu_) = false;         // every thread is done

  absl::Mutex stop_mu_;  // serialises Stop() callers
  std::thread thread_;   // the step loop; finishes the codec stage before it exits
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_SCHEDULER_H_
