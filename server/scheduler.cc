#include "server/scheduler.h"

#include <pthread.h>
#include <torch/torch.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"
#include "common/flow/sampler.h"
#include "common/torch/tensors.h"

namespace cellflux::server {
namespace {

// Rows grouped by backend, each group in row order (usually a single group).
std::vector<std::pair<Backend*, std::vector<Sample*>>> RowsByBackend(std::vector<Sample>& rows) {
  std::vector<std::pair<Backend*, std::vector<Sample*>>> groups;
  for (Sample& row : rows) {
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

JointLatent LatentRow(const JointLatent& z, int64_t i) {
  JointLatent row;
  row.image = z.image.narrow(0, i, 1);
  if (z.gene.defined()) row.gene = z.gene.narrow(0, i, 1);
  return row;
}

// The latent each row is evaluated at this forward: z, or a Heun row's predictor.
JointLatent EvaluationBatch(const std::vector<Sample*>& rows) {
  std::vector<torch::Tensor> images, genes;
  for (const Sample* r : rows) {
    const JointLatent& z = r->substep == 1 ? r->z_mid : r->z;
    images.push_back(z.image);
    if (z.gene.defined()) genes.push_back(z.gene);
  }
  JointLatent z;
  z.image = torch::cat(images, 0);                    // [N, C, h, w]
  if (!genes.empty()) z.gene = torch::cat(genes, 0);  // [N, G]
  return z;
}

// Advances one row by the forward's output `out` (z_eval + dt·v(z_eval, t_eval)).
void AdvanceRow(Sample* row, JointLatent out) {
  if (row->task->task->sampler == SamplerKind::kHeun) {
    if (row->substep == 0) {
      row->z_mid = std::move(out);  // the predictor at t_{step+1}
      row->substep = 1;
      return;
    }
    row->z = HeunAverage(row->z, out);
    row->z_mid = JointLatent();
    row->substep = 0;
  } else {
    row->z = std::move(out);
  }
  row->step += 1;
  SetState(row, SampleState::kRunning);  // running(step k) → running(step k + 1)
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
  if (batch_turn < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("batch_turn must be ≥ 1, got %d", batch_turn));
  }
  if (codec_threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("codec_threads must be ≥ 1, got %d", codec_threads));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(const SchedulerOptions& options,
                                                             ServerMetrics* metrics) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  std::unique_ptr<Scheduler> scheduler(new Scheduler(options, metrics));
  Scheduler* self = scheduler.get();
  scheduler->thread_ = std::thread([self] { self->Run(); });
  return scheduler;
}

namespace {
AdmissionQueueOptions QueueOptions(const SchedulerOptions& o, Clock* clock) {
  AdmissionQueueOptions q;
  q.mode = o.mode;
  q.max_batch = o.max_batch;
  q.max_queue = o.max_queue;
  q.max_queue_delay = o.max_queue_delay;
  q.batch_turn = o.batch_turn;
  q.clock = clock;
  return q;
}
}  // namespace

Scheduler::Scheduler(const SchedulerOptions& options, ServerMetrics* metrics)
    : options_(options),
      metrics_(metrics),
      clock_(options.clock != nullptr ? options.clock : DefaultClock()),
      // The callback runs only once a task is pushed, after codec_ exists.
      queue_(QueueOptions(options, clock_), [this] { codec_->NotifyEncodeWork(); }) {
  CodecStageOptions codec;
  codec.threads = options.codec_threads;
  codec_ = std::make_unique<CodecStage>(codec, static_cast<CodecClient*>(this));
}

Scheduler::~Scheduler() {
  Stop(absl::ZeroDuration());
  codec_.reset();  // already finished by the step loop; before queue_ goes
}

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
  const Priority priority = t.priority;
  state->task = std::move(*task);
  if (absl::Status s = queue_.Push(state); !s.ok()) {
    *task = std::move(state->task);  // still the caller's
    return s;
  }
  if (metrics_ != nullptr) {
    metrics_->SetQueuedSamples(priority, queue_.NumQueued(priority));
  }
  return absl::OkStatus();
}

size_t Scheduler::NumEnqueuedTasks() const { return queue_.NumTasks(); }

int64_t Scheduler::SchedulingCapacity(Priority p) const { return queue_.Capacity(p); }

int64_t Scheduler::NumReadySamples() const { return queue_.NumReady(); }

int64_t Scheduler::NumActiveSamples() const {
  absl::MutexLock lock(&mu_);
  return active_samples_;
}

void Scheduler::Stop(absl::Duration grace) {
  absl::MutexLock stop_lock(&stop_mu_);
  if (!thread_.joinable()) return;
  queue_.Close();
  bool drained = false;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time deadline =
        grace == absl::InfiniteDuration() ? absl::InfiniteFuture() : clock_->Now() + grace;
    auto exited = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return exited_; };
    drained = clock_->AwaitWithDeadline(&mu_, absl::Condition(&exited), deadline);
  }
  if (!drained) {
    // Grace over: the step loop fails what is queued or in the batch at its next boundary, the
    // codec stage fails the rows waiting for a decode.
    queue_.Abort();
    codec_->Abort();
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
  // Decode (or, after an abort, fail) what was retired; then no thread calls the backend.
  codec_->Finish();
  absl::MutexLock lock(&mu_);
  exited_ = true;
}

bool Scheduler::Iterate() {
  const int free_rows = options_.max_batch - static_cast<int>(active_.size());
  if (free_rows > 0) codec_->Help(/*decodes=*/active_.empty() || options_.help_decode_in_flight);
  Admission admission = queue_.Admit(free_rows, /*idle=*/active_.empty());
  for (auto& [task, status] : admission.failed) Fail(task, status);
  if (admission.exit) {
    // Aborted, or drained after Stop: fail whatever is still in the batch.
    const absl::Status why = absl::UnavailableError("server shut down before the request finished");
    for (std::vector<Sample>* rows : {&active_, &admission.admitted}) {
      for (Sample& row : *rows) {
        Fail(row.task, why);
        Drop(&row);
      }
    }
    active_.clear();
    PublishGauges();
    return false;
  }
  DropDeadActive(clock_->Now());
  for (Sample& row : admission.admitted) {
    if (row.task->finished()) {
      Drop(&row);
    } else {
      active_.push_back(std::move(row));
    }
  }
  StepActive();
  RetireFinished();
  PublishGauges();
  return true;
}

void Scheduler::StepActive() {
  if (active_.empty()) return;
  int64_t rows_stepped = 0;
  for (auto& [backend, rows] : RowsByBackend(active_)) {
    const int64_t n = static_cast<int64_t>(rows.size());
    std::vector<float> t(n), dt(n), guidance(n);
    std::vector<int64_t> labels(n);
    for (int64_t i = 0; i < n; ++i) {
      const PredictTask& task = *rows[i]->task->task;
      // t = (step + substep)/N and dt = 1/N computed in double, rounded once: the same bits in
      // every batch (and as SampleEuler/SampleHeun).
      t[i] = static_cast<float>(static_cast<double>(rows[i]->step + rows[i]->substep) /
                                task.num_steps);
      dt[i] = static_cast<float>(1.0 / task.num_steps);
      guidance[i] = static_cast<float>(task.guidance);
      labels[i] = task.label;
    }
    StepBatch batch;
    absl::Status status = TorchCall("assembling the step batch", [&] {
      batch.z = EvaluationBatch(rows);
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
        for (int64_t i = 0; i < n; ++i) AdvanceRow(rows[i], LatentRow(*next, i));
      });
    }
    if (!status.ok()) {
      for (Sample* row : rows) Fail(row->task, status);
      continue;
    }
    rows_stepped += n;
    if (metrics_ != nullptr) {
      metrics_->ObserveBatch(n);
      metrics_->SetGpuMemoryBytes(static_cast<double>(backend->DeviceMemoryBytes()));
    }
  }
  DropDeadActive(absl::InfinitePast());  // rows of tasks that failed in this forward
  if (metrics_ != nullptr && rows_stepped > 0) metrics_->AddEulerSteps(rows_stepped);
}

