// Loader: batches of CellPaintingDataset items, assembled by worker threads ahead of the trainer.
//
//   auto loader = Loader::Create(dataset, {.batch_size = 64, .seed = 7, .rank = r, .world_size = w});
//   for (int64_t epoch = 0; ...; ++epoch) {
//     (*loader)->StartEpoch(epoch);
//     while (true) {
//       auto batch = (*loader)->Next();       // blocks; StatusOr<optional<Batch>>
//       if (!batch.ok()) return batch.status();  // a bad sample under OnBadSample::kError
//       if (!batch->has_value()) break;        // end of this rank's epoch
//       Train(**batch);
//     }
//   }
//
// Order. Each epoch's item order is a permutation of the dataset drawn from (seed, epoch)
// (identity when shuffle = false). Rank r of world_size W takes positions r, r+W, r+2W, … of it,
// so the W ranks' shards are disjoint and together cover the epoch exactly once (shard sizes differ
// by at most one; even_shards drops the last n mod W positions so every rank has the same count,
// which collective training needs). Consecutive runs of batch_size shard items form the batches.
// Every batch is a pure function of (dataset seed, loader seed, epoch, rank, W, batch index), and
// Next() hands batches out in index order, so the stream is bitwise identical for any number of
// workers and any thread timing.
//
// Threads. num_workers threads per epoch, each building whole batches; at most prefetch_batches
// batches are built or waiting beyond the one the caller holds (memory bound: prefetch × batch
// bytes; a 64 × 5 × 256² float batch with its controls is ≈ 168 MB). Batch memory is recycled
// through a small pool once the caller drops a batch (its tensors are views of one block). Next(), StartEpoch() and the
// destructor must be called from one thread (the consumer). StartEpoch() abandons the previous
// epoch; the destructor cancels the current one: workers stop after the item they are reading and
// are joined, so no thread outlives the Loader.
//
// Bad samples (dataset.h lists them). kError: Next() returns the first failing item's error (in
// stream order) and keeps returning it until the next StartEpoch(). kSkip: the item is left out of
// its batch (which is then smaller; an all-bad batch is dropped), counted per reason, the first
// max_logged_skips per epoch are logged with their message, and a summary line is logged at the end
// of the epoch. Errors without a bad-sample reason (e.g. out of memory) are never skipped.
#ifndef CELLFLUX_COMMON_DATA_LOADER_H_
#define CELLFLUX_COMMON_DATA_LOADER_H_

#include <torch/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/data/dataset.h"

namespace cellflux::data {

struct LoaderOptions {
  int64_t batch_size = 64;   // items per batch (the last one may be smaller unless drop_last)
  int num_workers = 2;       // threads building batches, ≥ 1
  int prefetch_batches = 4;  // batches built ahead of the consumer, ≥ 1
  bool shuffle = true;       // per-epoch permutation from (seed, epoch); false: dataset order
  uint64_t seed = 0;         // shuffle seed (item contents use DatasetOptions::seed)
  int rank = 0;              // this process's shard, 0 ≤ rank < world_size
  int world_size = 1;
  bool even_shards = false;  // drop the last (n mod world_size) permuted items of every epoch
  bool drop_last = false;    // drop this rank's final partial batch
  OnBadSample on_bad_sample = OnBadSample::kError;
  int max_logged_skips = 10;  // per epoch, under kSkip

  absl::Status Validate() const;
};

struct Batch {
  int64_t epoch = 0;
  int64_t index = 0;              // batch index within this rank's epoch
  torch::Tensor perturbed;        // [B, 5, S, S] float32 in [-1, 1]
  torch::Tensor perturbed_expr;   // [B, G] float32, standardised
  torch::Tensor control;          // [B, 5, S, S]
  torch::Tensor control_expr;     // [B, G]
  torch::Tensor labels;           // [B] int64 vocabulary rows, kNotInVocabulary (-1) outside it
  std::vector<int64_t> pair_ids;  // [B]
  std::vector<SampleIds> ids;     // [B]
  int64_t size() const { return static_cast<int64_t>(pair_ids.size()); }
};

class BatchMemoryPool;

class Loader {
 public:
  // INVALID_ARGUMENT for bad options or a null dataset.
  static absl::StatusOr<std::unique_ptr<Loader>> Create(
      std::shared_ptr<const CellPaintingDataset> dataset, const LoaderOptions& options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Starts (or restarts) `epoch` at batch `first_batch` (resuming mid-epoch), abandoning any
  // epoch in progress. Never blocks on I/O.
  void StartEpoch(int64_t epoch, int64_t first_batch = 0);

  // The next batch of the current epoch; nullopt at its end; FAILED_PRECONDITION before the first
  // StartEpoch(). Blocks until the batch is built.
  absl::StatusOr<std::optional<Batch>> Next();

  // This rank's items of `epoch` in stream order (dataset indices). Pure; used for sharding
  // checks and by tools that need to know which pairs an epoch covers.
  std::vector<int64_t> EpochItems(int64_t epoch) const;
  // Batches of this rank in `epoch` (before skips).
  int64_t NumBatches(int64_t epoch) const;

  // Skipped items by reason: in the current epoch (of batches delivered so far), and since creation.
  std::map<std::string, int64_t> SkippedThisEpoch() const;
  std::map<std::string, int64_t> SkippedTotal() const;

  const LoaderOptions& options() const { return options_; }

  // Implementation details follow; users need not read.
 private:
  struct Skip {
    std::string reason;
    std::string message;
  };
  struct Built {
    absl::Status status;  // first error (kError), else OK
    std::optional<Batch> batch;
    std::vector<Skip> skips;
  };

  Loader(std::shared_ptr<const CellPaintingDataset> dataset, const LoaderOptions& options);
  void StopWorkers();
  void WorkerLoop();
  Built BuildBatch(int64_t index);
  bool WorkAvailable() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void LogEpochSummary();

  const std::shared_ptr<const CellPaintingDataset> dataset_;
  const LoaderOptions options_;
  const std::shared_ptr<BatchMemoryPool> pool_;  // batch memory, shared with live batches

  // Set by StartEpoch() before workers start, read-only while they run.
  int64_t epoch_ = -1;
  std::vector<int64_t> items_;  // this rank's items of epoch_, stream order
  int64_t num_batches_ = 0;
  std::vector<std::thread> workers_;
  std::atomic<bool> cancelled_{false};  // checked between items so shutdown is prompt

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t next_claim_ ABSL_GUARDED_BY(mu_) = 0;    // next batch index a worker takes
  int64_t next_deliver_ ABSL_GUARDED_BY(mu_) = 0;  // next batch index Next() returns
  int64_t failed_at_ ABSL_GUARDED_BY(mu_) = -1;    // first batch that failed (kError), -1 none
  std::map<int64_t, Built> ready_ ABSL_GUARDED_BY(mu_);

  // Consumer-thread state.
  absl::Status sticky_error_;
  bool summary_logged_ = false;
  int64_t logged_skips_ = 0;
  mutable absl::Mutex stats_mu_;
  std::map<std::string, int64_t> skipped_epoch_ ABSL_GUARDED_BY(stats_mu_);
  std::map<std::string, int64_t> skipped_total_ ABSL_GUARDED_BY(stats_mu_);
};

}  // namespace cellflux::data

#endif  // CELLFLUX_COMMON_DATA_LOADER_H_
