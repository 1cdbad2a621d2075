#include "server/codec_stage.h"

#include <pthread.h>
#include <torch/torch.h>

#include <utility>

#include "absl/strings/str_format.h"
#include "common/torch/tensors.h"

namespace cellflux::server {
namespace {

// One Encode call for all of the task's seeds, split into [1, ...] rows.
absl::StatusOr<std::vector<JointLatent>> EncodeTaskRows(const PredictTask& t) {
  EncodeItem item{t.control, {}};
  for (int i = 0; i < t.num_samples; ++i) item.seeds.push_back(t.seed + static_cast<uint64_t>(i));
  absl::StatusOr<JointLatent> z = t.backend->Encode({item});
  if (!z.ok()) return z.status();
  std::vector<JointLatent> rows;
  absl::Status status = TorchCall("splitting encoded rows", [&] {
    TORCH_CHECK(z->image.size(0) == t.num_samples, "Encode returned ", z->image.size(0),
                " rows for ", t.num_samples, " seeds");
    for (int64_t i = 0; i < t.num_samples; ++i) {
      JointLatent row;
      row.image = z->image.narrow(0, i, 1);
      if (z->gene.defined()) row.gene = z->gene.narrow(0, i, 1);
      rows.push_back(std::move(row));
    }
  });
  if (!status.ok()) return status;
  return rows;
}

absl::StatusOr<SampleOutput> DecodeOneRow(const Sample& row) {
  absl::StatusOr<std::vector<SampleOutput>> out = row.task->task->backend->Decode(row.z);
  if (!out.ok()) return out.status();
  if (out->size() != 1) {
    return absl::InternalError(
        absl::StrFormat("Decode returned %d samples for 1 row", out->size()));
  }
  return std::move(out->front());
}

}  // namespace

CodecStage::CodecStage(const CodecStageOptions& options, CodecClient* client)
    : options_(options), client_(client) {
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    workers_.emplace_back([this] { Work(); });
  }
}

CodecStage::~CodecStage() { Finish(); }

void CodecStage::NotifyEncodeWork() {
  absl::MutexLock lock(&mu_);
  encode_hint_ = true;
}

void CodecStage::SubmitDecode(std::vector<Sample> rows) {
  absl::MutexLock lock(&mu_);
  for (Sample& s : rows) decodes_.push_back(std::move(s));
}

void CodecStage::Abort() {
  absl::MutexLock lock(&mu_);
  aborted_ = true;
}

void CodecStage::Finish() {
  absl::MutexLock finish_lock(&finish_mu_);
  {
    absl::MutexLock lock(&mu_);
    finishing_ = true;
  }
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
}

void CodecStage::Work() {
  // Thread-local: every tensor op of this thread skips autograd bookkeeping. The intra-op thread
  // count is fixed before the first op (LibTorch otherwise sets it at the first parallel op).
  c10::InferenceMode inference_mode;
  at::internal::lazy_init_num_threads();
  pthread_setname_np(pthread_self(), "cf-codec");  // as `top -H`, perf and the tests see it
  while (true) {
    bool try_encode = false;
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !decodes_.empty() || encode_hint_ || finishing_;
      };
      mu_.Await(absl::Condition(&has_work));
      if (finishing_ && decodes_.empty()) return;
      try_encode = encode_hint_ && !finishing_;
      encode_hint_ = false;
    }
    // Encodes first: they keep the batch full.
    if (try_encode && RunEncode(/*worker=*/true)) {
      absl::MutexLock lock(&mu_);
      encode_hint_ = true;  // there may be more
      continue;
    }
    Sample row;
    {
      absl::MutexLock lock(&mu_);
      if (decodes_.empty()) continue;
      row = std::move(decodes_.front());
      decodes_.pop_front();
      ++busy_;
    }
    RunDecode(std::move(row), /*worker=*/true);
  }
}

bool CodecStage::Help(bool decodes) {
  Sample row;
  bool have_row = false;
  {
    absl::MutexLock lock(&mu_);
    if (busy_ < static_cast<int>(workers_.size()) || finishing_) return false;
    if (decodes && !decodes_.empty()) {
      row = std::move(decodes_.front());
      decodes_.pop_front();
      have_row = true;
    }
  }
  if (have_row) {
    RunDecode(std::move(row), /*worker=*/false);
    return true;
  }
  return RunEncode(/*worker=*/false);
}

bool CodecStage::RunEncode(bool worker) {
  std::shared_ptr<TaskState> task = client_->ClaimEncode();
  if (task == nullptr) return false;
  if (worker) {
    absl::MutexLock lock(&mu_);
    ++busy_;
  }
  absl::StatusOr<std::vector<JointLatent>> rows = EncodeTaskRows(*task->task);
  if (worker) {
    absl::MutexLock lock(&mu_);
    --busy_;
  }
  client_->Encoded(task, std::move(rows));
  return true;
}

// `worker`: called by a worker that counted itself busy when it took the row.
void CodecStage::RunDecode(Sample row, bool worker) {
  bool aborted = false;
  {
    absl::MutexLock lock(&mu_);
    aborted = aborted_;
  }
  absl::StatusOr<SampleOutput> out =
      aborted ? absl::UnavailableError("server shut down before the request finished")
      : row.task->finished() ? absl::CancelledError("task already finished")
                             : DecodeOneRow(row);
  if (worker) {
    absl::MutexLock lock(&mu_);
    --busy_;
  }
  client_->Decoded(std::move(row), std::move(out));
}

}  // namespace cellflux::server