void Scheduler::RetireFinished() {
  auto done_end = std::stable_partition(active_.begin(), active_.end(), [](const Sample& r) {
    return r.step < r.task->task->num_steps;
  });
  if (done_end == active_.end()) return;
  const absl::Time now = clock_->Now();
  std::vector<Sample> retired;
  for (auto it = done_end; it != active_.end(); ++it) {
    it->retired = now;
    SetState(&*it, SampleState::kDecoding);
    retired.push_back(std::move(*it));
  }
  active_.erase(done_end, active_.end());
  // Their last writes (Step, Heun's average) are queued: each backend orders its Decodes after
  // them. Rows of a backend that cannot fail their tasks here instead of being decoded.
  std::vector<Sample> to_decode;
  for (auto& [backend, rows] : RowsByBackend(retired)) {
    const absl::Status handed = backend->HandOffForDecode();
    for (Sample* row : rows) {
      if (handed.ok()) {
        to_decode.push_back(std::move(*row));
      } else {
        Decoded(std::move(*row), handed);
      }
    }
  }
  if (!to_decode.empty()) codec_->SubmitDecode(std::move(to_decode));
}

void Scheduler::DropDeadActive(absl::Time now) {
  for (Sample& row : active_) {
    absl::Status why;
    if (!row.task->finished() && TaskIsDead(*row.task->task, now, &why)) Fail(row.task, why);
  }
  auto dead = std::stable_partition(active_.begin(), active_.end(),
                                    [](const Sample& r) { return !r.task->finished(); });
  for (auto it = dead; it != active_.end(); ++it) Drop(&*it);
  active_.erase(dead, active_.end());
}

