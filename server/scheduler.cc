#include "server/scheduler.h"

#include <pthread.h>
#include <torch/torch.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_format.h"
#include "common/torch/tensors.h"
#include "common/util/logging.h"

namespace cellflux::server {

// A task the scheduler owns. `next_sample`, `first_admitted`, `encoding`, `encoded` and `z0`
// change under mu_; `outputs[k]` is written by the thread that decodes sample k (the codec thread,
// or the batch thread helping it) before it counts `remaining` down; `finished` is set once, by
// whichever thread calls done (Fail or Complete), and read by both.
struct Scheduler::TaskState {
  std::unique_ptr<PredictTask> task;
  absl::Time enqueued;
  absl::Time first_admitted = absl::InfiniteFuture();
  int next_sample = 0;            // samples admitted so far
  bool encoding = false;          // the codec thread is encoding it
  bool encoded = false;           // z0 holds every sample's source latent
  std::vector<JointLatent> z0;    // [1, ...] per sample until admitted
  std::atomic<int> remaining{0};  // samples not yet decoded
  std::atomic<bool> finished{false};
  std::vector<SampleOutput> outputs;
};

// One sample = one row of the batch.
struct Scheduler::Row {
  std::shared_ptr<TaskState> task;
  int sample = 0;      // index within the task (seed = task seed + sample)
  int step = 0;        // Euler steps done
  JointLatent z;       // [1, ...] rows on the backend's device; undefined until encoded
  absl::Time retired;  // handed to the decode thread
};

namespace {

bool Dead(const PredictTask& task, absl::Time now, absl::Status* why) {
  if (task.cancelled != nullptr && task.cancelled->load(std::memory_order_relaxed)) {
    *why = absl::CancelledError("request cancelled by the client");
    return true;
  }
  if (now >= task.deadline) {
    *why = absl::DeadlineExceededError("deadline exceeded before all samples were generated");
    return true;
  }
  return false;
}

// Rows of `rows` grouped by backend, each group in row order (usually a single group).
template <typename RowT>
std::vector<std::pair<Backend*, std::vector<RowT*>>> GroupByBackend(std::vector<RowT>& rows) {
  std::vector<std::pair<Backend*, std::vector<RowT*>>> groups;
  for (RowT& row : rows) {
    Backend* backend = row.task->task->backend.get();
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& g) { return g.first == backend; });
    if (it == groups.end()) {
      groups.push_back({backend, {}});
      it = groups.end() - 1;
    }
    it->second.push_back(&row);
  }
  return groups;
}

JointLatent RowOf(const JointLatent& z, int64_t i) {
  JointLatent row;
  row.image = z.image.narrow(0, i, 1);
  if (z.gene.defined()) row.gene = z.gene.narrow(0, i, 1);
  return row;
}

template <typename RowT>
JointLatent Concat(const std::vector<RowT*>& rows) {
  std::vector<torch::Tensor> images, genes;
  for (const RowT* r : rows) {
    images.push_back(r->z.image);
    if (r->z.gene.defined()) genes.push_back(r->z.gene);
  }
  JointLatent z;
  z.image = torch::cat(images, 0);
  if (!genes.empty()) z.gene = torch::cat(genes, 0);
  return z;
}

}  // namespace

absl::Status SchedulerOptions::Validate() const {
  if (max_batch < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("max_batch must be ≥ 1, got %d", max_batch));
  }
  if (max_queue < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("max_queue must be ≥ 1, got %d", max_queue));
  }
  if (max_queue_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("max_queue_delay must be ≥ 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(const SchedulerOptions& options,
                                                             ServerMetrics* metrics) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  std::unique_ptr<Scheduler> scheduler(new Scheduler(options, metrics));
  Scheduler* self = scheduler.get();
  scheduler->codec_ = std::thread([self] { self->CodecLoop(); });
  scheduler->thread_ = std::thread([self] { self->Run(); });
  return scheduler;
}

Scheduler::Scheduler(const SchedulerOptions& options, ServerMetrics* metrics)
    : options_(options),
      metrics_(metrics),
      clock_(options.clock != nullptr ? options.clock : DefaultClock()) {}

Scheduler::~Scheduler() { Stop(absl::ZeroDuration()); }

