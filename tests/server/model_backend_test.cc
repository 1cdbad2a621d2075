// The real-model backend end to end on a tiny random checkpoint (configs/tiny.json, 16 genes):
// load + warm-up, model info from the checkpoint, samples in the request scale, and whether a
// request's output stays bit-identical when the scheduler batches it with other requests.
#include "server/model_backend.h"

#include <memory>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "absl/synchronization/notification.h"
#include "common/checkpoint/checkpoint.h"
#include "common/checkpoint/model_bundle.h"
#include "common/models/cellflux_model.h"
#include "common/util/logging.h"
#include "server/scheduler.h"

namespace cellflux::server {
namespace {

constexpr int kGenes = 16;

class ModelBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SetMinLogLevel(LogLevel::kWARNING);
    auto config = ModelConfig::Load("configs/tiny.json");
    ASSERT_TRUE(config.ok()) << config.status();
    config->gene_ae.num_genes = kGenes;
    torch::manual_seed(3);
    CellFluxModel model(*config);
    std::vector<cellflux::PerturbationEntry> perts;
    for (int i = 0; i < config->sit.num_classes; ++i) {
      perts.push_back({"BRD-T" + std::to_string(1000 + i), 10.0, "", "c" + std::to_string(i)});
    }
    std::vector<GeneEntry> genes;
    for (int g = 0; g < kGenes; ++g) genes.push_back({"p" + std::to_string(g) + "_at", ""});
    CheckpointBundle bundle = BundleFromModel(model, perts, genes, /*step=*/42);
    dir_ = new std::string(::testing::TempDir() + "/cellflux_server_tiny_ckpt");
    absl::Status s = WriteCheckpoint(*dir_, bundle);
    ASSERT_TRUE(s.ok()) << s;
  }
  static void TearDownTestSuite() { delete dir_; }

  std::shared_ptr<ControlInput> Control() {
    auto c = std::make_shared<ControlInput>();
    const int s = 64;
    for (int i = 0; i < 5 * s * s; ++i) c->pixels.push_back(static_cast<uint16_t>((i * 37) % 4096));
    for (int g = 0; g < kGenes; ++g) c->expression.push_back(0.1f * g - 0.5f);
    return c;
  }

  // Runs the given tasks through one scheduler; returns their results in order.
  std::vector<absl::StatusOr<PredictResult>> Run(std::shared_ptr<Backend> backend,
                                                 std::vector<std::unique_ptr<PredictTask>> tasks) {
    SchedulerOptions o;
    o.max_batch = 8;
    auto scheduler = Scheduler::Create(o, nullptr);
    EXPECT_TRUE(scheduler.ok());
    std::vector<absl::StatusOr<PredictResult>> results(tasks.size(), absl::UnknownError(""));
    std::vector<absl::Notification> done(tasks.size());
    for (size_t i = 0; i < tasks.size(); ++i) {
      tasks[i]->backend = backend;
      tasks[i]->done = [&results, &done, i](absl::StatusOr<PredictResult> r) {
        results[i] = std::move(r);
        done[i].Notify();
      };
      EXPECT_TRUE((*scheduler)->Schedule(&tasks[i]).ok());
    }
    for (auto& d : done) d.WaitForNotification();
    return results;
  }

  std::unique_ptr<PredictTask> Task(int samples, int steps, uint64_t seed, int64_t label,
                                    double guidance) {
    auto t = std::make_unique<PredictTask>();
    t->control = Control();
    t->num_samples = samples;
    t->num_steps = steps;
    t->seed = seed;
    t->label = label;
    t->guidance = guidance;
    return t;
  }

  static std::string* dir_;
};

std::string* ModelBackendTest::dir_ = nullptr;

TEST_F(ModelBackendTest, LoadsTheCheckpointAndReportsIt) {
  auto backend = LoadModelBackend({*dir_});
  ASSERT_TRUE(backend.ok()) << backend.status();
  const ModelInfo& info = (*backend)->info();
  EXPECT_EQ(info.step, 42);
  EXPECT_FALSE(info.model_id.empty());
  EXPECT_EQ(info.image_size, 64);
  EXPECT_EQ(info.gene_ids.size(), static_cast<size_t>(kGenes));
  EXPECT_EQ(info.perturbations.size(), 64u);
  EXPECT_EQ(info.LabelOf("BRD-T1005"), 5);
  EXPECT_EQ(info.sampling.num_steps, 50);
}

TEST_F(ModelBackendTest, MissingCheckpointIsNotFound) {
  auto backend = LoadModelBackend({::testing::TempDir() + "/no_such_checkpoint"});
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kNotFound) << backend.status();
}

TEST_F(ModelBackendTest, SamplesAreSeededAndIndependentOfBatchmates) {
  auto backend = LoadModelBackend({*dir_});
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::vector<std::unique_ptr<PredictTask>> alone;
  alone.push_back(Task(2, 4, 11, 5, 1.5));
  auto a = Run(*backend, std::move(alone));
  ASSERT_TRUE(a[0].ok()) << a[0].status();
  ASSERT_EQ(a[0]->samples.size(), 2u);
  EXPECT_EQ(a[0]->samples[0].pixels.size(), 5u * 64 * 64);
  EXPECT_EQ(a[0]->samples[0].expression.size(), static_cast<size_t>(kGenes));
  for (uint16_t v : a[0]->samples[0].pixels) ASSERT_LE(v, 4095);
  EXPECT_NE(a[0]->samples[0].pixels, a[0]->samples[1].pixels);  // different seeds

  std::vector<std::unique_ptr<PredictTask>> mixed;
  mixed.push_back(Task(3, 6, 99, 1, 1.0));
  mixed.push_back(Task(1, 2, 7, 9, 2.0));
  mixed.push_back(Task(2, 4, 11, 5, 1.5));  // the probe
  mixed.push_back(Task(2, 3, 5, 3, 1.2));
  auto m = Run(*backend, std::move(mixed));
  for (auto& r : m) ASSERT_TRUE(r.ok()) << r.status();
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ(m[2]->samples[k].pixels, a[0]->samples[k].pixels) << "sample " << k;
    EXPECT_EQ(m[2]->samples[k].expression, a[0]->samples[k].expression) << "sample " << k;
  }
}

}  // namespace
}  // namespace cellflux::server
