// Scheduler tests against the fake backend: continuous batching, request batching, queue bound,
// deadlines, cancellation, determinism under batching, failures, model swap and Stop().
#include "server/scheduler.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <memory>
#include <numeric>
#include <vector>

#include "absl/synchronization/notification.h"
#include "tests/server/fake_backend.h"

namespace cellflux::server {
namespace {

using testing::FakeBackend;

// Collects one task's result.
struct Outcome {
  absl::Notification done;
  absl::StatusOr<PredictResult> result = absl::UnknownError("not run");
  int order = -1;  // completion order across a test
};

class SchedulerTest : public ::testing::Test {
 protected:
  std::unique_ptr<Scheduler> Make(SchedulerOptions options) {
    options.clock = &clock_;
    auto s = Scheduler::Create(options, &metrics_);
    EXPECT_TRUE(s.ok()) << s.status();
    return std::move(s).value();
  }

  std::shared_ptr<ControlInput> Control(uint16_t base = 1000) {
    const ModelInfo& info = backend_->info();
    auto c = std::make_shared<ControlInput>();
    const size_t n = info.channel_names.size() * info.image_size * info.image_size;
    for (size_t i = 0; i < n; ++i) c->pixels.push_back(static_cast<uint16_t>(base + i % 97));
    for (size_t g = 0; g < info.gene_ids.size(); ++g) c->expression.push_back(0.5f * g);
    return c;
  }

  std::unique_ptr<PredictTask> Task(Outcome* out, int samples, int steps, uint64_t seed,
                                    int64_t label = 3, double guidance = 1.5,
                                    std::shared_ptr<Backend> backend = nullptr) {
    auto t = std::make_unique<PredictTask>();
    t->backend = backend ? backend : backend_;
    t->control = Control();
    t->label = label;
    t->num_steps = steps;
    t->guidance = guidance;
    t->seed = seed;
    t->num_samples = samples;
    t->cancelled = std::make_shared<std::atomic<bool>>(false);
    t->done = [this, out](absl::StatusOr<PredictResult> r) {
      out->result = std::move(r);
      out->order = completed_++;
      out->done.Notify();
    };
    return t;
  }