absl::Status Scheduler::Schedule(std::unique_ptr<PredictTask>* task) {
  if (task == nullptr || *task == nullptr) return absl::InvalidArgumentError("null task");
  const PredictTask& t = **task;
  if (t.backend == nullptr || t.control == nullptr || !t.done) {
    return absl::InvalidArgumentError("task needs a backend, a control and a done callback");
  }
  if (t.num_samples < 1 || t.num_steps < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "task needs num_samples ≥ 1 and num_steps ≥ 1, got %d and %d", t.num_samples, t.num_steps));
  }
  auto state = std::make_shared<TaskState>();
  state->enqueued = clock_->Now();
  state->remaining = t.num_samples;
  state->outputs.resize(t.num_samples);
  int64_t depth = 0;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_)
      return absl::UnavailableError("server is shutting down; retry on another replica");
    if (queued_samples_ + t.num_samples > options_.max_queue) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "queue full: %d samples waiting, limit %d, this request needs %d; retry later",
          queued_samples_, options_.max_queue, t.num_samples));
    }
    queued_samples_ += t.num_samples;
    depth = queued_samples_;
    state->task = std::move(*task);
    queue_.push_back(std::move(state));
  }
  if (metrics_ != nullptr) metrics_->SetQueueDepth(depth);
  return absl::OkStatus();
}

size_t Scheduler::NumEnqueuedTasks() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

int64_t Scheduler::SchedulingCapacity() const {
  absl::MutexLock lock(&mu_);
  return stopping_ ? 0 : options_.max_queue - queued_samples_;
}

int64_t Scheduler::NumReadySamples() const {
  absl::MutexLock lock(&mu_);
  return ready_samples_;
}

int64_t Scheduler::NumActiveSamples() const {
  absl::MutexLock lock(&mu_);
  return active_samples_;
}

void Scheduler::Stop(absl::Duration grace) {
  absl::MutexLock stop_lock(&stop_mu_);
  if (!thread_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    const absl::Time deadline =
        grace == absl::InfiniteDuration() ? absl::InfiniteFuture() : clock_->Now() + grace;
    auto exited = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return exited_; };
    if (!clock_->AwaitWithDeadline(&mu_, absl::Condition(&exited), deadline)) abort_ = true;
  }
  thread_.join();
}

void Scheduler::Run() {
  // Thread-local: every tensor op of this thread skips autograd bookkeeping. The intra-op thread
  // count is fixed before the first op (LibTorch otherwise sets it at the first parallel op, and
  // OpenBLAS reads it per call).
  c10::InferenceMode inference_mode;
  at::internal::lazy_init_num_threads();
  pthread_setname_np(pthread_self(), "cf-batch");  // as `top -H` and perf show it
  while (Iterate()) {
  }
  {
    // Finish (or, after an abort, fail) what was handed to the codec thread.
    absl::MutexLock lock(&mu_);
    codec_exit_ = true;
  }
  codec_.join();
  absl::MutexLock lock(&mu_);
  exited_ = true;
}

bool Scheduler::CodecHasWorkLocked() const {
  if (!to_decode_.empty() || codec_exit_) return true;
  if (ready_samples_ >= options_.max_batch) return false;
  for (const auto& task : queue_) {
    if (!task->encoded && !task->encoding) return true;
  }
  return false;
}

std::shared_ptr<Scheduler::TaskState> Scheduler::ClaimEncodeLocked() {
  if (ready_samples_ >= options_.max_batch) return nullptr;
  for (const auto& task : queue_) {
    if (!task->encoded && !task->encoding) {
      task->encoding = true;
      return task;
    }
  }
  return nullptr;
}

void Scheduler::CodecLoop() {
  // Thread-local, as on the batch thread.
  c10::InferenceMode inference_mode;
  at::internal::lazy_init_num_threads();
  pthread_setname_np(pthread_self(), "cf-codec");
  while (true) {
    std::optional<Row> row;
    std::shared_ptr<TaskState> encode;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Scheduler::CodecHasWorkLocked));
      if (codec_exit_ && to_decode_.empty()) return;
      codec_busy_ = true;
      // Encodes first (they keep the batch full; at most max_batch samples ahead), then decodes.
      if (!codec_exit_) encode = ClaimEncodeLocked();
      // One row at a time (the backend decodes one sample per call anyway), so an encode that
      // arrives meanwhile waits for one decode at most.
      if (encode == nullptr) row = PopDecodeLocked();
    }
    if (encode != nullptr) EncodeTask(encode);
    if (row) DecodeRow(std::move(*row));
    absl::MutexLock lock(&mu_);
    codec_busy_ = false;
  }
}

std::optional<Scheduler::Row> Scheduler::PopDecodeLocked() {
  if (to_decode_.empty()) return std::nullopt;
  Row row = std::move(to_decode_.front());
  to_decode_.pop_front();
  return row;
}

