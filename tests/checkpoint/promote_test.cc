// cellflux-tool promote's library: the MODELS_DIR layout (versions/, current, previous), atomic
// flips, refusal of corrupt checkpoints with nothing changed, and rollback.
#include "common/checkpoint/promote.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/checkpoint/checkpoint.h"
#include "common/checkpoint/checkpoint_dir.h"
#include "common/checkpoint/model_bundle.h"
#include "tests/testing/small_model_config.h"

namespace cellflux {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class PromoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ =
        fs::path(::testing::TempDir()) /
        ("promote_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    models_ = (root_ / "models").string();
  }
  void TearDown() override { fs::remove_all(root_); }

  // A valid checkpoint of the small model with weights from `seed`, written at root/name.
  std::string Write(const std::string& name, uint64_t seed, int64_t step) {
    torch::manual_seed(seed);
    ModelConfig config = testing::SmallModelConfig();
    config.name = "promote-test";
    CellFluxModel model(config);
    std::vector<PerturbationEntry> vocab;
    for (int i = 0; i < config.sit.num_classes; ++i) {
      PerturbationEntry e;
      e.id = "BRD-K0000000" + std::to_string(i) + "-001-01-1";
      e.dose = 10.0;
      vocab.push_back(e);
    }
    std::vector<GeneEntry> genes;
    for (int i = 0; i < config.gene_ae.num_genes; ++i) {
      genes.push_back({"probe_" + std::to_string(i), "GENE" + std::to_string(i)});
    }
    const std::string dir = (root_ / name).string();
    TrainerState state;  // promote must leave trainer_state/ behind
    state.state["note"] = "resume only";
    EXPECT_TRUE(WriteCheckpoint(dir, BundleFromModel(model, vocab, genes, step), &state).ok());
    return dir;
  }

  std::string Link(const std::string& name) {
    return fs::read_symlink(fs::path(models_) / name).string();
  }
  std::string ServedModelId() {
    auto bundle = ReadCheckpoint(models_ + "/current");
    EXPECT_TRUE(bundle.ok()) << bundle.status();
    return bundle.ok() ? bundle->model_id : "";
  }

  fs::path root_;
  std::string models_;
};

TEST_F(PromoteTest, FirstPromoteCopiesAndPointsCurrent) {
  const std::string a = Write("run/step-100", 1, 100);
  auto r = PromoteCheckpoint(a, models_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->changed);
  EXPECT_EQ(r->current, "versions/" + r->model_id);
  EXPECT_EQ(r->previous, "");
  EXPECT_EQ(Link("current"), r->current);  // relative: the volume can be mounted anywhere
  EXPECT_FALSE(fs::exists(fs::path(models_) / "previous"));
  EXPECT_EQ(ServedModelId(), r->model_id);
  EXPECT_THAT(r->model_id, HasSubstr("@step100-"));
  // Serving files only; the source is untouched.
  EXPECT_FALSE(fs::exists(fs::path(models_) / r->current / kTrainerStateDir));
  EXPECT_TRUE(fs::exists(fs::path(a) / kTrainerStateDir));
  // Promoting the same checkpoint again changes nothing.
  auto again = PromoteCheckpoint(a, models_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->changed);
  EXPECT_FALSE(fs::exists(fs::path(models_) / "previous"));
}