  // Waits until `n` queued samples are encoded and admittable (the codec thread stores them
  // after Encode returns; a fake forward is fast enough to run past that window).
  static void AwaitReady(const Scheduler& s, int64_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (s.NumReadySamples() < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
    ASSERT_EQ(s.NumReadySamples(), n);
  }

  absl::StatusOr<PredictResult> RunAlone(int samples, int steps, uint64_t seed, int64_t label,
                                         double guidance) {
    auto s = Make({});
    Outcome out;
    auto task = Task(&out, samples, steps, seed, label, guidance);
    EXPECT_TRUE(s->Schedule(&task).ok());
    out.done.WaitForNotification();
    return out.result;
  }

  FakeClock clock_;
  prometheus::Registry registry_;
  ServerMetrics metrics_{registry_};
  std::shared_ptr<FakeBackend> backend_ = std::make_shared<FakeBackend>();
  std::atomic<int> completed_{0};  // written by the batch thread only
};

TEST_F(SchedulerTest, OptionsAreValidated) {
  SchedulerOptions o;
  o.max_batch = 0;
  EXPECT_EQ(Scheduler::Create(o, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  o = SchedulerOptions();
  o.max_queue = 0;
  EXPECT_EQ(Scheduler::Create(o, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SchedulerTest, RunsOneRequestToTheEnd) {
  auto result = RunAlone(/*samples=*/3, /*steps=*/7, /*seed=*/42, /*label=*/2, /*guidance=*/1.5);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->samples.size(), 3u);
  const ModelInfo& info = backend_->info();
  for (const SampleOutput& s : result->samples) {
    EXPECT_EQ(s.pixels.size(), info.channel_names.size() * info.image_size * info.image_size);
    EXPECT_EQ(s.expression.size(), info.gene_ids.size());
  }
  // All three samples share each forward: 7 steps, one encode (one control); the codec thread
  // decodes one sample per call.
  EXPECT_EQ(backend_->step_calls(), 7);
  EXPECT_EQ(backend_->encode_calls(), 1);
  EXPECT_EQ(backend_->decode_calls(), 3);
  // Different seeds → different samples.
  EXPECT_NE(result->samples[0].expression, result->samples[1].expression);
}

TEST_F(SchedulerTest, SampleKOfARequestEqualsSeedPlusKAlone) {
  auto three = RunAlone(3, 5, 100, 4, 1.2);
  auto third = RunAlone(1, 5, 102, 4, 1.2);
  ASSERT_TRUE(three.ok() && third.ok());
  EXPECT_EQ(three->samples[2].pixels, third->samples[0].pixels);
  EXPECT_EQ(three->samples[2].expression, third->samples[0].expression);
}

TEST_F(SchedulerTest, BatchedOutputIsBitIdenticalToAlone) {
  auto alone = RunAlone(2, 9, 7, 5, 1.7);
  ASSERT_TRUE(alone.ok());

  SchedulerOptions o;
  o.max_batch = 6;
  auto s = Make(o);
  backend_->CloseGate();
  // Others first, at different steps/labels/guidance, so the probe lands at varying positions.
  std::vector<std::unique_ptr<Outcome>> others;
  for (int i = 0; i < 8; ++i) {
    others.push_back(std::make_unique<Outcome>());
    auto t = Task(others.back().get(), 1 + i % 3, 3 + i, 1000 + i, i % 7, 1.0 + 0.25 * i);
    ASSERT_TRUE(s->Schedule(&t).ok());
  }
  Outcome probe;
  auto t = Task(&probe, 2, 9, 7, 5, 1.7);
  ASSERT_TRUE(s->Schedule(&t).ok());
  backend_->OpenGate();
  probe.done.WaitForNotification();
  for (auto& o2 : others) o2->done.WaitForNotification();
  ASSERT_TRUE(probe.result.ok());
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ(probe.result->samples[k].pixels, alone->samples[k].pixels);
    EXPECT_EQ(probe.result->samples[k].expression, alone->samples[k].expression);
  }
  auto sizes = backend_->batch_sizes();
  EXPECT_GT(*std::max_element(sizes.begin(), sizes.end()), 2);  // it really shared forwards
  EXPECT_LE(*std::max_element(sizes.begin(), sizes.end()), 6);  // never above max_batch
}

TEST_F(SchedulerTest, ContinuousBatchingAdmitsIntoRowsFreedMidFlight) {
  SchedulerOptions o;
  o.max_batch = 4;
  auto s = Make(o);
  backend_->CloseGate();
  Outcome a, b, c;
  auto ta = Task(&a, 2, 12, 1);
  ASSERT_TRUE(s->Schedule(&ta).ok());
  backend_->AwaitInStep(1);  // A alone is in the first forward
  auto tb = Task(&b, 2, 2, 2);
  auto tc = Task(&c, 2, 2, 3);
  ASSERT_TRUE(s->Schedule(&tb).ok());
  ASSERT_TRUE(s->Schedule(&tc).ok());
  AwaitReady(*s, 4);  // B and C encoded ahead, while A's forward runs
  backend_->OpenGate();
  a.done.WaitForNotification();
  b.done.WaitForNotification();
  c.done.WaitForNotification();
  ASSERT_TRUE(a.result.ok() && b.result.ok() && c.result.ok());
  // C needed B's rows; it still finished long before A's 12 steps (B and C may complete in
  // either order: their samples can be decoded on either thread).
  EXPECT_EQ(a.order, 2);
  // Forwards: A alone, A+B ×2, A+C ×2, A alone for the rest: 12 in total.
  std::vector<int64_t> expected = {2, 4, 4, 4, 4, 2, 2, 2, 2, 2, 2, 2};
  EXPECT_EQ(backend_->batch_sizes(), expected);
}

// Encoding and decoding run on the codec thread: while one request's samples are being
// decoded, the batch goes on stepping the others (before, the batch thread decoded them itself
// and stood still), and a queued request is encoded while a forward runs.
TEST_F(SchedulerTest, StepsGoOnWhileFinishedRowsAreDecoded) {
  SchedulerOptions o;
  o.max_batch = 2;
  auto s = Make(o);
  backend_->CloseDecodeGate();
  backend_->CloseGate();
  Outcome a, b;
  auto ta = Task(&a, 1, 1, 1);
  ASSERT_TRUE(s->Schedule(&ta).ok());
  backend_->AwaitInStep(1);  // A's only forward is running
  auto tb = Task(&b, 1, 3, 2);
  ASSERT_TRUE(s->Schedule(&tb).ok());
  AwaitReady(*s, 1);  // B encoded during A's forward
  backend_->OpenGate();
  // A retires and its decode is held; B's three forwards happen meanwhile.
  EXPECT_TRUE(backend_->AwaitStepCalls(4, absl::Seconds(10)))
      << backend_->step_calls() << " forwards";
  EXPECT_FALSE(a.done.HasBeenNotified());
  clock_.Advance(absl::Seconds(2));  // A waits 2 s for its decode
  backend_->OpenDecodeGate();
  a.done.WaitForNotification();
  b.done.WaitForNotification();
  ASSERT_TRUE(a.result.ok() && b.result.ok());
  EXPECT_DOUBLE_EQ(a.result->decode_seconds, 2.0);  // reported apart from the forwards
  EXPECT_DOUBLE_EQ(a.result->compute_seconds, 2.0);
}

// When the codec thread is stuck in a long decode and another finished sample waits, the batch
// thread (with free rows) decodes it between forwards instead of leaving it behind. (Without
// that, neither A nor B is done while the codec is held.)
TEST_F(SchedulerTest, BatchThreadDecodesWhileTheCodecIsBusy) {
  SchedulerOptions o;
  o.max_batch = 4;
  auto s = Make(o);
  backend_->CloseGate();
  Outcome a, b, c;
  auto ta = Task(&a, 1, 1, 1);
  auto tb = Task(&b, 1, 1, 2);
  auto tc = Task(&c, 1, 1000, 3);
  auto cancel_c = tc->cancelled;
  ASSERT_TRUE(s->Schedule(&ta).ok());
  ASSERT_TRUE(s->Schedule(&tb).ok());
  ASSERT_TRUE(s->Schedule(&tc).ok());
  backend_->AwaitEncodeCalls(3);
  backend_->AwaitInStep(1);
  backend_->HoldNextDecodeOn("cf-codec");
  backend_->OpenGate();  // A and B retire after a forward; C goes on
  ASSERT_TRUE(backend_->AwaitDecodeHeld(absl::Seconds(10)));
  // The codec thread is stuck in one of the two decodes; the other is done meanwhile.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!a.done.HasBeenNotified() && !b.done.HasBeenNotified() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_NE(a.done.HasBeenNotified(), b.done.HasBeenNotified())  // exactly one is done
      << "forwards " << ::testing::PrintToString(backend_->batch_sizes()) << ", decodes "
      << backend_->decode_calls() << ", active " << s->NumActiveSamples();
  backend_->ReleaseHeldDecode();
  a.done.WaitForNotification();
  b.done.WaitForNotification();
  EXPECT_TRUE(a.result.ok() && b.result.ok());
  cancel_c->store(true);
  c.done.WaitForNotification();
}

TEST_F(SchedulerTest, RequestModeWaitsForDelayOrFullBatch) {
  SchedulerOptions o;
  o.mode = BatchingMode::kRequest;
  o.max_batch = 4;
  o.max_queue_delay = absl::Milliseconds(50);
  auto s = Make(o);
  Outcome a;
  auto ta = Task(&a, 1, 3, 1);
  ASSERT_TRUE(s->Schedule(&ta).ok());
  // The fake clock has not moved: the task must still be waiting for company.
  EXPECT_EQ(s->NumEnqueuedTasks(), 1u);
  EXPECT_FALSE(a.done.HasBeenNotified());
  clock_.Advance(absl::Milliseconds(50));
  a.done.WaitForNotification();
  ASSERT_TRUE(a.result.ok());
  EXPECT_DOUBLE_EQ(a.result->queue_seconds, 0.05);

  // A full batch goes at once, without the clock moving.
  Outcome b, c;
  auto tb = Task(&b, 2, 3, 2);
  auto tc = Task(&c, 2, 3, 3);
  ASSERT_TRUE(s->Schedule(&tb).ok());
  ASSERT_TRUE(s->Schedule(&tc).ok());
  b.done.WaitForNotification();
  c.done.WaitForNotification();
  EXPECT_TRUE(b.result.ok() && c.result.ok());
  std::vector<int64_t> expected = {1, 1, 1, 4, 4, 4};
  EXPECT_EQ(backend_->batch_sizes(), expected);
}

TEST_F(SchedulerTest, RequestModeDoesNotJoinARunningBatch) {
  SchedulerOptions o;
  o.mode = BatchingMode::kRequest;
  o.max_batch = 4;
  o.max_queue_delay = absl::ZeroDuration();
  auto s = Make(o);
  backend_->CloseGate();
  Outcome a, b;
  auto ta = Task(&a, 1, 3, 1);
  ASSERT_TRUE(s->Schedule(&ta).ok());
  backend_->AwaitInStep(1);
  auto tb = Task(&b, 1, 3, 2);
  ASSERT_TRUE(s->Schedule(&tb).ok());
  backend_->OpenGate();
  a.done.WaitForNotification();
  b.done.WaitForNotification();
  std::vector<int64_t> expected = {1, 1, 1, 1, 1, 1};
  EXPECT_EQ(backend_->batch_sizes(), expected);
}

TEST_F(SchedulerTest, FullQueueIsResourceExhaustedAndCallerKeepsTheTask) {
  SchedulerOptions o;
  o.max_batch = 1;
  o.max_queue = 3;
  auto s = Make(o);
  backend_->CloseGate();
  Outcome a, b, c;
  auto ta = Task(&a, 1, 2, 1);
  ASSERT_TRUE(s->Schedule(&ta).ok());
  backend_->AwaitInStep(1);  // A holds the only row; the queue is empty
  EXPECT_EQ(s->SchedulingCapacity(), 3);
  auto tb = Task(&b, 3, 2, 2);
  ASSERT_TRUE(s->Schedule(&tb).ok());
  EXPECT_EQ(s->SchedulingCapacity(), 0);
  auto tc = Task(&c, 1, 2, 3);
  absl::Status st = s->Schedule(&tc);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_NE(tc, nullptr);  // still ours
  backend_->OpenGate();
  a.done.WaitForNotification();
  b.done.WaitForNotification();
  EXPECT_TRUE(a.result.ok() && b.result.ok());
  EXPECT_FALSE(c.done.HasBeenNotified());
  // Capacity is back: the rejected task goes through now.
  ASSERT_TRUE(s->Schedule(&tc).ok());
  c.done.WaitForNotification();
  EXPECT_TRUE(c.result.ok());
}

TEST_F(SchedulerTest, DeadlineRemovesRowsAtTheNextStep) {
  SchedulerOptions o;
  o.max_batch = 2;
  auto s = Make(o);
  backend_->CloseGate();
  Outcome a, b;
  auto ta = Task(&a, 2, 1000, 1);
  ta->deadline = clock_.Now() + absl::Seconds(1);
  ASSERT_TRUE(s->Schedule(&ta).ok());
  backend_->AwaitInStep(1);
  auto tb = Task(&b, 1, 3, 2);  // queued behind A's two rows
  ASSERT_TRUE(s->Schedule(&tb).ok());
  clock_.Advance(absl::Seconds(2));
  backend_->OpenGate();
  a.done.WaitForNotification();
  EXPECT_EQ(a.result.status().code(), absl::StatusCode::kDeadlineExceeded);
  b.done.WaitForNotification();
  EXPECT_TRUE(b.result.ok());
  EXPECT_LT(backend_->step_calls(), 10);  // A did not run its 1000 steps
}

TEST_F(SchedulerTest, DeadlineWhileQueuedFreesQueueCapacity) {
  SchedulerOptions o;
  o.max_batch = 1;
  o.max_queue = 2;
  auto s = Make(o);
  backend_->CloseGate();
  Outcome a, b;
  auto ta = Task(&a, 1, 3, 1);
  ASSERT_TRUE(s->Schedule(&ta).ok());
  backend_->AwaitInStep(1);
  auto tb = Task(&b, 2, 3, 2);
  tb->deadline = clock_.Now() + absl::Milliseconds(10);
  ASSERT_TRUE(s->Schedule(&tb).ok());
  EXPECT_EQ(s->SchedulingCapacity(), 0);
  clock_.Advance(absl::Seconds(1));
  backend_->OpenGate();
  b.done.WaitForNotification();
  EXPECT_EQ(b.result.status().code(), absl::StatusCode::kDeadlineExceeded);
  a.done.WaitForNotification();
  EXPECT_EQ(s->SchedulingCapacity(), 2);
}

TEST_F(SchedulerTest, CancelLeavesAtTheNextStep) {
  auto s = Make({});
  backend_->CloseGate();
  Outcome a;
  auto ta = Task(&a, 2, 1000, 1);
  auto flag = ta->cancelled;
  ASSERT_TRUE(s->Schedule(&ta).ok());
  backend_->AwaitInStep(1);
  flag->store(true);
  backend_->OpenGate();
  a.done.WaitForNotification();
  EXPECT_EQ(a.result.status().code(), absl::StatusCode::kCancelled);
}

TEST_F(SchedulerTest, BackendErrorFailsItsTasksAndServingGoesOn) {
  auto s = Make({});
  backend_->set_fail_step(true);
  Outcome a;
  auto ta = Task(&a, 1, 3, 1);
  ASSERT_TRUE(s->Schedule(&ta).ok());
  a.done.WaitForNotification();
  EXPECT_EQ(a.result.status().code(), absl::StatusCode::kResourceExhausted);
  backend_->set_fail_step(false);
  backend_->set_fail_encode(true);
  Outcome b;
  auto tb = Task(&b, 1, 3, 1);
  ASSERT_TRUE(s->Schedule(&tb).ok());
  b.done.WaitForNotification();
  EXPECT_EQ(b.result.status().code(), absl::StatusCode::kInternal);
  backend_->set_fail_encode(false);
  Outcome c;
  auto tc = Task(&c, 1, 3, 1);
  ASSERT_TRUE(s->Schedule(&tc).ok());
  c.done.WaitForNotification();
  EXPECT_TRUE(c.result.ok());
}

TEST_F(SchedulerTest, TasksOnTwoModelsRunSideBySide) {
  auto alone = RunAlone(1, 4, 9, 1, 1.5);
  ASSERT_TRUE(alone.ok());
  ModelInfo info2 = testing::FakeModelInfo();
  info2.model_id = "fake-model-2";
  auto other = std::make_shared<FakeBackend>(info2);
  auto s = Make({});
  backend_->CloseGate();
  Outcome a, b;
  auto ta = Task(&a, 1, 4, 9, 1, 1.5);
  ASSERT_TRUE(s->Schedule(&ta).ok());
  backend_->AwaitInStep(1);
  auto tb = Task(&b, 1, 4, 9, 1, 1.5, other);  // "reloaded" model
  ASSERT_TRUE(s->Schedule(&tb).ok());
  backend_->OpenGate();
  a.done.WaitForNotification();
  b.done.WaitForNotification();
  ASSERT_TRUE(a.result.ok() && b.result.ok());
  EXPECT_EQ(a.result->samples[0].pixels, alone->samples[0].pixels);
  EXPECT_EQ(b.result->samples[0].pixels, alone->samples[0].pixels);
  EXPECT_EQ(other->step_calls(), 4);
}

TEST_F(SchedulerTest, StopDrainsThenRejects) {
  auto s = Make({});
  std::vector<std::unique_ptr<Outcome>> outs;
  for (int i = 0; i < 5; ++i) {
    outs.push_back(std::make_unique<Outcome>());
    auto t = Task(outs.back().get(), 2, 6, i);
    ASSERT_TRUE(s->Schedule(&t).ok());
  }
  s->Stop();
  for (auto& o : outs) {
    ASSERT_TRUE(o->done.HasBeenNotified());
    EXPECT_TRUE(o->result.ok()) << o->result.status();
  }
  Outcome late;
  auto t = Task(&late, 1, 2, 1);
  EXPECT_EQ(s->Schedule(&t).code(), absl::StatusCode::kUnavailable);
  s->Stop();  // idempotent
}

TEST_F(SchedulerTest, StopAfterGraceFailsWhatIsLeft) {
  auto s = Make({});
  Outcome a;
  auto ta = Task(&a, 1, 1000000, 1);
  ASSERT_TRUE(s->Schedule(&ta).ok());
  backend_->AwaitInStep(1);
  s->Stop(absl::ZeroDuration());
  ASSERT_TRUE(a.done.HasBeenNotified());
  EXPECT_EQ(a.result.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SchedulerTest, MetricsCountStepsAndSamples) {
  auto r = RunAlone(2, 5, 1, 1, 1.0);
  ASSERT_TRUE(r.ok());
  double steps = 0, samples = 0;
  for (const auto& family : registry_.Collect()) {
    if (family.name == "cellflux_euler_steps_total") steps = family.metric[0].counter.value;
    if (family.name == "cellflux_samples_total") samples = family.metric[0].counter.value;
  }
  EXPECT_EQ(steps, 10);
  EXPECT_EQ(samples, 2);
}

}  // namespace
}  // namespace cellflux::server
