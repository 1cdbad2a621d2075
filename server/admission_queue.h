// Stage 1 of the scheduler: the admission queue. It holds the samples of accepted tasks from
// Schedule until the step loop admits them into rows (sample.h: kQueued → kEncoding → kReady →
// kRunning), and owns everything decided before a sample runs: capacity, deadlines and
// cancellation while queued, priorities, the order of encodes, and (request mode) when a batch
// is full enough to start.
//
//   Push(task)       non-blocking; UNAVAILABLE after Close(), RESOURCE_EXHAUSTED when the task's
//                    class holds max_queue samples already (each class has its own max_queue, so
//                    a screen cannot fill the queue for interactive users).
//   ClaimEncode()    codec stage: the next task to encode, or null (its samples → kEncoding).
//   EncodeDone()     codec stage: the task's latents (samples → kReady).
//   Admit()          step loop: ready samples into free rows (→ kRunning); blocks only when the
//                    batch is empty; also returns tasks that died while queued.
//   Remove()         any thread: a failed task's waiting samples leave (→ kFailed/kCancelled).
//
// Priorities. Two classes, FIFO within each. When both have ready samples at their head, at most
// batch_turn − 1 interactive samples are admitted in a row before one batch sample, and the same
// holds for encodes (counted in tasks). So interactive requests overtake a screen of any size,
// and the batch class always gets at least 1/batch_turn of the rows that free up while it waits:
// the head batch sample waits for at most batch_turn − 1 interactive admissions once its latents
// are ready, and for at most batch_turn − 1 interactive encodes before its own.
//
// Encodes run ahead of admission by at most max_batch ready samples per class (latents wait on
// the device; more would only hold memory).
//
// Thread-safety: every method is thread-safe; one mutex, never held while calling out (the
// encode-work callback runs after it is released).
//
// Implementation details follow; API users need not read.
//
// Invariants (under mu_):
//  * every sample in waiting lists is kQueued, kEncoding or kReady, and all samples of one entry
//    share one state;
//  * queued_[c] = Σ waiting samples of class c; ready_[c] = Σ of those in kReady;
//  * an entry is in exactly one class list, at most once; it leaves when its last sample is
//    admitted or when the task dies/fails (then its samples end kFailed/kCancelled);
//  * after abort_, the next Admit empties every list and returns exit.
#ifndef CELLFLUX_SERVER_ADMISSION_QUEUE_H_
#define CELLFLUX_SERVER_ADMISSION_QUEUE_H_

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/clock.h"
#include "server/sample.h"

namespace cellflux::server {

enum class BatchingMode { kStep, kRequest };

struct AdmissionQueueOptions {
  BatchingMode mode = BatchingMode::kStep;
  int max_batch = 16;              // rows; also the encode look-ahead per class
  int max_queue = 256;             // samples per class
  absl::Duration max_queue_delay;  // kRequest only
  int batch_turn = 4;              // ≥ 1; see "Priorities"
  Clock* clock = nullptr;          // not owned; required
};

// What one Admit call hands the step loop.
struct Admission {
  std::vector<Sample> admitted;                                             // kRunning, step 0
  std::vector<std::pair<std::shared_ptr<TaskState>, absl::Status>> failed;  // to Fail
  bool exit = false;  // the step loop should stop (drained after Close, or aborted)
};

class AdmissionQueue {
 public:
  // on_encode_work runs (without the lock) when there may be a new task to encode.
  AdmissionQueue(const AdmissionQueueOptions& options, std::function<void()> on_encode_work);

  absl::Status Push(std::shared_ptr<TaskState> task);

  std::shared_ptr<TaskState> ClaimEncode();
  // rows[k] = z_0 of the task's sample k (only the waiting ones are used).
  void EncodeDone(const std::shared_ptr<TaskState>& task, std::vector<JointLatent> rows);

  // free_rows ≥ 0. idle: the batch is empty, so wait until something can be admitted (kStep:
  // one ready sample; kRequest: max_batch queued and ready, or max_queue_delay), a queued task
  // dies, or exit. Not idle: admits what is ready now (kStep) or nothing (kRequest).
  Admission Admit(int free_rows, bool idle);

  void Remove(const std::shared_ptr<TaskState>& task, const absl::Status& why);

  // No new tasks (UNAVAILABLE); Admit returns exit once the queue is empty.
  void Close();
  // The next Admit fails every queued task with UNAVAILABLE and returns exit.
  void Abort();
  bool aborted() const;

  size_t NumTasks() const;
  int64_t Capacity(Priority p) const;   // samples class p can still queue (0 once closed)
  int64_t NumQueued(Priority p) const;  // samples of class p waiting
  int64_t NumReady() const;             // encoded, waiting for a row (both classes)

 private:
  struct Entry {
    std::shared_ptr<TaskState> task;
    std::deque<Sample> waiting;  // not yet admitted, in index order
    SampleState state() const { return waiting.front().state; }
  };
  using Failed = std::vector<std::pair<std::shared_ptr<TaskState>, absl::Status>>;

  static int ClassOf(const TaskState& t) { return static_cast<int>(t.task->priority); }
  // Erases the entry (its samples end in EndStateFor(why)) and its counts.
  void EraseLocked(std::deque<Entry>& list, std::deque<Entry>::iterator it, const absl::Status& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropDeadLocked(absl::Time now, Failed* failed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t TotalQueuedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ready samples at the head of each class (admittable now, in order), summed.
  int64_t ReadyAtFrontLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool RequestBatchReadyLocked(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Which class the next admitted sample comes from (-1: none ready), by the batch_turn rule.
  int NextClassLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TakeLocked(int free_rows, absl::Time now, std::vector<Sample>* admitted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const AdmissionQueueOptions options_;
  const std::function<void()> on_encode_work_;

  mutable absl::Mutex mu_;
  std::array<std::deque<Entry>, kNumPriorities> classes_ ABSL_GUARDED_BY(mu_);
  std::array<int64_t, kNumPriorities> queued_ ABSL_GUARDED_BY(mu_) = {0, 0};
  std::array<int64_t, kNumPriorities> ready_ ABSL_GUARDED_BY(mu_) = {0, 0};
  // Interactive samples admitted (tasks encoded) in a row while a batch one was waiting.
  int interactive_run_ ABSL_GUARDED_BY(mu_) = 0;
  int interactive_encode_run_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool abort_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_ADMISSION_QUEUE_H_
