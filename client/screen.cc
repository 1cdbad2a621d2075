#include "client/screen.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/model_info.h"
#include "client/row_outputs.h"
#include "client/row_record.h"
#include "client/screen_outputs.h"
#include "common/util/files.h"
#include "common/util/logging.h"
#include "common/util/progress.h"
#include "common/util/status_macros.h"

namespace cellflux::client {
namespace {

// What makes a finished row reusable on resume: the plan line, the sampling options and the
// model that answered (a screen resumed against another checkpoint redoes every row).
std::string RowFingerprint(const Plan& plan, const PlanRow& row, const SamplingOptions& sampling,
                           const std::string& model_id) {
  std::vector<std::string> parts = plan.header;
  parts.insert(parts.end(), row.fields.begin(), row.fields.end());
  parts.push_back(sampling.Describe());
  parts.push_back(model_id);
  return Fingerprint(parts);
}

// Runs the pending rows on worker threads. Lock order: only mu_ (never held during a call, a
// file write or a progress update).
class ScreenRunner {
 public:
  ScreenRunner(const Connection& connection, const Plan& plan, const ScreenOptions& options,
               const cellflux::v1::GetModelInfoResponse& info, Journal* journal, StopSignal* stop,
               std::vector<const PlanRow*> pending)
      : connection_(connection),
        plan_(plan),
        options_(options),
        info_(info),
        journal_(journal),
        stop_(stop),
        pending_(std::move(pending)) {}

  // Blocks until every worker returned; updates `bar` meanwhile.
  void Run(ProgressBar* bar, int64_t already_done) {
    const int workers = std::min<int>(options_.concurrency, pending_.size());
    {
      absl::MutexLock lock(&mu_);
      running_workers_ = workers;
    }
    std::vector<std::thread> threads;
    for (int i = 0; i < workers; ++i) threads.emplace_back([this] { Worker(); });
    while (true) {
      bool finished = false;
      int64_t ok = 0, failed = 0, retries = 0;
      {
        absl::MutexLock lock(&mu_);
        finished = mu_.AwaitWithTimeout(absl::Condition(this, &ScreenRunner::AllReturned),
                                        absl::Milliseconds(100));
        if (stop_ != nullptr && stop_->abandon_requested()) {
          for (grpc::ClientContext* context : active_) context->TryCancel();
        }
        ok = records_.size();
        failed = failures_.size();
        retries = retries_;
      }
      if (bar != nullptr) {
        bar->Update(already_done + ok + failed,
                    absl::StrCat("ok=", already_done + ok, " failed=", failed,
                                 retries > 0 ? absl::StrCat(" retries=", retries) : ""));
      }
      if (finished) break;
    }
    for (std::thread& thread : threads) thread.join();
  }

  std::map<int, RowRecord> TakeRecords() {
    absl::MutexLock lock(&mu_);
    return std::move(records_);
  }
  std::vector<RowFailure> TakeFailures() {
    absl::MutexLock lock(&mu_);
    std::sort(failures_.begin(), failures_.end(),
              [](const RowFailure& a, const RowFailure& b) { return a.row < b.row; });
    return std::move(failures_);
  }
  int64_t retries() const {
    absl::MutexLock lock(&mu_);
    return retries_;
  }
  int64_t calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  bool AllReturned() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_workers_ == 0; }
  bool Stopping() const { return stop_ != nullptr && stop_->stop_requested(); }
  bool Abandoning() const { return stop_ != nullptr && stop_->abandon_requested(); }

  void Worker() {
    absl::BitGen rng;
    while (!Stopping()) {
      const PlanRow* row = nullptr;
      {
        absl::MutexLock lock(&mu_);
        if (next_ < pending_.size()) row = pending_[next_++];
      }
      if (row == nullptr) break;
      RunRow(*row, rng);
    }
    absl::MutexLock lock(&mu_);
    --running_workers_;
  }

  void Fail(const PlanRow& row, absl::Status status, int attempts) {
    absl::MutexLock lock(&mu_);
    failures_.push_back({row.index, std::move(status), attempts});
  }

  // One Predict call; the context is cancellable by Abandon while it runs.
  absl::Status Call(const cellflux::v1::PredictRequest& request,
                    cellflux::v1::PredictResponse* response) {
    grpc::ClientContext context;
    connection_.PrepareContext(&context, options_.deadline_seconds);
    {
      absl::MutexLock lock(&mu_);
      active_.insert(&context);
      ++calls_;
    }
    const grpc::Status status = connection_.stub()->Predict(&context, request, response);
    absl::MutexLock lock(&mu_);
    active_.erase(&context);
    return FromGrpcStatus(status);
  }

  void RunRow(const PlanRow& row, absl::BitGen& rng) {
    const std::string fingerprint = RowFingerprint(plan_, row, options_.sampling, info_.model_id());
    auto prepared = PrepareRow(row, info_, options_.sampling);
    if (!prepared.ok()) return Fail(row, prepared.status(), 0);
    prepared->request.mutable_options()->set_priority(options_.priority);
    cellflux::v1::PredictResponse response;
    int attempts = 0;
    while (true) {
      if (Abandoning()) return;  // left undone; a resumed run redoes it
      ++attempts;
      response.Clear();
      absl::Status status = Call(prepared->request, &response);
      if (status.ok()) break;
      if (Abandoning()) return;
      if (!IsRetryable(status.code()) || attempts > options_.retry.max_retries) {
        return Fail(row, std::move(status), attempts);
      }
      {
        absl::MutexLock lock(&mu_);
        ++retries_;
      }
      // A stop during the backoff abandons the row rather than holding the screen open.
      if (!SleepUnlessStopped(BackoffSeconds(options_.retry, attempts - 1, rng), stop_)) return;
    }
    auto record =
        WriteRowOutputs(options_.out_dir, row, fingerprint, *prepared, response, info_, attempts);
    if (!record.ok()) return Fail(row, record.status(), attempts);
    if (absl::Status journaled = journal_->Append(row.index, fingerprint); !journaled.ok()) {
      return Fail(row, std::move(journaled), attempts);
    }
    absl::MutexLock lock(&mu_);
    records_.emplace(row.index, *std::move(record));
  }