void Scheduler::HelpCodec() {
  std::optional<Row> row;
  std::shared_ptr<TaskState> encode;
  {
    absl::MutexLock lock(&mu_);
    // Only while the codec thread is busy and more codec work waits: then samples sit outside a
    // part-empty batch, and one codec job here is worth more than one forward over a few rows.
    if (!codec_busy_ || active_.size() >= static_cast<size_t>(options_.max_batch)) return;
    row = PopDecodeLocked();
    if (!row) encode = ClaimEncodeLocked();
  }
  if (encode != nullptr) EncodeTask(encode);
  if (row) DecodeRow(std::move(*row));
}

void Scheduler::EncodeTask(const std::shared_ptr<TaskState>& task) {
  const PredictTask& t = *task->task;
  EncodeItem item{t.control, {}};
  for (int i = 0; i < t.num_samples; ++i) item.seeds.push_back(t.seed + static_cast<uint64_t>(i));
  std::vector<JointLatent> rows;
  absl::StatusOr<JointLatent> z = t.backend->Encode({item});
  absl::Status status = z.status();
  if (status.ok()) {
    status = TorchCall("splitting encoded rows", [&] {
      TORCH_CHECK(z->image.size(0) == t.num_samples, "Encode returned ", z->image.size(0),
                  " rows for ", t.num_samples, " seeds");
      for (int i = 0; i < t.num_samples; ++i) rows.push_back(RowOf(*z, i));
    });
  }
  {
    absl::MutexLock lock(&mu_);
    task->encoding = false;
    if (status.ok()) {
      task->z0 = std::move(rows);
      task->encoded = true;
      // Still queued (not dropped meanwhile): its samples count as ready.
      if (std::find(queue_.begin(), queue_.end(), task) != queue_.end()) {
        ready_samples_ += t.num_samples - task->next_sample;
      }
    }
  }
  if (!status.ok()) Fail(task, status);
}

bool Scheduler::Iterate() {
  HelpCodec();
  std::vector<Row> admitted;
  std::vector<std::pair<std::shared_ptr<TaskState>, absl::Status>> failed;
  const bool keep_going = WaitAndAdmit(&admitted, &failed);
  for (auto& [task, status] : failed) Fail(task, status);
  if (!keep_going) {
    // Abort (grace over) or drained: fail whatever is still in the batch.
    for (Row& row : active_)
      Fail(row.task, absl::UnavailableError("server shut down before the request finished"));
    for (Row& row : admitted)
      Fail(row.task, absl::UnavailableError("server shut down before the request finished"));
    active_.clear();
    PublishGauges();
    return false;
  }
  DropDeadActive(clock_->Now());
  for (Row& row : admitted) {
    if (!row.task->finished.load()) active_.push_back(std::move(row));
  }
  StepActive();
  RetireFinished();
  PublishGauges();
  return true;
}

bool Scheduler::HasWorkLocked() const { return !queue_.empty() || stopping_ || abort_; }

int64_t Scheduler::ReadyAtFrontLocked() const {
  int64_t ready = 0;
  for (const auto& task : queue_) {
    if (!task->encoded) break;
    ready += task->task->num_samples - task->next_sample;
  }
  return ready;
}

void Scheduler::ForgetQueuedLocked(const TaskState& task) {
  const int left = task.task->num_samples - task.next_sample;
  queued_samples_ -= left;
  if (task.encoded) ready_samples_ -= left;
}

bool Scheduler::RequestBatchReadyLocked(absl::Time now) const {
  return queued_samples_ >= options_.max_batch || stopping_ ||
         now >= queue_.front()->enqueued + options_.max_queue_delay;
}

