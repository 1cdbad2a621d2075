// Progress reporting for long work (prepare, training, screens).
//
// On a terminal: one line redrawn in place ("label [#####.....] 412/1000 41% 12.3 it/s ETA 0:48
// loss=0.12"). Not a terminal (CI logs, files): a plain line every `plain_interval_seconds` and
// at the end. Thread-safe: Update() may be called from any thread.
#ifndef CELLFLUX_COMMON_UTIL_PROGRESS_H_
#define CELLFLUX_COMMON_UTIL_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace cellflux {

struct ProgressOptions {
  std::string label;
  std::string unit = "it";
  double plain_interval_seconds = 10.0;  // non-TTY: at most one line per interval
  FILE* out = stderr;
  bool force_plain = false;  // never draw the in-place bar (tests)
  bool enabled = true;       // false: print nothing (e.g. non-zero ranks)
};

// "1:02:03" / "4:05" for seconds.
std::string FormatDuration(double seconds);

class ProgressBar {
 public:
  ProgressBar(int64_t total, ProgressOptions options);
  ~ProgressBar();  // finishes the line if Finish() was not called

  // Sets the absolute progress and an optional status suffix (e.g. "loss=0.12 fail=1").
  void Update(int64_t done, const std::string& status = "");
  void Finish(const std::string& status = "");

  // Throughput and ETA as shown on the bar (for summaries).
  double rate() const;
  double elapsed_seconds() const;

 private:
  void Draw(bool final);

  const int64_t total_;
  const ProgressOptions options_;
  const bool tty_;
  const std::chrono::steady_clock::time_point start_;
  mutable std::mutex mu_;
  int64_t done_ = 0;                                 // guarded by mu_
  std::string status_;                               // guarded by mu_
  std::chrono::steady_clock::time_point last_draw_;  // guarded by mu_
  bool finished_ = false;                            // guarded by mu_
};

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_UTIL_PROGRESS_H_
