// The batch scheduler of cellflux-server: owns the model's time, turns Predict tasks into rows
// of one batch and runs the Euler sampler over them.
//
// A PredictTask is one request: num_samples samples of one perturbation from one control, each
// with its own seed (task seed + sample index). Every sample is one row of the batch.
//
//   Scheduler::Create(options, metrics) → scheduler (a batch thread and a codec thread, started
//                                         at once)
//   scheduler->Schedule(&task)          → OK: the scheduler owns the task and will call
//                                         task->done exactly once. Error: the caller still owns
//                                         it and done is never called.
//   scheduler->NumEnqueuedTasks()       → tasks waiting (not yet fully admitted)
//   scheduler->SchedulingCapacity()     → samples that can still be queued
//   scheduler->Stop(grace)              → rejects new work, drains, joins the thread
//
// Schedule never blocks on the model: it takes the queue lock, checks, appends and returns.
//   UNAVAILABLE         Stop() has been called
//   RESOURCE_EXHAUSTED  queued samples + task size would exceed max_queue
//   INVALID_ARGUMENT    the task is malformed (no backend/control/done, sizes < 1)
//
// Two batching modes:
//  * kStep (continuous batching, the default). Each iteration of the batch thread: admit queued
//    samples whose source latents are ready into free rows (up to max_batch rows), run ONE
//    guided velocity forward over all rows (each row with its own t, dt, α, label; conditional
//    and unconditional halves in the same forward), advance every row by one Euler step, and
//    hand the rows that reached t = 1 to the codec thread. A sample waits at most one step for a
//    free row once rows free up; a long request never blocks a short one behind it.
//  * kRequest (Triton-style dynamic batching, for comparison). When the batch is empty, wait
//    until max_batch samples are queued or the oldest has waited max_queue_delay, admit up to
//    max_batch samples (once encoded), and run them to completion before admitting more.
//
// The codec thread runs the encoders and decoders (VAE + gene autoencoder) beside the batch
// thread, so the forwards never wait for them: it encodes queued tasks in FIFO order, at most
// max_batch samples ahead of admission (encodes first: they keep the batch full), and decodes
// retired rows in the order they finished. When the codec thread falls behind while the batch
// has free rows, the batch thread takes a codec job between forwards (work the two threads then
// share on a small CPU, where the encoders and decoders cost more than the forwards). On a 2-core CPU a sample's encode + decode cost about as
// much as its share of the forwards; on one thread they left a core idle (bench/RESULTS.md
// "Server under load"). A task completes when its last sample is decoded.
//
// Latency bound (kStep, one model): a sample admitted into an iteration finishes after
// num_steps iterations; an iteration costs one forward over ≤ max_batch rows (2× rows for rows
// with α ≠ 1). Before: its encode; after: its decode (codec thread, in FIFO order).
//
// Deadlines and cancellation: a task whose deadline (on the scheduler's clock) passes or whose
// `cancelled` flag is set leaves at the next iteration boundary: its queued samples are dropped,
// its rows leave the batch (freeing them for others) and done gets DEADLINE_EXCEEDED or
// CANCELLED. A backend error fails only the tasks whose rows were in that call.
//
// Determinism: a sample's result depends only on its control, label, steps, α and seed, never on
// the rows it shares a forward with (Backend's row-wise contract), so a request gives the same
// bits alone or under load.
//
// Model swaps: each task carries the backend it was validated against; rows of different
// backends run in separate forwards in the same iteration, so a reload lets in-flight requests
// finish on the model they started with.
//
// Threads: Schedule/NumEnqueuedTasks/SchedulingCapacity/Stop are thread-safe. `done` runs on
// the batch thread (failures found there) or the codec thread (results, codec failures),
// exactly once per task, never under the scheduler's locks: it must be quick and must not call
// Stop(). Metrics are updated outside the locks.
//
// Implementation details follow; API users need not read.
#ifndef CELLFLUX_SERVER_SCHEDULER_H_
#define CELLFLUX_SERVER_SCHEDULER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/backend.h"
#include "server/clock.h"
#include "server/metrics.h"
#include "server/model_info.h"

namespace cellflux::server {

enum class BatchingMode { kStep, kRequest };

struct SchedulerOptions {
  BatchingMode mode = BatchingMode::kStep;
  int max_batch = 16;   // rows (samples) per velocity forward; ≥ 1
  int max_queue = 256;  // samples waiting for a row; beyond → RESOURCE_EXHAUSTED; ≥ 1
  absl::Duration max_queue_delay = absl::Milliseconds(10);  // kRequest only; ≥ 0
  Clock* clock = nullptr;  // nullptr = real time; not owned, must outlive the scheduler