void Scheduler::DropDeadQueuedLocked(
    absl::Time now, std::vector<std::pair<std::shared_ptr<TaskState>, absl::Status>>* failed) {
  for (auto it = queue_.begin(); it != queue_.end();) {
    absl::Status why;
    if (Dead(*(*it)->task, now, &why)) {
      ForgetQueuedLocked(**it);
      failed->push_back({*it, why});
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
}

void Scheduler::AdmitLocked(int free_rows, absl::Time now, std::vector<Row>* admitted) {
  while (free_rows > 0 && !queue_.empty() && queue_.front()->encoded) {
    std::shared_ptr<TaskState>& front = queue_.front();
    const int take = std::min(free_rows, front->task->num_samples - front->next_sample);
    if (front->next_sample == 0) front->first_admitted = now;
    for (int i = 0; i < take; ++i) {
      const int k = front->next_sample++;
      admitted->push_back(Row{front, k, 0, std::move(front->z0[k]), {}});
    }
    queued_samples_ -= take;
    ready_samples_ -= take;
    free_rows -= take;
    if (front->next_sample == front->task->num_samples) queue_.pop_front();
  }
}

bool Scheduler::WaitAndAdmit(
    std::vector<Row>* admitted,
    std::vector<std::pair<std::shared_ptr<TaskState>, absl::Status>>* failed) {
  absl::MutexLock lock(&mu_);
  while (true) {
    if (abort_) {
      for (auto& task : queue_) {
        failed->push_back(
            {task, absl::UnavailableError("server shut down before the request ran")});
      }
      queue_.clear();
      queued_samples_ = 0;
      ready_samples_ = 0;
      active_samples_ = 0;
      return false;
    }
    const absl::Time now = clock_->Now();
    DropDeadQueuedLocked(now, failed);
    if (!active_.empty()) {
      // Busy: keep stepping; continuous batching fills the free rows with the samples the codec
      // thread has encoded, request mode does not.
      if (options_.mode == BatchingMode::kStep) {
        AdmitLocked(options_.max_batch - static_cast<int>(active_.size()), now, admitted);
      }
      break;
    }
    if (queue_.empty()) {
      if (stopping_) {
        active_samples_ = 0;
        return false;
      }
      if (!failed->empty()) break;  // deliver those failures before sleeping
      mu_.Await(absl::Condition(this, &Scheduler::HasWorkLocked));
      continue;
    }
    if (options_.mode == BatchingMode::kRequest && !RequestBatchReadyLocked(now)) {
      auto full = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return queued_samples_ >= options_.max_batch || stopping_ || abort_;
      };
      clock_->AwaitWithDeadline(&mu_, absl::Condition(&full),
                                queue_.front()->enqueued + options_.max_queue_delay);
      continue;
    }
    // Idle batch: wait for the codec thread's latents — the first sample in step mode, the
    // whole batch (up to max_batch queued samples) in request mode.
    const int64_t need = options_.mode == BatchingMode::kStep
                             ? 1
                             : std::min<int64_t>(options_.max_batch, queued_samples_);
    if (ReadyAtFrontLocked() < need) {
      auto ready = [this, need]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return abort_ || queue_.empty() ||
               ReadyAtFrontLocked() >= std::min<int64_t>(need, queued_samples_);
      };
      mu_.Await(absl::Condition(&ready));
      continue;
    }
    AdmitLocked(options_.max_batch, now, admitted);
    break;
  }
  active_samples_ = static_cast<int64_t>(active_.size() + admitted->size());
  return true;
}

void Scheduler::StepActive() {
  if (active_.empty()) return;
  int64_t rows_stepped = 0;
  for (auto& group : GroupByBackend(active_)) {
    Backend* const backend = group.first;
    std::vector<Row*>& rows = group.second;
    const int64_t n = static_cast<int64_t>(rows.size());
    std::vector<float> t(n), dt(n), guidance(n);
    std::vector<int64_t> labels(n);
    for (int64_t i = 0; i < n; ++i) {
      const PredictTask& task = *rows[i]->task->task;
      // t_i = i/N and dt = 1/N computed in double, rounded once: the same bits in every batch.
      t[i] = static_cast<float>(static_cast<double>(rows[i]->step) / task.num_steps);
      dt[i] = static_cast<float>(1.0 / task.num_steps);
      guidance[i] = static_cast<float>(task.guidance);
      labels[i] = task.label;
    }
    StepBatch batch;
    absl::Status status = TorchCall("assembling the step batch", [&] {
      batch.z = Concat(rows);
      batch.t = torch::tensor(t, torch::kFloat32);
      batch.dt = torch::tensor(dt, torch::kFloat32);
      batch.guidance = torch::tensor(guidance, torch::kFloat32);
      batch.labels = torch::tensor(labels, torch::kInt64);
    });
    absl::StatusOr<JointLatent> next =
        status.ok() ? backend->Step(batch) : absl::StatusOr<JointLatent>(status);
    batch = StepBatch();  // drop the concatenated inputs before splitting the outputs
    status = next.status();
    if (status.ok()) {
      status = TorchCall("splitting stepped rows", [&] {
        TORCH_CHECK(next->image.size(0) == n, "Step returned ", next->image.size(0), " rows for ",
                    n);
        for (int64_t i = 0; i < n; ++i) {
          rows[i]->z = RowOf(*next, i);
          rows[i]->step += 1;
        }
      });
    }
    if (!status.ok()) {
      for (Row* row : rows) Fail(row->task, status);
      continue;
    }
    rows_stepped += n;
    if (metrics_ != nullptr) {
      metrics_->ObserveBatch(n);
      metrics_->SetGpuMemoryBytes(static_cast<double>(backend->DeviceMemoryBytes()));
    }
  }
  active_.erase(std::remove_if(active_.begin(), active_.end(),
                               [](const Row& r) { return r.task->finished.load(); }),
                active_.end());
  if (metrics_ != nullptr && rows_stepped > 0) metrics_->AddEulerSteps(rows_stepped);
}

