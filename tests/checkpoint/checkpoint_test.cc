#include "common/checkpoint/checkpoint.h"

#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "common/checkpoint/checkpoint_dir.h"
#include "common/util/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellflux {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(testing::TempDir()) /
            ("ckpt_" + std::to_string(::getpid()) + "_" +
             testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string Dir(const std::string& name) const { return (root_ / name).string(); }

  // A small, valid bundle: tiny config with 3 perturbations and 4 genes, mixed float dtypes.
  static CheckpointBundle MakeBundle(int64_t step, uint64_t seed = 1) {
    torch::manual_seed(seed);
    CheckpointBundle b;
    absl::StatusOr<ModelConfig> config = ModelConfig::Load("configs/tiny.json");
    EXPECT_TRUE(config.ok()) << config.status();
    b.config = *config;
    b.config.sit.num_classes = 3;
    b.config.gene_ae.num_genes = 4;
    b.model["x_embedder.proj.weight"] = torch::randn({8, 20, 2, 2});
    b.model["y_embedder.embedding_table.weight"] = torch::randn({4, 8});
    b.model["pos_embed"] = torch::randn({1, 4, 8}).to(torch::kFloat64);
    b.gene_autoencoder["encoder.0.weight"] = torch::randn({5, 4}).to(torch::kBFloat16);
    b.gene_autoencoder["mean"] = torch::randn({4}).to(torch::kFloat16);
    b.gene_autoencoder["scale"] = torch::tensor(2.5f);  // scalar
    b.image_vae["quant_conv.weight"] = torch::randn({8, 8, 1, 1});
    b.image_vae["empty"] = torch::zeros({0, 3});
    b.perturbations = {{"BRD-K00000001", 10.0, "CCO", "ethanol"},
                       {"BRD-K00000002", 0.1, "", ""},
                       {"BRD-A12345678", std::nan(""), "c1ccccc1", "benzene µ"}};
    b.genes = {{"200814_at", "PSME1"},
               {"222103_at", "ATF1"},
               {"201453_x_at", "RHEB"},
               {"204131_s_at", ""}};
    b.step = step;
    return b;
  }

  fs::path root_;
};

std::string Bytes(const torch::Tensor& t) {
  torch::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

void ExpectSameTensors(const TensorMap& a, const TensorMap& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    auto it = b.find(name);
    ASSERT_NE(it, b.end()) << name;
    EXPECT_EQ(t.scalar_type(), it->second.scalar_type()) << name;
    EXPECT_EQ(t.sizes(), it->second.sizes()) << name;
    EXPECT_EQ(Bytes(t), Bytes(it->second)) << name;
  }
}

void ExpectSameBundle(const CheckpointBundle& a, const CheckpointBundle& b) {
  EXPECT_EQ(a.config.ToJson(), b.config.ToJson());
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.model_id, b.model_id);
  ExpectSameTensors(a.model, b.model);
  ExpectSameTensors(a.gene_autoencoder, b.gene_autoencoder);
  ExpectSameTensors(a.image_vae, b.image_vae);
  ASSERT_EQ(a.perturbations.size(), b.perturbations.size());
  for (size_t i = 0; i < a.perturbations.size(); ++i) {
    const auto &x = a.perturbations[i], &y = b.perturbations[i];
    EXPECT_EQ(x.id, y.id);
    EXPECT_EQ(std::isnan(x.dose), std::isnan(y.dose)) << x.id;
    if (!std::isnan(x.dose)) EXPECT_EQ(x.dose, y.dose) << x.id;  // bit-exact, not approximately
    EXPECT_EQ(x.smiles, y.smiles);
    EXPECT_EQ(x.name, y.name);
  }
  ASSERT_EQ(a.genes.size(), b.genes.size());
  for (size_t i = 0; i < a.genes.size(); ++i) {
    EXPECT_EQ(a.genes[i].probe_id, b.genes[i].probe_id);
    EXPECT_EQ(a.genes[i].symbol, b.genes[i].symbol);
  }
}

