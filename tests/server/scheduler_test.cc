// Scheduler tests against the fake backend: continuous batching, request batching, queue bound,
// deadlines, cancellation, determinism under batching, failures, model swap, Stop(), the sample
// state table, the backend concurrency contract, priorities and the Heun sampler. Every test
// decides its interleaving with the fake's gates and the fake clock; the fake records any call
// that breaks backend.h's concurrency contract and TearDown fails the test on one.
#include "server/scheduler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <pthread.h>

#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/flow/sampler.h"
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
  void TearDown() override { EXPECT_THAT(backend_->violations(), ::testing::IsEmpty()); }

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
                                    std::shared_ptr<Backend> backend = nullptr,
                                    Priority priority = Priority::kInteractive,
                                    SamplerKind sampler = SamplerKind::kEuler) {
    auto t = std::make_unique<PredictTask>();
    t->priority = priority;
    t->sampler = sampler;
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

  // Waits until `n` queued samples are encoded and admittable (the codec stage stores them
  // after Encode returns; a fake forward is fast enough to run past that window).
  static void AwaitReady(const Scheduler& s, int64_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (s.NumReadySamples() < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
    ASSERT_EQ(s.NumReadySamples(), n);
  }

  // The decode-help scene: C (10⁶ steps: keeps the batch busy) is held inside its first forward,
  // A and B (one step each) are encoded and ready, and the codec worker's next decode will be
  // held. Returns C's cancel flag.
  std::shared_ptr<std::atomic<bool>> StartDecodeHelpScene(Scheduler* s, Outcome* a, Outcome* b,
                                                          Outcome* c) {
    backend_->CloseGate();
    auto tc = Task(c, 1, 1000000, 3);
    auto cancel_c = tc->cancelled;
    EXPECT_TRUE(s->Schedule(&tc).ok());
    backend_->AwaitInStep(1);
    backend_->HoldNextDecodeOn("cf-codec");
    auto ta = Task(a, 1, 1, 1);
    auto tb = Task(b, 1, 1, 2);
    EXPECT_TRUE(s->Schedule(&ta).ok());
    EXPECT_TRUE(s->Schedule(&tb).ok());
    AwaitReady(*s, 2);  // the worker has encoded both and is idle (invariant in codec_stage.h)
    return cancel_c;
  }

  absl::StatusOr<PredictResult> RunAlone(int samples, int steps, uint64_t seed, int64_t label,
                                         double guidance,
                                         SamplerKind sampler = SamplerKind::kEuler) {
    auto s = Make({});
    Outcome out;
    auto task =
        Task(&out, samples, steps, seed, label, guidance, nullptr, Priority::kInteractive, sampler);
    EXPECT_TRUE(s->Schedule(&task).ok());
    out.done.WaitForNotification();
    return out.result;
  }

  FakeClock clock_;
  prometheus::Registry registry_;
  ServerMetrics metrics_{registry_};
  std::shared_ptr<FakeBackend> backend_ = std::make_shared<FakeBackend>();
  std::atomic<int> completed_{0};  // written by whichever scheduler thread calls done
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
  // All three samples share each forward: 7 steps, one encode (one control); the codec stage
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

// Encoding and decoding run in the codec stage: while one request's samples are being
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

// With help_decode_in_flight, when the codec worker is stuck in a long decode and another finished
// sample waits, the step loop (with free rows) decodes it between forwards instead of leaving it
// behind (without that, neither A nor B is done while the worker is held). The interleaving is
// fixed by the gates: A and B are encoded while the step loop is held inside C's first forward,
// so the worker is idle when they retire; it takes A (the first retired) and is held there, and
// the step loop may only help a busy worker, so B is decoded by the step loop.
TEST_F(SchedulerTest, BatchThreadDecodesWhileTheCodecIsBusy) {
  SchedulerOptions o;
  o.max_batch = 4;
  o.help_decode_in_flight = true;
  auto s = Make(o);
  Outcome a, b, c;
  auto cancel_c = StartDecodeHelpScene(s.get(), &a, &b, &c);
  backend_->OpenGate();  // A and B join C's second forward and retire together
  ASSERT_TRUE(backend_->AwaitDecodeHeld(absl::Seconds(60)));
  ASSERT_TRUE(b.done.WaitForNotificationWithTimeout(absl::Seconds(60)))
      << "forwards " << ::testing::PrintToString(backend_->batch_sizes()) << ", decodes "
      << backend_->decode_calls() << ", active " << s->NumActiveSamples();
  EXPECT_FALSE(a.done.HasBeenNotified());  // its decode is still held on the worker
  backend_->ReleaseHeldDecode();
  a.done.WaitForNotification();
  EXPECT_TRUE(a.result.ok() && b.result.ok());
  cancel_c->store(true);
  c.done.WaitForNotification();
  EXPECT_EQ(c.result.status().code(), absl::StatusCode::kCancelled);
}

// help_decode_in_flight = false: the same interleaving, but the step loop must not make C wait
// for B's decode. With the worker held inside A's decode before C's fourth forward, that forward
// starts with B still queued behind A (with the option on, the step loop decodes B before it);
// B is done once the worker is free.
TEST_F(SchedulerTest, StepLoopLeavesDecodesToTheCodecWhileRowsAreInFlight) {
  SchedulerOptions o;
  o.max_batch = 4;
  o.help_decode_in_flight = false;
  auto s = Make(o);
  Outcome a, b, c;
  auto cancel_c = StartDecodeHelpScene(s.get(), &a, &b, &c);
  backend_->AllowSteps(2);   // C's first forward, then C + A + B; A and B retire
  backend_->AwaitInStep(3);  // C's third forward, held at the gate
  ASSERT_TRUE(backend_->AwaitDecodeHeld(absl::Seconds(60)));  // the worker is inside A's decode
  backend_->AllowSteps(1);
  backend_->AwaitInStep(4);  // past the iteration where, with the option on, the step loop helps
  EXPECT_FALSE(b.done.HasBeenNotified()) << "the step loop decoded B while C was in flight";
  EXPECT_FALSE(a.done.HasBeenNotified());
  EXPECT_EQ(backend_->decode_calls(), 0) << "A's decode is held on the worker, B's waits behind";
  backend_->ReleaseHeldDecode();
  a.done.WaitForNotification();
  b.done.WaitForNotification();
  EXPECT_TRUE(a.result.ok() && b.result.ok());
  backend_->OpenGate();
  cancel_c->store(true);
  c.done.WaitForNotification();
  EXPECT_EQ(c.result.status().code(), absl::StatusCode::kCancelled);
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

// Rows reach Decode only after the step loop handed them off (backend.h: a backend whose Decode
// runs on its own device stream waits there); a failed hand-off fails the task, undecoded, and
// the next request is served.
TEST_F(SchedulerTest, RetiredRowsAreHandedOffBeforeTheirDecode) {
  auto s = Make({});
  backend_->set_fail_hand_off(true);
  Outcome a;
  auto ta = Task(&a, 2, 3, 1);
  ASSERT_TRUE(s->Schedule(&ta).ok());
  a.done.WaitForNotification();
  EXPECT_EQ(a.result.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(a.result.status().message(), ::testing::HasSubstr("hand-off"));
  EXPECT_EQ(backend_->decode_calls(), 0);
  backend_->set_fail_hand_off(false);
  Outcome b;
  auto tb = Task(&b, 2, 3, 1);
  ASSERT_TRUE(s->Schedule(&tb).ok());
  b.done.WaitForNotification();
  ASSERT_TRUE(b.result.ok()) << b.result.status();
  EXPECT_GE(backend_->hand_offs(), 2);
  EXPECT_EQ(backend_->decode_calls(), 2);
  // TearDown: no Decode of a Step's output without a hand-off after that Step.
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
    if (family.name != "cellflux_samples_total") continue;
    for (const auto& m : family.metric) {
      if (m.label[0].value == "interactive") samples = m.counter.value;
    }
  }
  EXPECT_EQ(steps, 10);
  EXPECT_EQ(samples, 2);
}

// ---- The sample state machine (sample.h).

TEST(SampleStateTest, OnlyTheDocumentedTransitionsAreAllowed) {
  using S = SampleState;
  const std::vector<std::pair<S, S>> allowed = {
      {S::kQueued, S::kEncoding}, {S::kEncoding, S::kReady},   {S::kReady, S::kRunning},
      {S::kRunning, S::kRunning}, {S::kRunning, S::kDecoding}, {S::kDecoding, S::kDone}};
  const std::vector<S> all = {S::kQueued,   S::kEncoding, S::kReady,  S::kRunning,
                              S::kDecoding, S::kDone,     S::kFailed, S::kCancelled};
  for (S from : all) {
    for (S to : all) {
      const bool live = from != S::kDone && from != S::kFailed && from != S::kCancelled;
      const bool to_end = to == S::kFailed || to == S::kCancelled;
      const bool expected =
          std::find(allowed.begin(), allowed.end(), std::make_pair(from, to)) != allowed.end() ||
          (live && to_end);
      EXPECT_EQ(IsAllowedTransition(from, to), expected)
          << SampleStateName(from) << " → " << SampleStateName(to);
    }
  }
  EXPECT_EQ(EndStateFor(absl::CancelledError("")), S::kCancelled);
  EXPECT_EQ(EndStateFor(absl::DeadlineExceededError("")), S::kFailed);
}

// ---- The backend concurrency contract (backend.h), checked by the fake on every call.

// The checker itself: two Steps at once and a Decode off the scheduler's threads are caught.
TEST_F(SchedulerTest, ContractCheckerCatchesForbiddenOverlaps) {
  FakeBackend checked;
  JointLatent z{torch::zeros({1, 5, 8, 8}), torch::zeros({1, 4})};
  StepBatch batch;
  batch.z = z;
  batch.t = torch::zeros({1});
  batch.dt = torch::full({1}, 0.5f);
  batch.guidance = torch::ones({1});
  batch.labels = torch::zeros({1}, torch::kInt64);
  checked.CloseGate();
  auto step_on_batch_thread = [&] {
    pthread_setname_np(pthread_self(), "cf-batch");
    EXPECT_TRUE(checked.Step(batch).ok());
  };
  std::thread first(step_on_batch_thread);
  checked.AwaitInStep(1);
  std::thread second(step_on_batch_thread);
  checked.AwaitInStep(2);
  checked.OpenGate();
  first.join();
  second.join();
  EXPECT_TRUE(checked.Decode(z).ok());  // on the test's own thread
  checked.MarkStopped();
  std::thread late(step_on_batch_thread);
  late.join();
  EXPECT_THAT(checked.violations(),
              ::testing::ElementsAre(::testing::HasSubstr("two Steps at once"),
                                     ::testing::HasSubstr("Decode outside the scheduler's threads"),
                                     ::testing::HasSubstr("Step after Stop returned")));
}

// The checker's hand-off rule: a Step's output decoded with no HandOffForDecode after that Step
// (or a hand-off off the step loop) is caught; after a hand-off on the step loop it passes.
TEST_F(SchedulerTest, ContractCheckerCatchesADecodeBeforeItsHandOff) {
  FakeBackend checked;
  StepBatch batch;
  batch.z = JointLatent{torch::zeros({1, 5, 8, 8}), torch::zeros({1, 4})};
  batch.t = torch::zeros({1});
  batch.dt = torch::full({1}, 0.5f);
  batch.guidance = torch::ones({1});
  batch.labels = torch::zeros({1}, torch::kInt64);
  JointLatent stepped;
  auto on = [](const char* thread, const std::function<void()>& fn) {
    std::thread t([&] {
      pthread_setname_np(pthread_self(), thread);
      fn();
    });
    t.join();
  };
  on("cf-batch", [&] { stepped = checked.Step(batch).value(); });
  on("cf-codec", [&] { EXPECT_TRUE(checked.Decode(stepped).ok()); });
  on("cf-codec", [&] { EXPECT_TRUE(checked.HandOffForDecode().ok()); });
  EXPECT_EQ(checked.violations().size(), 2u);
  on("cf-batch", [&] { EXPECT_TRUE(checked.HandOffForDecode().ok()); });
  on("cf-codec", [&] { EXPECT_TRUE(checked.Decode(stepped).ok()); });
  EXPECT_THAT(
      checked.violations(),
      ::testing::ElementsAre(::testing::HasSubstr("Decode of rows no HandOffForDecode"),
                             ::testing::HasSubstr("HandOffForDecode outside the step loop")));
}

// A busy mix (several codec workers, partial admissions, retirements every forward, a failure,
// a cancellation, Stop) keeps the contract: TearDown checks the fake recorded no breach.
TEST_F(SchedulerTest, BackendCallsKeepTheConcurrencyContract) {
  SchedulerOptions o;
  o.max_batch = 3;
  o.codec_threads = 2;
  backend_->set_codec_threads(2);
  auto s = Make(o);
  std::vector<std::unique_ptr<Outcome>> outs;
  std::shared_ptr<std::atomic<bool>> cancel;
  for (int i = 0; i < 12; ++i) {
    outs.push_back(std::make_unique<Outcome>());
    auto t = Task(outs.back().get(), 1 + i % 3, 1 + i % 4, 100 + i, i % 5, 1.0 + 0.5 * (i % 2),
                  nullptr, i % 2 ? Priority::kBatch : Priority::kInteractive,
                  i % 3 ? SamplerKind::kEuler : SamplerKind::kHeun);
    if (i == 5) cancel = t->cancelled;
    ASSERT_TRUE(s->Schedule(&t).ok());
  }
  cancel->store(true);
  s->Stop();
  backend_->MarkStopped();
  for (size_t i = 0; i < outs.size(); ++i) {
    ASSERT_TRUE(outs[i]->done.HasBeenNotified()) << i;
    if (i != 5) EXPECT_TRUE(outs[i]->result.ok()) << i << ": " << outs[i]->result.status();
  }
  EXPECT_LE(backend_->max_codec_overlap(), 3);
}

// ---- Priorities (admission_queue.h).

// Steps the held step loop once `ready` samples wait encoded, so every admission below sees the
// same queue whatever the threads' speed.
void StepWhenReady(FakeBackend& backend, const Scheduler& s, int forwards_entered, int64_t ready) {
  backend.AwaitInStep(forwards_entered);
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (s.NumReadySamples() < ready && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_EQ(s.NumReadySamples(), ready);
  backend.AllowSteps(1);
}

std::vector<int64_t> FirstLabels(const std::vector<std::vector<int64_t>>& forwards) {
  std::vector<int64_t> labels;
  for (const auto& f : forwards) labels.push_back(f.empty() ? -1 : f[0]);
  return labels;
}

TEST_F(SchedulerTest, InteractiveOvertakesQueuedBatchAndBatchGetsItsTurn) {
  SchedulerOptions o;
  o.max_batch = 1;
  o.batch_turn = 2;  // alternate while both wait
  auto s = Make(o);
  backend_->CloseGate();
  Outcome x, b1, b2, i1, i2, i3;
  auto tx = Task(&x, 1, 1, 1, /*label=*/0);
  ASSERT_TRUE(s->Schedule(&tx).ok());
  backend_->AwaitInStep(1);  // X holds the only row
  auto batch = [&](Outcome* out, int64_t label) {
    return Task(out, 1, 1, label, label, 1.5, nullptr, Priority::kBatch);
  };
  auto tb1 = batch(&b1, 10);
  auto tb2 = batch(&b2, 11);
  auto ti1 = Task(&i1, 1, 1, 1, /*label=*/1);
  auto ti2 = Task(&i2, 1, 1, 2, /*label=*/2);
  auto ti3 = Task(&i3, 1, 1, 3, /*label=*/3);
  for (auto* t : {&tb1, &tb2, &ti1, &ti2, &ti3}) ASSERT_TRUE(s->Schedule(t).ok());
  // Look-ahead max_batch = 1 per class: one interactive and one batch sample wait encoded.
  StepWhenReady(*backend_, *s, 1, 2);  // X ends; I1 (interactive first) is admitted
  StepWhenReady(*backend_, *s, 2, 2);  // B1: its turn after one interactive
  StepWhenReady(*backend_, *s, 3, 2);  // I2
  StepWhenReady(*backend_, *s, 4, 2);  // B2
  StepWhenReady(*backend_, *s, 5, 1);  // I3 (no batch left)
  backend_->OpenGate();
  for (Outcome* out : {&x, &b1, &b2, &i1, &i2, &i3}) {
    out->done.WaitForNotification();
    EXPECT_TRUE(out->result.ok()) << out->result.status();
  }
  EXPECT_EQ(FirstLabels(backend_->step_labels()), (std::vector<int64_t>{0, 1, 10, 2, 11, 3}));
  // Metrics by class: one histogram observation per task, in its class.
  std::map<std::string, double> queued;
  for (const auto& family : registry_.Collect()) {
    if (family.name != "cellflux_queue_duration_seconds") continue;
    for (const auto& m : family.metric) queued[m.label[0].value] = m.histogram.sample_count;
  }
  EXPECT_EQ(queued["interactive"], 4);
  EXPECT_EQ(queued["batch"], 2);
}

TEST_F(SchedulerTest, WithTheDefaultTurnThreeInteractiveGoBeforeOneBatch) {
  SchedulerOptions o;
  o.max_batch = 1;
  auto s = Make(o);  // batch_turn = 4
  backend_->CloseGate();
  std::vector<std::unique_ptr<Outcome>> outs;
  auto add = [&](int64_t label, Priority p) {
    outs.push_back(std::make_unique<Outcome>());
    auto t = Task(outs.back().get(), 1, 1, label, label, 1.5, nullptr, p);
    ASSERT_TRUE(s->Schedule(&t).ok());
  };
  add(0, Priority::kInteractive);
  backend_->AwaitInStep(1);
  add(10, Priority::kBatch);
  add(11, Priority::kBatch);
  for (int64_t label = 1; label <= 4; ++label) add(label, Priority::kInteractive);
  // Held in forward k, the look-ahead holds the next interactive and the next batch sample; the
  // last batch one waits alone in forward 6.
  for (int forward = 1; forward <= 5; ++forward) StepWhenReady(*backend_, *s, forward, 2);
  StepWhenReady(*backend_, *s, 6, 1);
  backend_->OpenGate();
  for (auto& out : outs) out->done.WaitForNotification();
  EXPECT_EQ(FirstLabels(backend_->step_labels()), (std::vector<int64_t>{0, 1, 2, 3, 10, 4, 11}));
}

TEST_F(SchedulerTest, MaxQueueAppliesToEachClass) {
  SchedulerOptions o;
  o.max_batch = 1;
  o.max_queue = 2;
  auto s = Make(o);
  backend_->CloseGate();
  Outcome x, b, i, late;
  auto tx = Task(&x, 1, 2, 1);
  ASSERT_TRUE(s->Schedule(&tx).ok());
  backend_->AwaitInStep(1);
  auto tb = Task(&b, 2, 1, 2, 3, 1.5, nullptr, Priority::kBatch);  // the screen fills its class
  ASSERT_TRUE(s->Schedule(&tb).ok());
  EXPECT_EQ(s->SchedulingCapacity(Priority::kBatch), 0);
  EXPECT_EQ(s->SchedulingCapacity(Priority::kInteractive), 2);
  auto tlate = Task(&late, 1, 1, 4, 3, 1.5, nullptr, Priority::kBatch);
  EXPECT_EQ(s->Schedule(&tlate).code(), absl::StatusCode::kResourceExhausted);
  auto ti = Task(&i, 2, 1, 5);  // an interactive user still gets in
  ASSERT_TRUE(s->Schedule(&ti).ok());
  backend_->OpenGate();
  for (Outcome* out : {&x, &b, &i}) {
    out->done.WaitForNotification();
    EXPECT_TRUE(out->result.ok());
  }
}

// ---- Samplers.

// Heun through the step loop gives the bits of Heun written out by hand on the same backend:
// predictor z̃ = Step(z, t_i), r = Step(z̃, t_{i+1}), z ← (z + r)/2; two forwards per step.
TEST_F(SchedulerTest, HeunRowsGiveTheBitsOfTheHandWrittenHeun) {
  auto heun = RunAlone(2, 4, 21, 6, 1.5, SamplerKind::kHeun);
  ASSERT_TRUE(heun.ok()) << heun.status();
  EXPECT_EQ(backend_->step_calls(), 8);

  FakeBackend reference;  // called from this thread: its contract checker is not consulted
  auto control = Control();
  auto z = reference.Encode({EncodeItem{control, {21, 22}}});
  ASSERT_TRUE(z.ok());
  JointLatent cur = *z;
  auto step = [&](const JointLatent& at, int i) {
    StepBatch b;
    b.z = at;
    b.t = torch::full({2}, static_cast<float>(i / 4.0));
    b.dt = torch::full({2}, static_cast<float>(1.0 / 4));
    b.guidance = torch::full({2}, 1.5f);
    b.labels = torch::full({2}, 6, torch::kInt64);
    return *reference.Step(b);
  };
  for (int i = 0; i < 4; ++i) cur = HeunAverage(cur, step(step(cur, i), i + 1));
  for (int k = 0; k < 2; ++k) {
    JointLatent row{cur.image.narrow(0, k, 1), cur.gene.narrow(0, k, 1)};
    auto out = reference.Decode(row);
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(heun->samples[k].pixels, (*out)[0].pixels) << k;
    EXPECT_EQ(heun->samples[k].expression, (*out)[0].expression) << k;
  }
  auto euler = RunAlone(2, 4, 21, 6, 1.5);
  ASSERT_TRUE(euler.ok());
  EXPECT_NE(euler->samples[0].expression, heun->samples[0].expression);
}

// Rows of different samplers share forwards, and each gets the bits it gets alone.
TEST_F(SchedulerTest, EulerAndHeunRowsShareForwards) {
  auto euler_alone = RunAlone(1, 3, 5, 2, 1.5);
  auto heun_alone = RunAlone(1, 3, 6, 4, 1.0, SamplerKind::kHeun);
  ASSERT_TRUE(euler_alone.ok() && heun_alone.ok());
  const int before = backend_->step_calls();

  auto s = Make({});
  backend_->CloseGate();
  Outcome x, e, h;
  auto tx = Task(&x, 1, 1, 9, 7);
  ASSERT_TRUE(s->Schedule(&tx).ok());
  backend_->AwaitInStep(before + 1);  // X's only forward, held: E and H get encoded meanwhile
  auto te = Task(&e, 1, 3, 5, 2, 1.5);
  auto th = Task(&h, 1, 3, 6, 4, 1.0, nullptr, Priority::kInteractive, SamplerKind::kHeun);
  ASSERT_TRUE(s->Schedule(&te).ok());
  ASSERT_TRUE(s->Schedule(&th).ok());
  AwaitReady(*s, 2);
  backend_->OpenGate();
  for (Outcome* out : {&x, &e, &h}) out->done.WaitForNotification();
  ASSERT_TRUE(e.result.ok() && h.result.ok());
  EXPECT_EQ(e.result->samples[0].pixels, euler_alone->samples[0].pixels);
  EXPECT_EQ(e.result->samples[0].expression, euler_alone->samples[0].expression);
  EXPECT_EQ(h.result->samples[0].pixels, heun_alone->samples[0].pixels);
  EXPECT_EQ(h.result->samples[0].expression, heun_alone->samples[0].expression);
  // X alone, then E's 3 steps beside H's first 3 of 6 forwards, then H alone for 3.
  std::vector<int64_t> sizes = backend_->batch_sizes();
  sizes.erase(sizes.begin(), sizes.begin() + before);
  EXPECT_EQ(sizes, (std::vector<int64_t>{1, 2, 2, 2, 1, 1, 1}));
}

}  // namespace
}  // namespace cellflux::server
