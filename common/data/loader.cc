#include "common/data/loader.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/data/pairing.h"
#include "common/torch/tensors.h"
#include "common/util/logging.h"

namespace cellflux::data {

// Recycles batch memory. A fresh multi-megabyte block comes from mmap and is page-faulted in on
// first touch, every batch; on the 2-core development VM that cost more CPU than decoding the TIFFs
// (bench/loader_bench.cc). Blocks go back to the pool when the last tensor of their batch dies,
// wherever that happens (the trainer's thread), so the pool is shared with the tensors' deleters.
class BatchMemoryPool : public std::enable_shared_from_this<BatchMemoryPool> {
 public:
  explicit BatchMemoryPool(size_t max_free) : max_free_(max_free) {}
  ~BatchMemoryPool() {
    for (auto& [bytes, ptr] : free_) std::free(ptr);
  }

  // A block of `bytes` (64-byte aligned) that returns to the pool when the last copy is dropped.
  // Null when out of memory.
  std::shared_ptr<void> Get(size_t bytes) {
    void* ptr = nullptr;
    {
      absl::MutexLock lock(&mu_);
      auto it = free_.find(bytes);
      if (it != free_.end()) {
        ptr = it->second;
        free_.erase(it);
      }
    }
    if (ptr == nullptr) ptr = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (ptr == nullptr) return nullptr;
    std::shared_ptr<BatchMemoryPool> self = shared_from_this();
    return std::shared_ptr<void>(ptr, [self, bytes](void* p) { self->Put(p, bytes); });
  }

 private:
  void Put(void* ptr, size_t bytes) {
    {
      absl::MutexLock lock(&mu_);
      if (free_.size() < max_free_) {
        free_.emplace(bytes, ptr);
        return;
      }
    }
    std::free(ptr);
  }

  const size_t max_free_;
  absl::Mutex mu_;
  std::multimap<size_t, void*> free_ ABSL_GUARDED_BY(mu_);
};

namespace {

std::string CountsText(const std::map<std::string, int64_t>& counts) {
  return absl::StrJoin(counts, ", ", [](std::string* out, const auto& kv) {
    absl::StrAppend(out, kv.first, ": ", kv.second);
  });
}

}  // namespace

absl::Status LoaderOptions::Validate() const {
  if (batch_size < 1)
    return absl::InvalidArgumentError(absl::StrCat("batch_size must be >= 1, got ", batch_size));
  if (num_workers < 1)
    return absl::InvalidArgumentError(absl::StrCat("num_workers must be >= 1, got ", num_workers));
  if (prefetch_batches < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("prefetch_batches must be >= 1, got ", prefetch_batches));
  }
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("need 0 <= rank < world_size, got rank ", rank, " of ", world_size));
  }
  if (max_logged_skips < 0) return absl::InvalidArgumentError("max_logged_skips must be >= 0");
  return absl::OkStatus();
}

Loader::Loader(std::shared_ptr<const CellPaintingDataset> dataset, const LoaderOptions& options)
    : dataset_(std::move(dataset)),
      options_(options),
      // Enough blocks for every batch in flight (prefetched, being built, held by the trainer).
      pool_(std::make_shared<BatchMemoryPool>(options.prefetch_batches + options.num_workers + 2)) {
}

absl::StatusOr<std::unique_ptr<Loader>> Loader::Create(
    std::shared_ptr<const CellPaintingDataset> dataset, const LoaderOptions& options) {
  if (dataset == nullptr) return absl::InvalidArgumentError("Loader: null dataset");
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  return std::unique_ptr<Loader>(new Loader(std::move(dataset), options));
}

Loader::~Loader() { StopWorkers(); }

std::vector<int64_t> Loader::EpochItems(int64_t epoch) const {
  std::vector<int64_t> order(dataset_->size());
  std::iota(order.begin(), order.end(), 0);
  if (options_.shuffle) {
    // Seeded by (seed, epoch) only: every rank draws the same permutation, then takes its stride.
    DeterministicRng rng(MixSeeds(options_.seed, static_cast<uint64_t>(epoch)));
    rng.Shuffle(&order);
  }
  const int64_t w = options_.world_size;
  const int64_t n = options_.even_shards ? static_cast<int64_t>(order.size()) / w * w
                                         : static_cast<int64_t>(order.size());
  std::vector<int64_t> mine;
  mine.reserve(n / w + 1);
  for (int64_t pos = options_.rank; pos < n; pos += w) mine.push_back(order[pos]);
  return mine;
}