std::vector<std::string> Entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Spit(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST_F(CheckpointTest, RoundTripIsBitExact) {
  CheckpointBundle b = MakeBundle(7);
  b.model_id = "my-model";
  ASSERT_TRUE(WriteCheckpoint(Dir("step_7"), b).ok());
  EXPECT_THAT(
      Entries(Dir("step_7")),
      UnorderedElementsAre("config.json", "model.safetensors", "gene_autoencoder.safetensors",
                           "image_vae.safetensors", "perturbations.tsv", "genes.tsv"));
  absl::StatusOr<CheckpointBundle> r = ReadCheckpoint(Dir("step_7"));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectSameBundle(b, *r);
  // The files are the documented plain formats.
  EXPECT_THAT(
      Slurp(Dir("step_7/perturbations.tsv")),
      HasSubstr("row_index\tbroad_id\tdose\tsmiles\tname\n0\tBRD-K00000001\t10\tCCO\tethanol\n"
                "1\tBRD-K00000002\t0.1\t\t\n2\tBRD-A12345678\t\tc1ccccc1\tbenzene µ\n"));
  EXPECT_EQ(Slurp(Dir("step_7/genes.tsv")),
            "order\tprobe_id\tsymbol\n0\t200814_at\tPSME1\n1\t222103_at\tATF1\n2\t201453_x_"
            "at\tRHEB\n3\t204131_s_at\t\n");
  auto j = nlohmann::json::parse(Slurp(Dir("step_7/config.json")));
  EXPECT_EQ(j["step"], 7);
  EXPECT_EQ(j["model_id"], "my-model");
  EXPECT_EQ(j["sit"]["num_classes"], 3);
  // No write leftovers next to it.
  EXPECT_THAT(Entries(root_), UnorderedElementsAre("step_7"));
}

TEST_F(CheckpointTest, DefaultModelIdIsNameStepAndContentHash) {
  CheckpointBundle b = MakeBundle(12);
  ASSERT_TRUE(WriteCheckpoint(Dir("c"), b).ok());
  absl::StatusOr<CheckpointBundle> r = ReadCheckpoint(Dir("c"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(std::regex_match(r->model_id, std::regex("cellfluxmm-tiny@step12-[0-9a-f]{8}")))
      << r->model_id;
  EXPECT_EQ(r->model_id, DefaultModelId(b));
  EXPECT_EQ(DefaultModelId(*r),
            DefaultModelId(b));  // hash of what was read = hash of what was written
  CheckpointBundle changed = b;
  changed.model["pos_embed"] = changed.model["pos_embed"].clone();
  changed.model["pos_embed"].view(-1)[0] += 1;
  EXPECT_NE(DefaultModelId(changed), DefaultModelId(b));
  changed = b;
  changed.perturbations[1].id = "BRD-other";
  EXPECT_NE(DefaultModelId(changed), DefaultModelId(b));
}

TEST_F(CheckpointTest, OverwritingReplacesTheOldCheckpoint) {
  ASSERT_TRUE(WriteCheckpoint(Dir("ckpt"), MakeBundle(1, 1)).ok());
  CheckpointBundle second = MakeBundle(2, 2);
  TrainerState ts;
  ts.state = {{"epoch", 3}};
  ts.tensors["optimizer"]["step"] = torch::tensor({5}, torch::kInt64);
  ASSERT_TRUE(WriteCheckpoint(Dir("ckpt/"), second, &ts).ok());  // trailing slash: same dir
  absl::StatusOr<CheckpointBundle> r = ReadCheckpoint(Dir("ckpt"));
  ASSERT_TRUE(r.ok()) << r.status();
  second.model_id = DefaultModelId(second);
  ExpectSameBundle(second, *r);
  EXPECT_THAT(Entries(root_), UnorderedElementsAre("ckpt"));
  // Overwriting without trainer state removes the old trainer state too.
  ASSERT_TRUE(WriteCheckpoint(Dir("ckpt"), MakeBundle(3, 3)).ok());
  EXPECT_EQ(ReadTrainerState(Dir("ckpt")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Entries(root_), UnorderedElementsAre("ckpt"));
}

TEST_F(CheckpointTest, TrainerStateRoundTrips) {
  TrainerState ts;
  ts.state = {{"step", 9}, {"rng", "abc"}, {"data_position", {{"epoch", 1}, {"index", 17}}}};
  ts.tensors["model"]["w"] = torch::randn({3, 2});
  ts.tensors["optimizer"]["exp_avg.w"] = torch::randn({3, 2});
  ts.tensors["optimizer"]["step"] = torch::tensor({9}, torch::kInt64);
  ASSERT_TRUE(WriteCheckpoint(Dir("s"), MakeBundle(9), &ts).ok());
  absl::StatusOr<TrainerState> r = ReadTrainerState(Dir("s"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, ts.state);
  ASSERT_EQ(r->tensors.size(), 2u);
  ExpectSameTensors(ts.tensors["model"], r->tensors["model"]);
  ExpectSameTensors(ts.tensors["optimizer"], r->tensors["optimizer"]);
  // Bad stems are refused before anything is renamed into place.
  TrainerState bad;
  bad.tensors["../evil"]["w"] = torch::zeros({1});
  absl::Status s = WriteCheckpoint(Dir("t"), MakeBundle(1), &bad);
  EXPECT_THAT(std::string(s.message()), HasSubstr("invalid file stem '../evil'"));
  EXPECT_FALSE(fs::exists(Dir("t")));
  EXPECT_THAT(Entries(root_), UnorderedElementsAre("s"));
}

TEST_F(CheckpointTest, CrashLeftoversAreIgnoredAndCleaned) {
  ASSERT_TRUE(WriteCheckpoint(Dir("step_1"), MakeBundle(1)).ok());
  ASSERT_TRUE(UpdateLatestPointer(root_.string(), "step_1").ok());
  // A writer died mid-write of step_2 (partial temp dir) and mid-overwrite of step_1.
  fs::create_directories(root_ / ".step_2.tmp-999-deadbeef");
  Spit((root_ / ".step_2.tmp-999-deadbeef" / "config.json").string(), "{\"step\": 2, \"trunc");
  fs::create_directories(root_ / ".step_1.tmp-998-cafe");
  absl::StatusOr<CheckpointBundle> r = ReadCheckpoint(Dir("step_1"));
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<std::string> resolved = ResolveCheckpointDir(root_.string());
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(*resolved, Dir("step_1"));
  auto listed = ListCheckpoints(root_.string());
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name, "step_1");
  auto cleaned = CleanupCheckpointLeftovers(root_.string());
  ASSERT_TRUE(cleaned.ok()) << cleaned.status();
  EXPECT_THAT(*cleaned, UnorderedElementsAre(".step_2.tmp-999-deadbeef", ".step_1.tmp-998-cafe"));
  EXPECT_THAT(Entries(root_), UnorderedElementsAre("step_1", "latest"));
}

TEST_F(CheckpointTest, CrashBetweenTheTwoRenamesIsRecovered) {
  ASSERT_TRUE(WriteCheckpoint(Dir("ckpt"), MakeBundle(4)).ok());
  // State after "rename old away" but before "rename new in": only the old copy, hidden.
  fs::rename(Dir("ckpt"), root_ / ".ckpt.old-123-abcd");
  fs::create_directories(root_ / ".ckpt.tmp-123-abcd");
  EXPECT_EQ(ReadCheckpoint(Dir("ckpt")).status().code(), absl::StatusCode::kNotFound);
  auto cleaned = CleanupCheckpointLeftovers(root_.string());
  ASSERT_TRUE(cleaned.ok()) << cleaned.status();
  EXPECT_THAT(Entries(root_), UnorderedElementsAre("ckpt"));
  absl::StatusOr<CheckpointBundle> r = ReadCheckpoint(Dir("ckpt"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->step, 4);
}

// A first `flow --resume` runs before any checkpoint root exists: nothing to clean, not an error.
TEST_F(CheckpointTest, CleanupOfAMissingRootIsANoOp) {
  auto cleaned = CleanupCheckpointLeftovers((root_ / "not_created_yet").string());
  ASSERT_TRUE(cleaned.ok()) << cleaned.status();
  EXPECT_TRUE(cleaned->empty());
}

TEST_F(CheckpointTest, LatestPointerAndResolve) {
  ASSERT_TRUE(WriteCheckpoint(Dir("step_1"), MakeBundle(1)).ok());
  ASSERT_TRUE(WriteCheckpoint(Dir("step_2"), MakeBundle(2)).ok());
  absl::Status s = ResolveCheckpointDir(root_.string()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("neither a checkpoint directory"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(root_.string()));

  ASSERT_TRUE(UpdateLatestPointer(root_.string(), "step_1").ok());
  EXPECT_EQ(Slurp(Dir("latest")), "step_1\n");
  ASSERT_TRUE(UpdateLatestPointer(root_.string(), "step_2").ok());
  EXPECT_EQ(*ResolveCheckpointDir(root_.string()), Dir("step_2"));
  EXPECT_EQ(*ResolveCheckpointDir(Dir("step_1")),
            Dir("step_1"));  // a checkpoint dir resolves to itself

  EXPECT_EQ(UpdateLatestPointer(root_.string(), "../step_1").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UpdateLatestPointer(root_.string(), ".hidden").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UpdateLatestPointer(root_.string(), "step_9").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*ReadCheckpointPointer(root_.string(), "latest"), "step_2");  // unchanged by failures

  fs::remove_all(Dir("step_2"));
  s = ResolveCheckpointDir(root_.string()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("latest points to 'step_2'"));
}

TEST_F(CheckpointTest, PruneKeepsLastKAndPointedTo) {
  for (int step : {1, 2, 3, 9, 10}) {
    ASSERT_TRUE(WriteCheckpoint(Dir("step_" + std::to_string(step)), MakeBundle(step)).ok());
  }
  ASSERT_TRUE(UpdateLatestPointer(root_.string(), "step_3").ok());  // e.g. a rollback
  ASSERT_TRUE(UpdateCheckpointPointer(root_.string(), kBestPointer, "step_1").ok());
  fs::create_directories(root_ / ".step_11.tmp-1-2");
  auto removed = PruneCheckpoints(root_.string(), 2);
  ASSERT_TRUE(removed.ok()) << removed.status();
  // Steps order numerically (step_9 < step_10), not by name.
  EXPECT_THAT(*removed, UnorderedElementsAre("step_2"));
  EXPECT_THAT(Entries(root_),
              UnorderedElementsAre("step_1", "step_3", "step_9", "step_10", "latest", "best"));
  removed = PruneCheckpoints(root_.string(), 1);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_THAT(*removed, UnorderedElementsAre("step_9"));
  EXPECT_EQ(PruneCheckpoints(root_.string(), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A corrupt pointer means nothing can be known to be safe: delete nothing.
  Spit(Dir("best"), "../x\n");
  EXPECT_FALSE(PruneCheckpoints(root_.string(), 1).ok());
  EXPECT_TRUE(fs::exists(Dir("step_1")));
}

// --- Choosing where --resume continues (issue 19.1: never silently start over) ----------------

class ResumeChoiceTest : public CheckpointTest {
 protected:
  void SetUp() override {
    CheckpointTest::SetUp();
    for (int step : {2, 4}) {
      ASSERT_TRUE(WriteCheckpoint(Dir(Name(step)), MakeBundle(step)).ok());
    }
    ASSERT_TRUE(UpdateLatestPointer(root_.string(), Name(4)).ok());
  }
  static std::string Name(int step) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "step-%07d", step);
    return buf;
  }
  // Accepts every checkpoint except those in `reject`.
  absl::StatusOr<ResumeChoice> Choose(std::set<std::string> reject = {}) {
    return ChooseResumeCheckpoint(root_.string(), [&](const std::string& dir) {
      const std::string name = fs::path(dir).filename().string();
      loaded_.push_back(name);
      return reject.count(name) ? absl::InvalidArgumentError("trainer_state is corrupt")
                                : absl::OkStatus();
    });
  }
  std::vector<std::string> loaded_;
};

TEST_F(ResumeChoiceTest, IntactLatestIsUsedWithoutNotes) {
  auto c = Choose();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->dir, Dir(Name(4)));
  EXPECT_EQ(c->step, 4);
  EXPECT_TRUE(c->notes.empty());
  EXPECT_THAT(loaded_, ::testing::ElementsAre(Name(4)));  // only the one resumed from is read
}

TEST_F(ResumeChoiceTest, EmptyOrDanglingLatestFallsBackToTheNewestAndSaysWhy) {
  Spit(Dir("latest"), "");
  auto c = Choose();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, Name(4));
  ASSERT_EQ(c->notes.size(), 1u);
  EXPECT_THAT(c->notes[0], HasSubstr("unusable"));
  EXPECT_THAT(c->notes[0], HasSubstr(Name(4)));

  Spit(Dir("latest"), "step-0000099\n");
  c = Choose();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, Name(4));
  ASSERT_EQ(c->notes.size(), 1u);
  EXPECT_THAT(c->notes[0], HasSubstr("'step-0000099', which is missing"));

  fs::remove(Dir("latest"));
  c = Choose();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, Name(4));
}

TEST_F(ResumeChoiceTest, LatestLaggingBehindANewerCompleteCheckpointIsOvertaken) {
  // A crash between writing step-4 and moving the pointer.
  ASSERT_TRUE(UpdateLatestPointer(root_.string(), Name(2)).ok());
  auto c = Choose();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, Name(4));
  ASSERT_EQ(c->notes.size(), 1u);
  EXPECT_THAT(c->notes[0], HasSubstr("is older"));
}

TEST_F(ResumeChoiceTest, NewerCheckpointThatCannotLoadFailsInsteadOfBeingOverwritten) {
  // latest → the newest step directory, which lost its config.json.
  fs::remove(Dir(Name(4)) + "/config.json");
  auto c = Choose();
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(Name(4) + " (step 4): no config.json"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("would overwrite it"));
  EXPECT_TRUE(fs::exists(Dir(Name(4))));
}

TEST_F(ResumeChoiceTest, NewestWhoseStateIsRejectedFailsNamingTheReason) {
  auto c = Choose({Name(4)});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("trainer_state is corrupt"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("resume from step 2"));
}

TEST_F(ResumeChoiceTest, NothingLoadableIsAnErrorNotAFreshStart) {
  auto c = Choose({Name(2), Name(4)});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("no checkpoint under"));
}