TEST_F(PromoteTest, SecondPromoteKeepsThePreviousAndRollbackSwaps) {
  const std::string a = Write("run/step-100", 1, 100);
  const std::string b = Write("run/step-200", 2, 200);
  auto first = PromoteCheckpoint(a, models_);
  ASSERT_TRUE(first.ok()) << first.status();
  // A training root with a `latest` pointer is resolved like the server resolves it.
  ASSERT_TRUE(UpdateLatestPointer((root_ / "run").string(), "step-200").ok());
  auto second = PromoteCheckpoint((root_ / "run").string(), models_);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(second->model_id, first->model_id);
  EXPECT_EQ(Link("current"), second->current);
  EXPECT_EQ(Link("previous"), first->current);
  EXPECT_EQ(ServedModelId(), second->model_id);

  auto back = RollbackCheckpoint(models_);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->model_id, first->model_id);
  EXPECT_EQ(Link("current"), first->current);
  EXPECT_EQ(Link("previous"), second->current);
  EXPECT_EQ(ServedModelId(), first->model_id);
  // Rolling back twice is a roll forward.
  ASSERT_TRUE(RollbackCheckpoint(models_).ok());
  EXPECT_EQ(ServedModelId(), second->model_id);
  // Promoting a version kept under versions/ reuses its copy.
  auto reuse = PromoteCheckpoint(a, models_);
  ASSERT_TRUE(reuse.ok()) << reuse.status();
  EXPECT_EQ(ServedModelId(), first->model_id);
  EXPECT_EQ(Link("previous"), second->current);
}

TEST_F(PromoteTest, CorruptCheckpointIsRefusedAndNothingChanges) {
  const std::string a = Write("a", 1, 100);
  auto first = PromoteCheckpoint(a, models_);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string before_versions = [&] {
    std::string names;
    for (const auto& e : fs::directory_iterator(fs::path(models_) / "versions")) {
      names += e.path().filename().string() + ";";
    }
    return names;
  }();

  // Truncated weights.
  const std::string b = Write("b", 2, 200);
  fs::resize_file(fs::path(b) / kModelFile, fs::file_size(fs::path(b) / kModelFile) / 2);
  auto truncated = PromoteCheckpoint(b, models_);
  ASSERT_FALSE(truncated.ok());
  EXPECT_THAT(std::string(truncated.status().message()), HasSubstr(kModelFile));

  // A weight of the wrong shape for the config (valid file, wrong model).
  const std::string c = Write("c", 3, 300);
  {
    auto bundle = ReadCheckpoint(c);
    ASSERT_TRUE(bundle.ok());
    auto& t = bundle->model.begin()->second;
    t = torch::zeros({t.numel() + 1});
    bundle->model_id.clear();
    ASSERT_TRUE(WriteCheckpoint(c, *bundle).ok());
  }
  auto wrong_shape = PromoteCheckpoint(c, models_);
  ASSERT_FALSE(wrong_shape.ok());
  EXPECT_THAT(std::string(wrong_shape.status().message()), HasSubstr(c));

  // Missing config.json.
  const std::string d = Write("d", 4, 400);
  fs::remove(fs::path(d) / kConfigFile);
  EXPECT_FALSE(PromoteCheckpoint(d, models_).ok());

  EXPECT_EQ(Link("current"), first->current);
  EXPECT_FALSE(fs::exists(fs::path(models_) / "previous"));
  EXPECT_EQ(ServedModelId(), first->model_id);
  std::string after_versions;
  for (const auto& e : fs::directory_iterator(fs::path(models_) / "versions")) {
    after_versions += e.path().filename().string() + ";";
  }
  EXPECT_EQ(after_versions, before_versions);  // no half-written copy left behind
}

TEST_F(PromoteTest, RollbackWithoutPreviousAndHandMadeLayoutsAreRefused) {
  const std::string a = Write("a", 1, 100);
  auto nothing = RollbackCheckpoint(models_);
  EXPECT_EQ(nothing.status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(PromoteCheckpoint(a, models_).ok());
  auto still_nothing = RollbackCheckpoint(models_);
  EXPECT_EQ(still_nothing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(still_nothing.status().message()), HasSubstr("nothing to roll back"));

  // MODELS_DIR/current as a plain directory (copied by hand): refused, not replaced.
  const std::string other = (root_ / "other").string();
  fs::create_directories(other + "/current");
  auto refused = PromoteCheckpoint(a, other);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("is not a symbolic link"));
  EXPECT_TRUE(fs::is_directory(other + "/current"));
}

}  // namespace
}  // namespace cellflux