  absl::Status Validate() const;
};

// What a finished task gets.
struct PredictResult {
  std::vector<SampleOutput> samples;  // num_samples, sample k drawn with seed + k
  double queue_seconds = 0;           // enqueue → first row admitted
  double compute_seconds = 0;         // first row admitted → last row decoded
  double decode_seconds = 0;  // of which: last row's last step → decoded (waiting + decoding)
  // queue_seconds includes the encode of the control (codec thread) before a row was free.
};

struct PredictTask {
  std::shared_ptr<Backend> backend;              // the model to run on (keeps it alive)
  std::shared_ptr<const ControlInput> control;   // the source
  int64_t label = 0;                             // perturbation row
  int num_steps = 50;                            // ≥ 1
  double guidance = 1.0;                         // α
  uint64_t seed = 0;                             // sample k uses seed + k
  int num_samples = 1;                           // ≥ 1
  absl::Time deadline = absl::InfiniteFuture();  // on the scheduler's clock
  // Set to true (from any thread) to abandon the task; checked at iteration boundaries.
  std::shared_ptr<std::atomic<bool>> cancelled;
  // Called exactly once if Schedule accepted the task. See the thread rules above.
  std::function<void(absl::StatusOr<PredictResult>)> done;

  int size() const { return num_samples; }
};

class Scheduler {
 public:
  // metrics may be nullptr; not owned, must outlive the scheduler.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(const SchedulerOptions& options,
                                                           ServerMetrics* metrics);
  // Stops with a zero grace period if Stop() was not called.
  ~Scheduler();

  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Non-blocking. On OK takes ownership (*task becomes null); on error leaves *task untouched.
  absl::Status Schedule(std::unique_ptr<PredictTask>* task);

  size_t NumEnqueuedTasks() const;
  // Samples that can still be queued before RESOURCE_EXHAUSTED.
  int64_t SchedulingCapacity() const;
  // Samples in the batch right now.
  int64_t NumActiveSamples() const;
  // Queued samples whose source latents the codec thread has encoded (admittable at once).
  int64_t NumReadySamples() const;

  // Rejects new work (UNAVAILABLE), lets queued and active tasks finish for up to `grace`, then
  // fails what is left with UNAVAILABLE and joins both threads. Idempotent; blocks.
  void Stop(absl::Duration grace = absl::InfiniteDuration());

 private:
  struct TaskState;
  struct Row;

  Scheduler(const SchedulerOptions& options, ServerMetrics* metrics);

  void Run();
  // One batch-thread iteration. Returns false when the thread should exit.
  bool Iterate();
  // Blocks until there is work (or stop); moves admitted samples (with their source latents)
  // into `admitted` and tasks to fail (expired/cancelled in the queue, or everything on abort)
  // into `failed`.
  bool WaitAndAdmit(std::vector<Row>* admitted,
                    std::vector<std::pair<std::shared_ptr<TaskState>, absl::Status>>* failed);
  bool HasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Samples from the queue's front on whose latents are ready (admittable in order).
  int64_t ReadyAtFrontLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes a queued task's bookkeeping (its samples not yet admitted).
  void ForgetQueuedLocked(const TaskState& task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool RequestBatchReadyLocked(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropDeadQueuedLocked(
      absl::Time now, std::vector<std::pair<std::shared_ptr<TaskState>, absl::Status>>* failed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AdmitLocked(int free_rows, absl::Time now, std::vector<Row>* admitted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Batch-thread helpers (touch active_ only; no lock held).
  void StepActive();
  // Hands rows that reached t = 1 to the codec thread.
  void RetireFinished();
  // Codec thread: encodes queued tasks ahead of admission, decodes retired rows in order and
  // completes their tasks.
  void CodecLoop();
  // The next task to encode (claimed), or null: FIFO, while < max_batch samples are ready.
  std::shared_ptr<TaskState> ClaimEncodeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool CodecHasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EncodeTask(const std::shared_ptr<TaskState>& task);
  // Batch thread, before each iteration: takes one codec job (a decode, else an encode) when the
  // codec thread is busy, more codec work waits and the batch has free rows.
  void HelpCodec();
  // The oldest retired row, if any.
  std::optional<Row> PopDecodeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Decodes one retired row (either thread) and completes its task with its last sample.
  void DecodeRow(Row row);
  void DropDeadActive(absl::Time now);
  void Fail(const std::shared_ptr<TaskState>& task, const absl::Status& status);
  void Complete(const std::shared_ptr<TaskState>& task, absl::Time last_retired);
  void PublishGauges();

  const SchedulerOptions options_;
  ServerMetrics* const metrics_;
  Clock* const clock_;

  mutable absl::Mutex mu_;
  std::deque<std::shared_ptr<TaskState>> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_samples_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t active_samples_ ABSL_GUARDED_BY(mu_) = 0;  // mirror of active_.size() for readers
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;       // no new work
  bool abort_ ABSL_GUARDED_BY(mu_) = false;          // grace over: fail everything
  bool exited_ ABSL_GUARDED_BY(mu_) = false;         // both threads are done
  int64_t ready_samples_ ABSL_GUARDED_BY(mu_) = 0;   // encoded, still queued
  // Rows the batch thread retired, waiting for the codec thread.
  std::deque<Row> to_decode_ ABSL_GUARDED_BY(mu_);
  bool codec_exit_ ABSL_GUARDED_BY(mu_) = false;  // exit once to_decode_ is empty
  bool codec_busy_ ABSL_GUARDED_BY(mu_) = false;  // the codec thread is running a job

  // Batch thread only: the rows of the current batch.
  std::vector<Row> active_;

  absl::Mutex stop_mu_;  // serialises Stop() callers; never held with mu_ by the batch thread
  std::thread thread_;   // the batch thread; joins codec_ before it exits
  std::thread codec_;
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_SCHEDULER_H_