TEST_F(ResumeChoiceTest, AnEmptyOrMissingRootHasNothingToResume) {
  fs::remove_all(root_);
  auto c = Choose();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->dir.empty());
  fs::create_directories(root_ / ".step-0000006.tmp-1-2");  // a write leftover is not progress
  c = Choose();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->dir.empty());
}

TEST(StepFromCheckpointNameTest, OnlyStepDigits) {
  EXPECT_EQ(StepFromCheckpointName("step-0000042"), 42);
  EXPECT_EQ(StepFromCheckpointName("step-"), -1);
  EXPECT_EQ(StepFromCheckpointName("step-12a"), -1);
  EXPECT_EQ(StepFromCheckpointName("best"), -1);
}

// --- Validation failures: each message names the file (and row/field/tensor) -------------------

class CheckpointValidationTest : public CheckpointTest {
 protected:
  void SetUp() override {
    CheckpointTest::SetUp();
    dir_ = Dir("ckpt");
    ASSERT_TRUE(WriteCheckpoint(dir_, MakeBundle(5)).ok());
  }
  // Reading fails with `code` and a message holding the path of `file` and `what`.
  void ExpectReadFails(const std::string& file, const std::string& what,
                       absl::StatusCode code = absl::StatusCode::kInvalidArgument) {
    absl::Status s = ReadCheckpoint(dir_).status();
    ASSERT_FALSE(s.ok()) << "accepted a checkpoint that should fail with: " << what;
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr((fs::path(dir_) / file).string()));
    EXPECT_THAT(std::string(s.message()), HasSubstr(what));
  }
  void EditConfig(const std::function<void(nlohmann::json&)>& edit) {
    auto j = nlohmann::json::parse(Slurp(dir_ + "/config.json"));
    edit(j);
    Spit(dir_ + "/config.json", j.dump());
  }
  std::string dir_;
};