std::shared_ptr<TaskState> Scheduler::ClaimEncode() { return queue_.ClaimEncode(); }

void Scheduler::Encoded(const std::shared_ptr<TaskState>& task,
                        absl::StatusOr<std::vector<JointLatent>> rows) {
  if (!rows.ok()) {
    Fail(task, rows.status());
    return;
  }
  queue_.EncodeDone(task, *std::move(rows));
}

void Scheduler::Decoded(Sample row, absl::StatusOr<SampleOutput> output) {
  TaskState& task = *row.task;
  if (!output.ok()) Fail(row.task, output.status());
  if (task.finished()) {
    Drop(&row);
    return;
  }
  task.outputs[row.index] = *std::move(output);
  SetState(&row, SampleState::kDone);
  if (task.remaining.fetch_sub(1) == 1) Complete(row.task, row.retired);
}

void Scheduler::Fail(const std::shared_ptr<TaskState>& task, const absl::Status& status) {
  if (!task->Finish(EndStateFor(status))) return;  // done was called already (another thread)
  // A partly admitted task may still have samples in the queue.
  queue_.Remove(task, status);
  // outputs stay: a codec worker (or the step loop) may be writing a sample into them; they go with
  // the task.
  task->task->done(status);
}

void Scheduler::Complete(const std::shared_ptr<TaskState>& task, absl::Time last_retired) {
  if (!task->Finish(SampleState::kDone)) return;  // failed meanwhile by another thread
  const absl::Time now = clock_->Now();
  PredictResult result;
  result.samples = std::move(task->outputs);
  result.queue_seconds = absl::ToDoubleSeconds(task->first_admitted - task->enqueued);
  result.compute_seconds = absl::ToDoubleSeconds(now - task->first_admitted);
  result.decode_seconds = absl::ToDoubleSeconds(now - last_retired);
  if (metrics_ != nullptr) {
    const Priority p = task->task->priority;
    metrics_->ObserveQueueSeconds(p, result.queue_seconds);
    metrics_->ObserveComputeSeconds(result.compute_seconds);
    metrics_->AddSamples(p, static_cast<int64_t>(result.samples.size()));
  }
  task->task->done(std::move(result));
}

void Scheduler::PublishGauges() {
  {
    absl::MutexLock lock(&mu_);
    active_samples_ = static_cast<int64_t>(active_.size());
  }
  if (metrics_ != nullptr) {
    for (Priority p : {Priority::kInteractive, Priority::kBatch}) {
      metrics_->SetQueuedSamples(p, queue_.NumQueued(p));
    }
    metrics_->SetActiveSamples(static_cast<int64_t>(active_.size()));
  }
}

}  // namespace cellflux::server
