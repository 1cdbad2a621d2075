#include "server/admission_queue.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"

namespace cellflux::server {
namespace {

constexpr int kInteractive = static_cast<int>(Priority::kInteractive);
constexpr int kBatch = static_cast<int>(Priority::kBatch);

}  // namespace

AdmissionQueue::AdmissionQueue(const AdmissionQueueOptions& options,
                               std::function<void()> on_encode_work)
    : options_(options), on_encode_work_(std::move(on_encode_work)) {}

absl::Status AdmissionQueue::Push(std::shared_ptr<TaskState> task) {
  const PredictTask& t = *task->task;
  const int c = ClassOf(*task);
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::UnavailableError("server is shutting down; retry on another replica");
    if (queued_[c] + t.num_samples > options_.max_queue) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "queue full: %d %s samples waiting, limit %d, this request needs %d; retry later",
          queued_[c], PriorityName(t.priority), options_.max_queue, t.num_samples));
    }
    Entry entry;
    entry.task = task;
    for (int k = 0; k < t.num_samples; ++k) {
      Sample s;
      s.task = task;
      s.index = k;
      entry.waiting.push_back(std::move(s));
    }
    queued_[c] += t.num_samples;
    classes_[c].push_back(std::move(entry));
  }
  on_encode_work_();
  return absl::OkStatus();
}

std::shared_ptr<TaskState> AdmissionQueue::ClaimEncode() {
  absl::MutexLock lock(&mu_);
  if (abort_) return nullptr;
  // The first not-yet-claimed task of each class whose look-ahead has room.
  std::array<Entry*, kNumPriorities> next = {nullptr, nullptr};
  for (int c = 0; c < kNumPriorities; ++c) {
    if (ready_[c] >= options_.max_batch) continue;
    for (Entry& e : classes_[c]) {
      if (e.state() == SampleState::kQueued) {
        next[c] = &e;
        break;
      }
    }
  }
  int c = next[kInteractive] != nullptr ? kInteractive : kBatch;
  if (next[kInteractive] != nullptr && next[kBatch] != nullptr) {
    c = interactive_encode_run_ >= options_.batch_turn - 1 ? kBatch : kInteractive;
  }
  Entry* e = next[c];
  if (e == nullptr) return nullptr;
  if (c == kBatch) {
    interactive_encode_run_ = 0;
  } else if (next[kBatch] != nullptr) {
    ++interactive_encode_run_;
  }
  for (Sample& s : e->waiting) SetState(&s, SampleState::kEncoding);
  return e->task;
}

void AdmissionQueue::EncodeDone(const std::shared_ptr<TaskState>& task,
                                std::vector<JointLatent> rows) {
  absl::MutexLock lock(&mu_);
  std::deque<Entry>& list = classes_[ClassOf(*task)];
  auto it = std::find_if(list.begin(), list.end(), [&](const Entry& e) { return e.task == task; });
  if (it == list.end()) return;  // failed or died meanwhile: its samples have left
  for (Sample& s : it->waiting) {
    s.z = std::move(rows[s.index]);
    SetState(&s, SampleState::kReady);
  }
  ready_[ClassOf(*task)] += static_cast<int64_t>(it->waiting.size());
}

void AdmissionQueue::EraseLocked(std::deque<Entry>& list, std::deque<Entry>::iterator it,
                                 const absl::Status& why) {
  const int c = ClassOf(*it->task);
  const int64_t n = static_cast<int64_t>(it->waiting.size());
  queued_[c] -= n;
  if (it->state() == SampleState::kReady) ready_[c] -= n;
  const SampleState end = EndStateFor(why);
  for (Sample& s : it->waiting) SetState(&s, end);
  list.erase(it);
}

void AdmissionQueue::Remove(const std::shared_ptr<TaskState>& task, const absl::Status& why) {
  bool removed = false;
  {
    absl::MutexLock lock(&mu_);
    std::deque<Entry>& list = classes_[ClassOf(*task)];
    auto it =
        std::find_if(list.begin(), list.end(), [&](const Entry& e) { return e.task == task; });
    if (it != list.end()) {
      EraseLocked(list, it, why);
      removed = true;
    }
  }
  if (removed) on_encode_work_();  // the look-ahead may have room again
}

void AdmissionQueue::DropDeadLocked(absl::Time now, Failed* failed) {
  for (std::deque<Entry>& list : classes_) {
    for (auto it = list.begin(); it != list.end();) {
      absl::Status why;
      if (TaskIsDead(*it->task->task, now, &why)) {
        failed->push_back({it->task, why});
        const size_t at = static_cast<size_t>(it - list.begin());
        EraseLocked(list, it, why);
        it = list.begin() + static_cast<std::ptrdiff_t>(at);
      } else {
        ++it;
      }
    }
  }
}

int64_t AdmissionQueue::TotalQueuedLocked() const { return queued_[0] + queued_[1]; }

int64_t AdmissionQueue::ReadyAtFrontLocked() const {
  int64_t ready = 0;
  for (const std::deque<Entry>& list : classes_) {
    for (const Entry& e : list) {
      if (e.state() != SampleState::kReady) break;
      ready += static_cast<int64_t>(e.waiting.size());
    }
  }
  return ready;
}

