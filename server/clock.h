// Time for the scheduler, injectable so that tests control it.
//
// RealClock is absl::Now() plus absl::Mutex's own timed waits. FakeClock only moves when a test
// calls Advance(); its timed waits return when the condition holds or when Advance() carries the
// time past the deadline, so tests of queue delays and deadlines never sleep for real.
#ifndef CELLFLUX_SERVER_CLOCK_H_
#define CELLFLUX_SERVER_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace cellflux::server {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
  // With `mu` held: waits until `cond` holds (true) or Now() ≥ deadline (false). `mu` is held
  // again on return. The condition may only read state guarded by `mu`.
  virtual bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) = 0;
};

class RealClock final : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) override {
    return mu->AwaitWithDeadline(cond, deadline);
  }
};

// The process-wide real clock (stateless, never destroyed).
inline Clock* DefaultClock() {
  static RealClock* clock = new RealClock();
  return clock;
}

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::UnixEpoch() + absl::Hours(1)) : now_(start) {}

  absl::Time Now() override {
    absl::MutexLock lock(&time_mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&time_mu_);
    now_ += d;
  }
  // Re-checks the fake time every millisecond of real time: waiters notice Advance() promptly
  // without the clock having to know every mutex it is waited on with.
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) override {
    while (true) {
      if (mu->AwaitWithTimeout(cond, absl::Milliseconds(1))) return true;
      if (Now() >= deadline) return false;
    }
  }

 private:
  absl::Mutex time_mu_;
  absl::Time now_ ABSL_GUARDED_BY(time_mu_);
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_CLOCK_H_