int64_t Loader::NumBatches(int64_t epoch) const {
  const int64_t n = static_cast<int64_t>(EpochItems(epoch).size()), b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

void Loader::StopWorkers() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    cancelled_.store(true);
  }
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

void Loader::StartEpoch(int64_t epoch, int64_t first_batch) {
  StopWorkers();
  epoch_ = epoch;
  items_ = EpochItems(epoch);
  const int64_t b = options_.batch_size, n = static_cast<int64_t>(items_.size());
  num_batches_ = options_.drop_last ? n / b : (n + b - 1) / b;
  first_batch = std::clamp<int64_t>(first_batch, 0, num_batches_);
  sticky_error_ = absl::OkStatus();
  summary_logged_ = false;
  logged_skips_ = 0;
  {
    absl::MutexLock lock(&stats_mu_);
    skipped_epoch_.clear();
  }
  {
    absl::MutexLock lock(&mu_);
    stop_ = false;
    cancelled_.store(false);
    next_claim_ = first_batch;
    next_deliver_ = first_batch;
    failed_at_ = -1;
    ready_.clear();
  }
  for (int i = 0; i < options_.num_workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

bool Loader::WorkAvailable() const {
  if (next_claim_ >= num_batches_) return false;
  if (failed_at_ >= 0 && next_claim_ > failed_at_) return false;  // the stream ends at the error
  return next_claim_ < next_deliver_ + options_.prefetch_batches;
}

void Loader::WorkerLoop() {
  while (true) {
    int64_t index;
    {
      absl::MutexLock lock(&mu_);
      auto can_proceed = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        if (stop_ || WorkAvailable()) return true;
        // Nothing left to claim in this epoch at all: exit instead of waiting.
        return next_claim_ >= num_batches_ || (failed_at_ >= 0 && next_claim_ > failed_at_);
      };
      mu_.Await(absl::Condition(&can_proceed));
      if (stop_ || !WorkAvailable()) return;
      index = next_claim_++;
    }
    Built built = BuildBatch(index);  // no lock held while reading files
    if (cancelled_.load()) return;
    absl::MutexLock lock(&mu_);
    if (!built.status.ok() && (failed_at_ < 0 || index < failed_at_)) failed_at_ = index;
    ready_.emplace(index, std::move(built));
  }
}

Loader::Built Loader::BuildBatch(int64_t index) {
  Built built;
  const int64_t begin = index * options_.batch_size;
  const int64_t end =
      std::min<int64_t>(begin + options_.batch_size, static_cast<int64_t>(items_.size()));
  const int64_t n = end - begin, s = dataset_->options().image_size, g = dataset_->num_genes();
  const int64_t image = kNumChannels * s * s;
  // One block per batch: [perturbed | control | perturbed_expr | control_expr] floats, then labels.
  const size_t floats = static_cast<size_t>(n * (2 * image + 2 * g));
  std::shared_ptr<void> block = pool_->Get(floats * sizeof(float) + n * sizeof(int64_t));
  if (block == nullptr) {
    built.status = absl::ResourceExhaustedError(
        absl::StrCat("batch ", index, ": cannot allocate ", floats * 4, " bytes"));
    return built;
  }
  float* base = static_cast<float*>(block.get());
  float* perturbed = base;
  float* control = perturbed + n * image;
  float* perturbed_expr = control + n * image;
  float* control_expr = perturbed_expr + n * g;
  int64_t* labels = reinterpret_cast<int64_t*>(base + floats);

  Batch batch;
  batch.epoch = epoch_;
  batch.index = index;
  int64_t k = 0;  // rows filled; a skipped item's row is reused by the next one
  for (int64_t pos = begin; pos < end; ++pos) {
    if (cancelled_.load()) return built;
    CellPaintingDataset::Destination dst{perturbed + k * image, control + k * image,
                                         perturbed_expr + k * g, control_expr + k * g};
    SampleIds ids;
    absl::Status status = dataset_->GetInto(items_[pos], epoch_, dst, &labels[k], &ids);
    if (status.ok()) {
      batch.pair_ids.push_back(ids.pair_id);
      batch.ids.push_back(std::move(ids));
      ++k;
      continue;
    }
    std::string reason = BadSampleReason(status);
    if (options_.on_bad_sample == OnBadSample::kSkip && !reason.empty()) {
      built.skips.push_back({std::move(reason), std::string(status.message())});
      continue;
    }
    built.status = status;
    return built;
  }
  if (k == 0) return built;  // every item skipped: no batch

  built.status = TorchCall(absl::StrCat("assembling batch ", index, " of epoch ", epoch_), [&] {
    // Views into the pooled block; each keeps it alive. Rows ≥ k (skipped items) are cut off.
    auto keep = [block](void*) {};
    auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
    batch.perturbed =
        torch::from_blob(perturbed, {k, kNumChannels, s, s}, keep, f32);            // [B, 5, S, S]
    batch.control = torch::from_blob(control, {k, kNumChannels, s, s}, keep, f32);  // [B, 5, S, S]
    batch.perturbed_expr = torch::from_blob(perturbed_expr, {k, g}, keep, f32);     // [B, G]
    batch.control_expr = torch::from_blob(control_expr, {k, g}, keep, f32);         // [B, G]
    batch.labels =
        torch::from_blob(labels, {k}, keep, torch::TensorOptions().dtype(torch::kInt64));  // [B]
  });
  if (built.status.ok()) built.batch = std::move(batch);
  return built;
}

absl::StatusOr<std::optional<Batch>> Loader::Next() {
  if (epoch_ < 0) return absl::FailedPreconditionError("Loader::Next() called before StartEpoch()");
  if (!sticky_error_.ok()) return sticky_error_;
  while (true) {
    Built built;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return next_deliver_ >= num_batches_ || ready_.count(next_deliver_) > 0;
      };
      mu_.Await(absl::Condition(&ready));
      if (next_deliver_ >= num_batches_) break;
      auto it = ready_.find(next_deliver_);
      built = std::move(it->second);
      ready_.erase(it);
      ++next_deliver_;  // frees a prefetch slot: workers' conditions re-evaluate on unlock
    }
    if (!built.skips.empty()) {
      absl::MutexLock lock(&stats_mu_);
      for (const Skip& s : built.skips) {
        ++skipped_epoch_[s.reason];
        ++skipped_total_[s.reason];
      }
    }
    for (const Skip& s : built.skips) {
      if (logged_skips_++ < options_.max_logged_skips)
        CF_LOG(WARNING) << "skipping bad sample (" << s.reason << "): " << s.message;
    }
    if (!built.status.ok()) {
      sticky_error_ = built.status;
      return sticky_error_;
    }
    if (built.batch.has_value()) return std::move(built.batch);
    // An all-skipped batch: go on to the next one.
  }
  LogEpochSummary();
  return std::optional<Batch>();
}

void Loader::LogEpochSummary() {
  if (summary_logged_) return;
  summary_logged_ = true;
  std::map<std::string, int64_t> counts = SkippedThisEpoch();
  if (counts.empty()) return;
  int64_t total = 0;
  for (const auto& [reason, n] : counts) total += n;
  CF_LOG(WARNING) << "epoch " << epoch_ << " (rank " << options_.rank << "/" << options_.world_size
                  << "): skipped " << total << " bad sample(s) (" << CountsText(counts) << ")";
}

std::map<std::string, int64_t> Loader::SkippedThisEpoch() const {
  absl::MutexLock lock(&stats_mu_);
  return skipped_epoch_;
}

std::map<std::string, int64_t> Loader::SkippedTotal() const {
  absl::MutexLock lock(&stats_mu_);
  return skipped_total_;
}

}  // namespace cellflux::data