void Scheduler::RetireFinished() {
  auto done_end = std::stable_partition(active_.begin(), active_.end(), [](const Row& r) {
    return r.step < r.task->task->num_steps;
  });
  if (done_end == active_.end()) return;
  const absl::Time now = clock_->Now();
  for (auto it = done_end; it != active_.end(); ++it) it->retired = now;
  {
    absl::MutexLock lock(&mu_);
    to_decode_.insert(to_decode_.end(), std::make_move_iterator(done_end),
                      std::make_move_iterator(active_.end()));
  }
  active_.erase(done_end, active_.end());
}

void Scheduler::DecodeRow(Row row) {
  bool abort = false;
  {
    absl::MutexLock lock(&mu_);
    abort = abort_;
  }
  if (abort) {
    Fail(row.task, absl::UnavailableError("server shut down before the request finished"));
    return;
  }
  TaskState& task = *row.task;
  if (task.finished.load()) return;
  absl::StatusOr<std::vector<SampleOutput>> out = task.task->backend->Decode(row.z);
  absl::Status status = out.status();
  if (status.ok() && out->size() != 1) {
    status =
        absl::InternalError(absl::StrFormat("Decode returned %d samples for 1 row", out->size()));
  }
  if (!status.ok()) {
    Fail(row.task, status);
    return;
  }
  task.outputs[row.sample] = std::move(out->front());
  if (task.remaining.fetch_sub(1) == 1) Complete(row.task, row.retired);
}

void Scheduler::DropDeadActive(absl::Time now) {
  for (Row& row : active_) {
    absl::Status why;
    if (!row.task->finished && Dead(*row.task->task, now, &why)) Fail(row.task, why);
  }
  active_.erase(std::remove_if(active_.begin(), active_.end(),
                               [](const Row& r) { return r.task->finished.load(); }),
                active_.end());
}

void Scheduler::Fail(const std::shared_ptr<TaskState>& task, const absl::Status& status) {
  if (task->finished.exchange(true)) return;  // done was called already (either thread)
  {
    // A partly admitted task may still hold queued samples.
    absl::MutexLock lock(&mu_);
    auto it = std::find(queue_.begin(), queue_.end(), task);
    if (it != queue_.end()) {
      ForgetQueuedLocked(*task);
      queue_.erase(it);
    }
  }
  // outputs stay: the decode thread may be writing a sample into them; they go with the task.
  task->task->done(status);
}

void Scheduler::Complete(const std::shared_ptr<TaskState>& task, absl::Time last_retired) {
  if (task->finished.exchange(true)) return;  // failed meanwhile by the batch thread
  const absl::Time now = clock_->Now();
  PredictResult result;
  result.samples = std::move(task->outputs);
  result.queue_seconds = absl::ToDoubleSeconds(task->first_admitted - task->enqueued);
  result.compute_seconds = absl::ToDoubleSeconds(now - task->first_admitted);
  result.decode_seconds = absl::ToDoubleSeconds(now - last_retired);
  if (metrics_ != nullptr) {
    metrics_->ObserveQueueSeconds(result.queue_seconds);
    metrics_->ObserveComputeSeconds(result.compute_seconds);
    metrics_->AddSamples(static_cast<int64_t>(result.samples.size()));
  }
  task->task->done(std::move(result));
}

void Scheduler::PublishGauges() {
  int64_t depth = 0;
  {
    absl::MutexLock lock(&mu_);
    active_samples_ = static_cast<int64_t>(active_.size());
    depth = queued_samples_;
  }
  if (metrics_ != nullptr) {
    metrics_->SetQueueDepth(depth);
    metrics_->SetActiveSamples(static_cast<int64_t>(active_.size()));
  }
}

}  // namespace cellflux::server