bool AdmissionQueue::RequestBatchReadyLocked(absl::Time now) const {
  if (TotalQueuedLocked() >= options_.max_batch || closed_) return true;
  for (const std::deque<Entry>& list : classes_) {
    if (!list.empty() && now >= list.front().task->enqueued + options_.max_queue_delay) {
      return true;
    }
  }
  return false;
}

int AdmissionQueue::NextClassLocked() const {
  auto head_ready = [&](int c) {
    return !classes_[c].empty() && classes_[c].front().state() == SampleState::kReady;
  };
  const bool interactive = head_ready(kInteractive);
  const bool batch = head_ready(kBatch);
  if (interactive && batch) {
    return interactive_run_ >= options_.batch_turn - 1 ? kBatch : kInteractive;
  }
  if (interactive) return kInteractive;
  if (batch) return kBatch;
  return -1;
}

void AdmissionQueue::TakeLocked(int free_rows, absl::Time now, std::vector<Sample>* admitted) {
  for (; free_rows > 0; --free_rows) {
    const int c = NextClassLocked();
    if (c < 0) return;
    if (c == kBatch) {
      interactive_run_ = 0;
    } else if (!classes_[kBatch].empty() &&
               classes_[kBatch].front().state() == SampleState::kReady) {
      ++interactive_run_;
    }
    Entry& head = classes_[c].front();
    if (head.task->first_admitted == absl::InfiniteFuture()) head.task->first_admitted = now;
    Sample s = std::move(head.waiting.front());
    head.waiting.pop_front();
    SetState(&s, SampleState::kRunning);
    admitted->push_back(std::move(s));
    queued_[c] -= 1;
    ready_[c] -= 1;
    if (head.waiting.empty()) classes_[c].pop_front();
  }
}

Admission AdmissionQueue::Admit(int free_rows, bool idle) {
  Admission out;
  {
    absl::MutexLock lock(&mu_);
    while (true) {
      if (abort_) {
        const absl::Status why = absl::UnavailableError("server shut down before the request ran");
        for (std::deque<Entry>& list : classes_) {
          while (!list.empty()) {
            out.failed.push_back({list.front().task, why});
            EraseLocked(list, list.begin(), why);
          }
        }
        out.exit = true;
        break;
      }
      const absl::Time now = options_.clock->Now();
      DropDeadLocked(now, &out.failed);
      if (!idle) {
        // Busy: continuous batching fills the free rows with what is ready; request mode waits
        // for the batch to run out.
        if (options_.mode == BatchingMode::kStep) TakeLocked(free_rows, now, &out.admitted);
        break;
      }
      if (TotalQueuedLocked() == 0) {
        if (closed_) {
          out.exit = true;
          break;
        }
        if (!out.failed.empty()) break;  // deliver those failures before sleeping
        auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return TotalQueuedLocked() > 0 || closed_ || abort_;
        };
        mu_.Await(absl::Condition(&has_work));
        continue;
      }
      if (options_.mode == BatchingMode::kRequest && !RequestBatchReadyLocked(now)) {
        auto full = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return TotalQueuedLocked() >= options_.max_batch || closed_ || abort_;
        };
        absl::Time oldest = absl::InfiniteFuture();
        for (const std::deque<Entry>& list : classes_) {
          if (!list.empty()) oldest = std::min(oldest, list.front().task->enqueued);
        }
        options_.clock->AwaitWithDeadline(&mu_, absl::Condition(&full),
                                          oldest + options_.max_queue_delay);
        continue;
      }
      // Idle batch: wait for the codec stage's latents — the first sample in step mode, the
      // whole batch (up to max_batch queued samples) in request mode.
      const int64_t need = options_.mode == BatchingMode::kStep
                               ? 1
                               : std::min<int64_t>(options_.max_batch, TotalQueuedLocked());
      if (ReadyAtFrontLocked() < need) {
        auto ready = [this, need]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return abort_ || TotalQueuedLocked() == 0 ||
                 ReadyAtFrontLocked() >= std::min<int64_t>(need, TotalQueuedLocked());
        };
        mu_.Await(absl::Condition(&ready));
        continue;
      }
      TakeLocked(free_rows, now, &out.admitted);
      break;
    }
  }
  if (!out.admitted.empty() || !out.failed.empty()) on_encode_work_();
  return out;
}

void AdmissionQueue::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

void AdmissionQueue::Abort() {
  absl::MutexLock lock(&mu_);
  abort_ = true;
}

bool AdmissionQueue::aborted() const {
  absl::MutexLock lock(&mu_);
  return abort_;
}

size_t AdmissionQueue::NumTasks() const {
  absl::MutexLock lock(&mu_);
  return classes_[0].size() + classes_[1].size();
}

int64_t AdmissionQueue::Capacity(Priority p) const {
  absl::MutexLock lock(&mu_);
  return closed_ ? 0 : options_.max_queue - queued_[static_cast<int>(p)];
}

int64_t AdmissionQueue::NumQueued(Priority p) const {
  absl::MutexLock lock(&mu_);
  return queued_[static_cast<int>(p)];
}

int64_t AdmissionQueue::NumReady() const {
  absl::MutexLock lock(&mu_);
  return ready_[0] + ready_[1];
}

}  // namespace cellflux::server