TEST_F(CheckpointValidationTest, MissingFiles) {
  for (const char* f : {kConfigFile, kModelFile, kGeneAutoencoderFile, kImageVaeFile,
                        kPerturbationsFile, kGenesFile}) {
    fs::rename(dir_ + "/" + f, dir_ + "/moved");
    ExpectReadFails(f, "", absl::StatusCode::kNotFound);
    fs::rename(dir_ + "/moved", dir_ + "/" + f);
  }
  ASSERT_TRUE(ReadCheckpoint(dir_).ok());
  EXPECT_EQ(ReadCheckpoint(Dir("nope")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CheckpointValidationTest, ConfigProblems) {
  Spit(dir_ + "/config.json", "{\"step\": 5,");
  ExpectReadFails("config.json", "not valid JSON");
  Spit(dir_ + "/config.json", "[]");
  ExpectReadFails("config.json", "not a JSON object");
}

TEST_F(CheckpointValidationTest, ConfigStepAndModelId) {
  EditConfig([](nlohmann::json& j) { j.erase("step"); });
  ExpectReadFails("config.json", "field 'step'");
  EditConfig([](nlohmann::json& j) { j["step"] = -3; });
  ExpectReadFails("config.json", "field 'step'");
  EditConfig([](nlohmann::json& j) {
    j["step"] = 5;
    j.erase("model_id");
  });
  ExpectReadFails("config.json", "field 'model_id'");
  EditConfig([](nlohmann::json& j) { j["model_id"] = ""; });
  ExpectReadFails("config.json", "field 'model_id'");
  EditConfig([](nlohmann::json& j) {
    j["model_id"] = "m";
    j["checkpoint_format"] = 99;
  });
  ExpectReadFails("config.json", "checkpoint_format 99");
}

TEST_F(CheckpointValidationTest, ConfigInvalid) {
  EditConfig([](nlohmann::json& j) { j["sit"]["input_size"] = 7; });
  ExpectReadFails("config.json", "sit.input_size");
  EditConfig([](nlohmann::json& j) { j["sit"]["input_size"] = "sixteen"; });
  ExpectReadFails("config.json", "input_size");
}

TEST_F(CheckpointValidationTest, VocabularySizeMustMatchConfig) {
  EditConfig([](nlohmann::json& j) { j["sit"]["num_classes"] = 4; });
  ExpectReadFails("perturbations.tsv", "3 rows, but config sit.num_classes = 4");
  EditConfig([](nlohmann::json& j) {
    j["sit"]["num_classes"] = 3;
    j["gene_ae"]["num_genes"] = 5;
  });
  ExpectReadFails("genes.tsv", "4 rows, but config gene_ae.num_genes = 5");
}

TEST_F(CheckpointValidationTest, PerturbationsTsvProblems) {
  const std::string good = Slurp(dir_ + "/perturbations.tsv");
  Spit(dir_ + "/perturbations.tsv", "row\tbroad_id\tdose\tsmiles\tname\n");
  ExpectReadFails("perturbations.tsv", "line 1: header is 'row");
  Spit(dir_ + "/perturbations.tsv", "");
  ExpectReadFails("perturbations.tsv", "empty file");
  std::string dup = good;
  dup.replace(dup.find("BRD-K00000002"), 13, "BRD-K00000001");
  Spit(dir_ + "/perturbations.tsv", dup);
  ExpectReadFails("perturbations.tsv",
                  "line 3 (row 1), field 'broad_id': duplicate id 'BRD-K00000001'");
  std::string idx = good;
  idx.replace(idx.find("\n2\t"), 3, "\n7\t");
  Spit(dir_ + "/perturbations.tsv", idx);
  ExpectReadFails("perturbations.tsv", "line 4 (row 2), field 'row_index': '7', expected 2");
  std::string dose = good;
  dose.replace(dose.find("\t0.1\t"), 5, "\tabc\t");
  Spit(dir_ + "/perturbations.tsv", dose);
  ExpectReadFails("perturbations.tsv",
                  "line 3 (row 1), field 'dose': 'abc' is not a finite number");
  Spit(dir_ + "/perturbations.tsv", good + "3\tBRD-X\n");
  ExpectReadFails("perturbations.tsv", "line 5 (row 3): 2 fields, expected 5");
  std::string empty_id = good;
  empty_id.replace(empty_id.find("BRD-A12345678"), 13, "");
  Spit(dir_ + "/perturbations.tsv", empty_id);
  ExpectReadFails("perturbations.tsv", "line 4 (row 2), field 'broad_id': empty");
}

TEST_F(CheckpointValidationTest, GenesTsvProblems) {
  const std::string good = Slurp(dir_ + "/genes.tsv");
  std::string dup = good;
  dup.replace(dup.find("222103_at"), 9, "200814_at");
  Spit(dir_ + "/genes.tsv", dup);
  ExpectReadFails("genes.tsv", "line 3 (row 1), field 'probe_id': duplicate id '200814_at'");
  Spit(dir_ + "/genes.tsv", "order\tprobe\tsymbol\n");
  ExpectReadFails("genes.tsv", "header is 'order\tprobe\tsymbol'");
  std::string idx = good;
  idx.replace(idx.find("\n1\t"), 3, "\nx\t");
  Spit(dir_ + "/genes.tsv", idx);
  ExpectReadFails("genes.tsv", "field 'order': 'x', expected 1");
}

TEST_F(CheckpointValidationTest, CorruptSafetensors) {
  std::string model = Slurp(dir_ + "/model.safetensors");
  Spit(dir_ + "/model.safetensors", model.substr(0, model.size() - 10));
  ExpectReadFails("model.safetensors", "run past the end of the data section");
  Spit(dir_ + "/model.safetensors", model);
  Spit(dir_ + "/image_vae.safetensors", "garbage");
  ExpectReadFails("image_vae.safetensors", "truncated");
}

TEST_F(CheckpointValidationTest, WeightsMustBeFloatingAndFinite) {
  TensorMap ints = {{"blocks.0.attn.qkv.weight", torch::ones({2, 2}, torch::kInt32)}};
  ASSERT_TRUE(SaveSafetensors(dir_ + "/gene_autoencoder.safetensors", ints).ok());
  ExpectReadFails("gene_autoencoder.safetensors",
                  "tensor 'blocks.0.attn.qkv.weight': dtype Int, expected a floating-point dtype");
  TensorMap nan = {{"w", torch::tensor({1.0f, std::nanf(""), 2.0f})}};
  ASSERT_TRUE(SaveSafetensors(dir_ + "/gene_autoencoder.safetensors", nan).ok());
  ExpectReadFails("gene_autoencoder.safetensors", "tensor 'w' [3]: holds NaN or infinite values");
  ASSERT_TRUE(SaveSafetensors(dir_ + "/gene_autoencoder.safetensors", {}).ok());
  ExpectReadFails("gene_autoencoder.safetensors", "holds no tensors");
}

TEST_F(CheckpointTest, WriteRefusesInvalidBundlesAndLeavesNothing) {
  CheckpointBundle b = MakeBundle(1);
  b.perturbations.pop_back();
  absl::Status s = WriteCheckpoint(Dir("bad"), b);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr(Dir("bad") + "/perturbations.tsv: 2 rows"));
  b = MakeBundle(1);
  b.perturbations[0].name = "tab\there";
  s = WriteCheckpoint(Dir("bad"), b);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("perturbations.tsv: row 0, field 'name' contains a tab"));
  b = MakeBundle(1);
  b.genes[2].probe_id = b.genes[0].probe_id;
  s = WriteCheckpoint(Dir("bad"), b);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("genes.tsv: row 2: duplicate probe_id '200814_at'"));
  b = MakeBundle(1);
  b.model["w"] = torch::tensor({INFINITY});
  s = WriteCheckpoint(Dir("bad"), b);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("model.safetensors, tensor 'w' [1]: holds NaN or infinite"));
  b = MakeBundle(1);
  b.step = -1;
  EXPECT_THAT(std::string(WriteCheckpoint(Dir("bad"), b).message()),
              HasSubstr("step -1 is negative"));
  EXPECT_TRUE(Entries(root_).empty());  // no directory, no temp leftovers
}

}  // namespace
}  // namespace cellflux
