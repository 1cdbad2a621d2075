#include "server/sample.h"

#include <cassert>

namespace cellflux::server {

const char* SampleStateName(SampleState s) {
  switch (s) {
    case SampleState::kQueued:
      return "queued";
    case SampleState::kEncoding:
      return "encoding";
    case SampleState::kReady:
      return "ready";
    case SampleState::kRunning:
      return "running";
    case SampleState::kDecoding:
      return "decoding";
    case SampleState::kDone:
      return "done";
    case SampleState::kFailed:
      return "failed";
    case SampleState::kCancelled:
      return "cancelled";
  }
  return "?";
}

bool IsAllowedTransition(SampleState from, SampleState to) {
  using S = SampleState;
  const bool to_end = to == S::kFailed || to == S::kCancelled;
  switch (from) {
    case S::kQueued:
      return to == S::kEncoding || to_end;
    case S::kEncoding:
      return to == S::kReady || to_end;
    case S::kReady:
      return to == S::kRunning || to_end;
    case S::kRunning:
      return to == S::kRunning || to == S::kDecoding || to_end;  // kRunning: the next step
    case S::kDecoding:
      return to == S::kDone || to_end;
    case S::kDone:
    case S::kFailed:
    case S::kCancelled:
      return false;  // terminal
  }
  return false;
}

SampleState EndStateFor(const absl::Status& status) {
  return status.code() == absl::StatusCode::kCancelled ? SampleState::kCancelled
                                                       : SampleState::kFailed;
}

bool TaskIsDead(const PredictTask& task, absl::Time now, absl::Status* why) {
  if (task.cancelled != nullptr && task.cancelled->load(std::memory_order_relaxed)) {
    *why = absl::CancelledError("request cancelled by the client");
    return true;
  }
  if (now >= task.deadline) {
    *why = absl::DeadlineExceededError("deadline exceeded before all samples were generated");
    return true;
  }
  return false;
}

void SetState(Sample* sample, SampleState to) {
  assert(IsAllowedTransition(sample->state, to) && "scheduler: sample state transition");
  sample->state = to;
}

}  // namespace cellflux::server