  const Connection& connection_;
  const Plan& plan_;
  const ScreenOptions& options_;
  const cellflux::v1::GetModelInfoResponse& info_;
  Journal* const journal_;
  StopSignal* const stop_;
  const std::vector<const PlanRow*> pending_;

  mutable absl::Mutex mu_;
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  int running_workers_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_set<grpc::ClientContext*> active_ ABSL_GUARDED_BY(mu_);
  std::map<int, RowRecord> records_ ABSL_GUARDED_BY(mu_);
  std::vector<RowFailure> failures_ ABSL_GUARDED_BY(mu_);
  int64_t retries_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::Status ScreenOptions::Validate() const {
  if (out_dir.empty()) return absl::InvalidArgumentError("--out is required");
  if (concurrency < 1) return absl::InvalidArgumentError("--concurrency must be ≥ 1");
  if (deadline_seconds <= 0) return absl::InvalidArgumentError("--deadline must be > 0 seconds");
  if (report_max_rows < 0) return absl::InvalidArgumentError("report_max_rows must be ≥ 0");
  CF_RETURN_IF_ERROR(retry.Validate());
  return sampling.Validate(nullptr);
}

absl::StatusOr<ScreenSummary> RunScreen(const Connection& connection, const Plan& plan,
                                        const ScreenOptions& options, StopSignal* stop) {
  CF_RETURN_IF_ERROR(options.Validate());
  const auto start = std::chrono::steady_clock::now();
  CF_RETURN_IF_ERROR(MakeDirs(options.out_dir));
  CF_ASSIGN_OR_RETURN(auto info, FetchModelInfo(connection, options.retry,
                                                std::min(options.deadline_seconds, 60.0), stop));
  CF_RETURN_IF_ERROR(options.sampling.Validate(&info));
  CF_ASSIGN_OR_RETURN(auto journal, Journal::Open(options.out_dir));
  if (!options.resume) CF_RETURN_IF_ERROR(journal->Clear());

  ScreenSummary summary;
  summary.rows_total = static_cast<int>(plan.rows.size());
  std::vector<const PlanRow*> pending;
  std::map<int, RowRecord> records;
  for (const PlanRow& row : plan.rows) {
    const std::string fingerprint = RowFingerprint(plan, row, options.sampling, info.model_id());
    if (journal->IsDone(row.index, fingerprint)) {
      auto record = ReadRowRecord(options.out_dir, row.index);
      if (record.ok() && record->fingerprint == fingerprint) {
        records.emplace(row.index, *std::move(record));
        continue;
      }
      CF_LOG(WARNING) << RowName(row.index) << " is journaled but its record is unusable ("
                      << (record.ok() ? "fingerprint differs" : record.status().ToString())
                      << "); redoing it";
    }
    pending.push_back(&row);
  }
  summary.rows_skipped = static_cast<int>(records.size());
  if (summary.rows_skipped > 0) {
    CF_LOG(INFO) << "resuming " << options.out_dir << ": " << summary.rows_skipped << " of "
                 << summary.rows_total << " rows already done";
  }

  ProgressOptions progress;
  progress.label = "screen";
  progress.unit = "rows";
  progress.plain_interval_seconds = options.progress_interval_seconds;
  progress.force_plain = options.force_plain_progress;
  progress.enabled = options.progress;
  ProgressBar bar(summary.rows_total, progress);

  ScreenRunner runner(connection, plan, options, info, journal.get(), stop, std::move(pending));
  runner.Run(&bar, summary.rows_skipped);
  std::map<int, RowRecord> new_records = runner.TakeRecords();
  summary.failures = runner.TakeFailures();
  const std::vector<RowFailure>& failures = summary.failures;
  summary.rows_succeeded = static_cast<int>(new_records.size());
  summary.rows_failed = static_cast<int>(failures.size());
  summary.rows_not_run =
      summary.rows_total - summary.rows_skipped - summary.rows_succeeded - summary.rows_failed;
  summary.retries = runner.retries();
  summary.predict_calls = runner.calls();
  summary.stopped = stop != nullptr && stop->stop_requested();
  bar.Finish(absl::StrCat(
      "ok=", summary.rows_skipped + summary.rows_succeeded, " failed=", summary.rows_failed,
      summary.rows_not_run > 0 ? absl::StrCat(" not run=", summary.rows_not_run) : ""));

  records.merge(new_records);
  std::vector<RowRecord> ordered;
  ordered.reserve(records.size());
  for (auto& [row, record] : records) ordered.push_back(std::move(record));
  CF_RETURN_IF_ERROR(
      WriteScreenOutputs(options.out_dir, plan, ordered, failures, options.report_max_rows));
  summary.elapsed_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace cellflux::client
