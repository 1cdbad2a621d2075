// `cellflux-client screen`: runs every row of a plan against the server and writes the outputs.
//
// Flow: GetModelInfo (retried while the server warms up) → rows already in the journal with the
// same fingerprint are skipped → `concurrency` worker threads each take the next row, build its
// request, call Predict (blocking, with a per-call deadline) and write the row's files → the main
// thread draws the progress bar and waits → results.csv, failures.csv, predictions.gct and
// report.html are (re)written from every done row, including rows done by earlier runs.
//
// Retries: UNAVAILABLE and RESOURCE_EXHAUSTED are retried up to retry.max_retries times with
// jittered exponential backoff (retry.h); any other error fails the row at once and lands in
// failures.csv with the server's message. Failed rows are tried again by a resumed run.
//
// Stopping (stop_signal.h): after RequestStop no new row starts and rows in flight finish; after
// Abandon in-flight calls are cancelled. A stopped screen still writes the summary files for the
// rows done so far; rerunning with the same out_dir resumes.
//
// Blocking: RunScreen blocks until every started row finished or was abandoned.
#ifndef CELLFLUX_CLIENT_SCREEN_H_
#define CELLFLUX_CLIENT_SCREEN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/connection.h"
#include "client/plan.h"
#include "client/request_builder.h"
#include "client/retry.h"
#include "client/screen_outputs.h"
#include "client/stop_signal.h"

namespace cellflux::client {

struct ScreenOptions {
  std::string out_dir;
  int concurrency = 4;            // simultaneous Predict calls
  double deadline_seconds = 600;  // per Predict call, seconds
  RetryPolicy retry;
  SamplingOptions sampling;
  // Admission class sent with every row (PredictOptions.priority): `screen` sends BATCH so a
  // screen never holds up interactive users; `predict` sends INTERACTIVE.
  cellflux::v1::Priority priority = cellflux::v1::INTERACTIVE;
  bool resume = true;    // false: forget the journal and redo every row
  bool progress = true;  // draw the progress bar on stderr
  bool force_plain_progress = false;
  double progress_interval_seconds = 10;  // non-TTY progress line period, seconds
  int report_max_rows = 500;              // rows shown in report.html (the rest are counted)

  absl::Status Validate() const;
};

struct ScreenSummary {
  int rows_total = 0;
  int rows_skipped = 0;    // done by an earlier run
  int rows_succeeded = 0;  // done by this run
  int rows_failed = 0;
  int rows_not_run = 0;  // left undone because of a stop
  int64_t retries = 0;
  int64_t predict_calls = 0;
  bool stopped = false;
  double elapsed_seconds = 0;
  std::vector<RowFailure> failures;  // this run's, by row

  bool AllSucceeded() const { return rows_skipped + rows_succeeded == rows_total; }
};

// Errors only for what stops the whole screen (server unreachable after retries, out_dir not
// writable, bad options); per-row failures are counted in the summary and in failures.csv.
// `stop` may be null.
absl::StatusOr<ScreenSummary> RunScreen(const Connection& connection, const Plan& plan,
                                        const ScreenOptions& options, StopSignal* stop);

}  // namespace cellflux::client

#endif  // CELLFLUX_CLIENT_SCREEN_H_
