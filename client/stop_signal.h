// Cooperative stopping of a screen: what Ctrl-C does, and what tests call directly.
//
// Level 1 (first Ctrl-C / RequestStop()): start no new rows; rows already sent finish and are
// written. Level 2 (second Ctrl-C / Abandon()): in-flight calls are cancelled and their rows left
// undone (nothing of them is journaled, so a resumed run redoes them).
// Thread- and signal-safe: the state is one lock-free atomic, which a signal handler may touch.
#ifndef CELLFLUX_CLIENT_STOP_SIGNAL_H_
#define CELLFLUX_CLIENT_STOP_SIGNAL_H_

#include <atomic>

namespace cellflux::client {

class StopSignal {
 public:
  void RequestStop() { Raise(1); }
  void Abandon() { Raise(2); }
  // The SIGINT handler's action: each call raises the level by one.
  void Escalate() { level_.fetch_add(1, std::memory_order_relaxed); }

  bool stop_requested() const { return level() >= 1; }
  bool abandon_requested() const { return level() >= 2; }
  int level() const { return level_.load(std::memory_order_relaxed); }

 private:
  void Raise(int to) {
    int current = level_.load(std::memory_order_relaxed);
    while (current < to && !level_.compare_exchange_weak(current, to)) {
    }
  }
  std::atomic<int> level_{0};
  static_assert(std::atomic<int>::is_always_lock_free, "signal handlers need lock-free atomics");
};

// Routes SIGINT (and SIGTERM) to `signal->Escalate()` and prints a one-line hint on stderr.
// `signal` must outlive the process's use of the handler; call RestoreDefaultSignalHandlers()
// before destroying it.
void InstallStopSignalHandlers(StopSignal* signal);
void RestoreDefaultSignalHandlers();

}  // namespace cellflux::client

#endif  // CELLFLUX_CLIENT_STOP_SIGNAL_H_
