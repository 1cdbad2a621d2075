// A small pool of worker threads for work that must leave the scheduler's threads: building Predict
// responses (PNG/TIFF encoding can take tens of milliseconds) and finishing RPCs.
//
// Submit never blocks (the queue is unbounded; its size is bounded in practice by the
// scheduler's own queue). Drain() waits until everything submitted so far has run. The
// destructor drains and joins. Functions must not throw.
#ifndef CELLFLUX_SERVER_WORK_QUEUE_H_
#define CELLFLUX_SERVER_WORK_QUEUE_H_

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace cellflux::server {

class WorkQueue {
 public:
  // `name` names the threads (as `top -H` and perf show them; ≤ 15 characters).
  explicit WorkQueue(int threads, std::string name = "cf-work");
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  void Submit(std::function<void()> fn);
  void Drain();

 private:
  void Work();

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_WORK_QUEUE_H_
