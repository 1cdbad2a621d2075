#include "common/util/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace cellflux {

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

ProgressBar::ProgressBar(int64_t total, ProgressOptions options)
    : total_(total),
      options_(std::move(options)),
      tty_(!options_.force_plain && isatty(fileno(options_.out))),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  bool finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished = finished_;
  }
  if (!finished) Finish();
}

double ProgressBar::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double ProgressBar::rate() const {
  std::lock_guard<std::mutex> lock(mu_);
  double e = elapsed_seconds();
  return e > 0 ? done_ / e : 0.0;
}

void ProgressBar::Update(int64_t done, const std::string& status) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ = done;
  if (!status.empty()) status_ = status;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  double min_interval = tty_ ? 0.1 : options_.plain_interval_seconds;
  if (since < min_interval && done < total_) return;
  last_draw_ = now;
  Draw(/*final=*/false);
}

void ProgressBar::Finish(const std::string& status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (!status.empty()) status_ = status;
  Draw(/*final=*/true);
}

void ProgressBar::Draw(bool final) {
  if (!options_.enabled) return;
  double elapsed = elapsed_seconds();
  double rate = elapsed > 0 ? done_ / elapsed : 0.0;
  std::string counts, eta;
  if (total_ > 0) {
    double frac = std::min(1.0, static_cast<double>(done_) / total_);
    counts = absl::StrFormat("%d/%d %3.0f%%", done_, total_, 100 * frac);
    eta = final ? absl::StrCat("in ", FormatDuration(elapsed))
                : (rate > 0 ? absl::StrCat("ETA ", FormatDuration((total_ - done_) / rate))
                            : "ETA ?");
  } else {
    counts = absl::StrFormat("%d", done_);
    eta = FormatDuration(elapsed);
  }
  std::string line =
      absl::StrFormat("%s %s %.2f %s/s %s", options_.label, counts, rate, options_.unit, eta);
  if (!status_.empty()) absl::StrAppend(&line, " ", status_);
  if (tty_) {
    std::string bar;
    if (total_ > 0) {
      int width = 24;
      int filled = static_cast<int>(width * std::min(1.0, static_cast<double>(done_) / total_));
      bar = "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] ";
    }
    std::string full =
        absl::StrCat(options_.label, " ", bar, line.substr(options_.label.size() + 1));
    std::fprintf(options_.out, "\r\033[K%s%s", full.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(options_.out, "%s\n", line.c_str());
  }
  std::fflush(options_.out);
}

}  // namespace cellflux
