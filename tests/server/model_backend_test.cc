// The real-model backend end to end on a tiny random checkpoint (configs/tiny.json, 16 genes):
// load + warm-up, model info from the checkpoint, samples in the request scale, and whether a
// request's output stays bit-identical when the scheduler batches it with other requests.
#include "server/model_backend.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/checkpoint/checkpoint.h"
#include "common/checkpoint/model_bundle.h"
#include "common/chem/chem.h"
#include "common/data/manifest.h"
#include "common/flow/sampler.h"
#include "common/models/cellflux_model.h"
#include "common/util/logging.h"
#include "server/control_bank.h"
#include "server/scheduler.h"
#include "tests/testing/tiny_dataset.h"

namespace cellflux::server {
namespace {

constexpr int kGenes = 16;

class ModelBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SetMinLogLevel(LogLevel::kWARNING);
    std::vector<std::string> genes;
    for (int g = 0; g < kGenes; ++g) genes.push_back("p" + std::to_string(g) + "_at");
    dir_ = new std::string(
        cellflux::testing::UniqueTempDir(::testing::TempDir(), "cellflux_server_tiny_ckpt"));
    WriteTinyCheckpoint(*dir_, genes);
  }

  // A random tiny model (configs/tiny.json) with these probe ids as its genes.
  static void WriteTinyCheckpoint(const std::string& dir,
                                  const std::vector<std::string>& gene_ids) {
    auto config = ModelConfig::Load("configs/tiny.json");
    ASSERT_TRUE(config.ok()) << config.status();
    config->gene_ae.num_genes = static_cast<int>(gene_ids.size());
    torch::manual_seed(3);
    CellFluxModel model(*config);
    std::vector<cellflux::PerturbationEntry> perts;
    for (int i = 0; i < config->sit.num_classes; ++i) {
      perts.push_back({"BRD-T" + std::to_string(1000 + i), 10.0, "", "c" + std::to_string(i)});
    }
    std::vector<GeneEntry> genes;
    for (const std::string& id : gene_ids) genes.push_back({id, ""});
    CheckpointBundle bundle = BundleFromModel(model, perts, genes, /*step=*/42);
    absl::Status s = WriteCheckpoint(dir, bundle);
    ASSERT_TRUE(s.ok()) << s;
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  std::shared_ptr<ControlInput> Control() {
    auto c = std::make_shared<ControlInput>();
    const int s = 64;
    for (int i = 0; i < 5 * s * s; ++i) c->pixels.push_back(static_cast<uint16_t>((i * 37) % 4096));
    for (int g = 0; g < kGenes; ++g) c->expression.push_back(0.1f * g - 0.5f);
    return c;
  }

  // Runs the given tasks through one scheduler; returns their results in order.
  std::vector<absl::StatusOr<PredictResult>> Run(std::shared_ptr<Backend> backend,
                                                 std::vector<std::unique_ptr<PredictTask>> tasks,
                                                 int max_batch = 8) {
    SchedulerOptions o;
    o.max_batch = max_batch;
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
                                    double guidance,
                                    std::shared_ptr<const ControlInput> control = nullptr) {
    auto t = std::make_unique<PredictTask>();
    t->control = control ? control : Control();
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

// The real backend with a gate on Step, so a test decides which rows share the forwards (the
// step loop admits whatever is encoded when it looks; without the gate that depends on thread
// speed).
class GatedBackend final : public Backend {
 public:
  explicit GatedBackend(std::shared_ptr<Backend> inner) : inner_(std::move(inner)) {}
  const ModelInfo& info() const override { return inner_->info(); }
  absl::StatusOr<JointLatent> Encode(const std::vector<EncodeItem>& items) override {
    return inner_->Encode(items);
  }
  absl::StatusOr<JointLatent> Step(const StepBatch& batch) override {
    {
      absl::MutexLock lock(&mu_);
      ++entered_;
      mu_.Await(absl::Condition(&open_));
    }
    return inner_->Step(batch);
  }
  absl::StatusOr<std::vector<SampleOutput>> Decode(const JointLatent& z) override {
    return inner_->Decode(z);
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  void AwaitEntered(int n) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return entered_ >= n; };
    mu_.Await(absl::Condition(&reached));
  }

 private:
  std::shared_ptr<Backend> inner_;
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  int entered_ ABSL_GUARDED_BY(mu_) = 0;
};

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

// Issue 19.2: the real model turns an absurd expression value into NaN. Validation rejects it
// (the statistics it needs come from the checkpoint), and when one reaches the model anyway the
// sample is flagged non-finite rather than returned as black pixels and NaN genes.
TEST_F(ModelBackendTest, ReportsGeneStatisticsAndFlagsNonFiniteSamples) {
  auto backend = LoadModelBackend({*dir_});
  ASSERT_TRUE(backend.ok()) << backend.status();
  const ModelInfo& info = (*backend)->info();
  ASSERT_EQ(info.gene_mean.size(), static_cast<size_t>(kGenes));
  ASSERT_EQ(info.gene_std.size(), static_cast<size_t>(kGenes));
  for (float s : info.gene_std) EXPECT_GT(s, 0);

  std::vector<std::unique_ptr<PredictTask>> tasks;
  tasks.push_back(Task(1, 2, 1, 5, 1.5));
  auto bad = Control();
  bad->expression[3] = 1e30f;  // what validation now refuses
  tasks.push_back(Task(1, 2, 1, 5, 1.5, bad));
  auto r = Run(*backend, std::move(tasks));
  ASSERT_TRUE(r[0].ok()) << r[0].status();
  EXPECT_TRUE(r[0]->samples[0].finite);
  ASSERT_TRUE(r[1].ok()) << r[1].status();
  EXPECT_FALSE(r[1]->samples[0].finite);
}

// A structure checkpoint (configs/tiny-chem.json) whose vocabulary has SMILES: ModelInfo reports
// the encoder, each row's canonical SMILES and the fingerprint stored in the weights, and a
// registered compound's label samples like any vocabulary label (and differently from it).
TEST_F(ModelBackendTest, StructureModelReportsItsVocabularyAndRegistersCompounds) {
  auto config = ModelConfig::Load("configs/tiny-chem.json");
  ASSERT_TRUE(config.ok()) << config.status();
  config->gene_ae.num_genes = kGenes;
  config->sit.num_classes = 4;
  torch::manual_seed(5);
  CellFluxModel model(*config);
  {
    // adaLN-Zero starts with zero heads (a velocity that ignores the condition): perturb the
    // weights so the condition shows in the samples. The vocabulary tables stay exact.
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_parameters()) {
      if (p.key().find("fingerprints") != std::string::npos ||
          p.key().find("log_doses") != std::string::npos) {
        continue;
      }
      p.value().add_(0.05 * torch::randn_like(p.value()));
    }
  }
  const std::vector<std::string> smiles = {"CC(=O)Oc1ccccc1C(=O)O", "CN(C)C(=N)N=C(N)N.Cl", "", ""};
  std::vector<cellflux::PerturbationEntry> perts;
  std::vector<std::vector<int>> bits(4);
  for (int i = 0; i < 4; ++i) {
    perts.push_back({"BRD-S" + std::to_string(i), 10.0, smiles[i], ""});
    if (smiles[i].empty()) continue;
    auto st = chem::ParseStructure(smiles[i]);
    ASSERT_TRUE(st.ok()) << st.status();
    bits[i] = st->bits;
  }
  ASSERT_TRUE(
      model->sit()->structure_embedder->SetVocabularyStructures(bits, {10, 10, 10, 10}).ok());
  std::vector<GeneEntry> genes;
  for (int g = 0; g < kGenes; ++g) genes.push_back({"p" + std::to_string(g) + "_at", ""});
  const std::string dir =
      cellflux::testing::UniqueTempDir(::testing::TempDir(), "cellflux_server_chem_ckpt");
  ASSERT_TRUE(WriteCheckpoint(dir, BundleFromModel(model, perts, genes, /*step=*/1)).ok());

  auto backend = LoadModelBackend({dir});
  ASSERT_TRUE(backend.ok()) << backend.status();
  const ModelInfo& info = (*backend)->info();
  EXPECT_EQ(info.condition, "structure");
  EXPECT_TRUE(info.uses_structure());
  EXPECT_EQ(info.fingerprint_bits, 2048);
  EXPECT_EQ(info.perturbations[0].canonical_smiles, "CC(=O)Oc1ccccc1C(=O)O");
  EXPECT_EQ(info.perturbations[1].canonical_smiles, "CN(C)C(=N)N=C(N)N");  // the salt dropped
  EXPECT_EQ(info.perturbations[0].bits, bits[0]);
  EXPECT_EQ(info.perturbations[1].bits, bits[1]);
  EXPECT_TRUE(info.perturbations[2].canonical_smiles.empty());
  EXPECT_TRUE(info.perturbations[2].bits.empty());

  // Aspirin registered at its vocabulary dose conditions exactly like its vocabulary row.
  auto label = (*backend)->RegisterStructure(0, bits[0], 10.0);
  ASSERT_TRUE(label.ok()) << label.status();
  EXPECT_EQ(*label, 5);  // V + 1 + slot
  auto other = (*backend)->RegisterStructure(1, bits[1], 0.5);
  ASSERT_TRUE(other.ok()) << other.status();
  std::vector<std::unique_ptr<PredictTask>> tasks;
  tasks.push_back(Task(1, 3, 7, 0, 1.5));
  tasks.push_back(Task(1, 3, 7, *label, 1.5));
  tasks.push_back(Task(1, 3, 7, *other, 1.5));
  auto r = Run(*backend, std::move(tasks));
  for (const auto& x : r) ASSERT_TRUE(x.ok()) << x.status();
  // The same condition up to GEMM rounding (the rows may share forwards with different
  // batchmates), another compound and dose clearly apart.
  auto max_diff = [](const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
    int d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(int{a[i]} - int{b[i]}));
    return d;
  };
  const int same = max_diff(r[0]->samples[0].pixels, r[1]->samples[0].pixels);
  const int apart = max_diff(r[0]->samples[0].pixels, r[2]->samples[0].pixels);
  EXPECT_LE(same, 2);
  EXPECT_GT(apart, 10 * std::max(same, 1));
  std::filesystem::remove_all(dir);
}

// An "id" model has no structure encoder to register with.
TEST_F(ModelBackendTest, IdModelRefusesStructures) {
  auto backend = LoadModelBackend({*dir_});
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)->info().condition, "id");
  EXPECT_EQ((*backend)->RegisterStructure(0, {1, 2}, 1.0).status().code(),
            absl::StatusCode::kUnimplemented);
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

  // The probe among others at other steps, labels and guidance. Which rows share which forward
  // is fixed: a one-step blocker holds the step loop inside its forward (gate closed) until the
  // four tasks are encoded, then all 8 samples enter the next forward together and leave as
  // their steps run out (after 2, 3, 4 and 6 forwards).
  auto gated = std::make_shared<GatedBackend>(*backend);
  SchedulerOptions o;
  o.max_batch = 9;  // the blocker + 8 rows
  auto scheduler = Scheduler::Create(o, nullptr);
  ASSERT_TRUE(scheduler.ok());
  std::vector<std::unique_ptr<PredictTask>> mixed;
  mixed.push_back(Task(1, 1, 1, 0, 1.0));  // the blocker
  mixed.push_back(Task(3, 6, 99, 1, 1.0));
  mixed.push_back(Task(1, 2, 7, 9, 2.0));
  mixed.push_back(Task(2, 4, 11, 5, 1.5));  // the probe
  mixed.push_back(Task(2, 3, 5, 3, 1.2));
  std::vector<absl::StatusOr<PredictResult>> m(mixed.size(), absl::UnknownError(""));
  std::vector<absl::Notification> done(mixed.size());
  for (size_t i = 0; i < mixed.size(); ++i) {
    mixed[i]->backend = gated;
    mixed[i]->done = [&m, &done, i](absl::StatusOr<PredictResult> r) {
      m[i] = std::move(r);
      done[i].Notify();
    };
    ASSERT_TRUE((*scheduler)->Schedule(&mixed[i]).ok());
    if (i == 0) gated->AwaitEntered(1);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  while ((*scheduler)->NumReadySamples() < 8 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_EQ((*scheduler)->NumReadySamples(), 8);
  gated->Open();
  for (auto& d : done) d.WaitForNotification();
  for (auto& r : m) ASSERT_TRUE(r.ok()) << r.status();
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ(m[3]->samples[k].pixels, a[0]->samples[k].pixels) << "sample " << k;
    EXPECT_EQ(m[3]->samples[k].expression, a[0]->samples[k].expression) << "sample " << k;
  }
}

// Heun through the server's step loop gives the bits of Heun written out over the backend's own
// Step (which is GuidedVelocity + EulerStep, so this is SampleHeun's arithmetic on the model).
TEST_F(ModelBackendTest, HeunRequestMatchesHeunWrittenOut) {
  auto backend = LoadModelBackend({*dir_});
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::vector<std::unique_ptr<PredictTask>> tasks;
  tasks.push_back(Task(1, 3, 17, 2, 1.5));
  tasks.back()->sampler = SamplerKind::kHeun;
  auto r = Run(*backend, std::move(tasks));
  ASSERT_TRUE(r[0].ok()) << r[0].status();

  // The same z_0 (Encode), then z̃ = Step(z, t_i), r = Step(z̃, t_{i+1}), z ← (z + r)/2.
  c10::InferenceMode guard;
  auto z0 = (*backend)->Encode({EncodeItem{Control(), {17}}});
  ASSERT_TRUE(z0.ok()) << z0.status();
  JointLatent z = *z0;
  auto step = [&](const JointLatent& at, int i) {
    StepBatch b;
    b.z = at;
    b.t = torch::full({1}, static_cast<float>(i / 3.0));
    b.dt = torch::full({1}, static_cast<float>(1.0 / 3));
    b.guidance = torch::full({1}, 1.5f);
    b.labels = torch::full({1}, 2, torch::kInt64);
    auto next = (*backend)->Step(b);
    EXPECT_TRUE(next.ok()) << next.status();
    return *next;
  };
  for (int i = 0; i < 3; ++i) z = HeunAverage(z, step(step(z, i), i + 1));
  auto out = (*backend)->Decode(z);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(r[0]->samples[0].pixels, (*out)[0].pixels);
  EXPECT_EQ(r[0]->samples[0].expression, (*out)[0].expression);
}

// Row-wise at the backend's own boundaries, for every batch size the scheduler can make: a row
// decoded, stepped or encoded with others gives the bits it gives alone. LibTorch's CPU conv and
// OpenBLAS pick other kernels (other last bits) by batch size: at 5 vs 10 images in the VAE, at
// 1 vs >= 5 rows in the gene MLP, at 20 vs >= 40 token rows in the SiT.
TEST_F(ModelBackendTest, RowsGiveTheSameBitsAloneAndInAnyBatch) {
  auto loaded = LoadModelBackend({*dir_});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Backend& backend = **loaded;
  c10::InferenceMode guard;
  torch::manual_seed(5);
  const int64_t n = 7;
  JointLatent z;
  z.image = torch::randn({n, 20, 16, 16});
  z.gene = torch::randn({n, 32});
  auto row = [&](int64_t i) {
    JointLatent r;
    r.image = z.image.slice(0, i, i + 1);
    r.gene = z.gene.slice(0, i, i + 1);
    return r;
  };

  auto all = backend.Decode(z);
  ASSERT_TRUE(all.ok()) << all.status();
  for (int64_t i : {0, 3, 6}) {
    auto one = backend.Decode(row(i));
    ASSERT_TRUE(one.ok()) << one.status();
    EXPECT_EQ((*all)[i].pixels, (*one)[0].pixels) << "decode row " << i;
    EXPECT_EQ((*all)[i].expression, (*one)[0].expression) << "decode row " << i;
  }

  auto step_batch = [](const JointLatent& latent, int64_t rows) {
    StepBatch b;
    b.z = latent;
    b.t = torch::full({rows}, 0.25f);
    b.dt = torch::full({rows}, 0.05f);
    b.guidance = torch::ones({rows});  // α = 1: one forward row per sample, the smallest batch
    b.labels = torch::arange(rows, torch::kInt64);
    return b;
  };
  auto stepped = backend.Step(step_batch(z, n));
  ASSERT_TRUE(stepped.ok()) << stepped.status();
  auto first = backend.Step(step_batch(row(0), 1));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(torch::equal(stepped->image[0], first->image[0])) << "step";
  EXPECT_TRUE(torch::equal(stepped->gene[0], first->gene[0])) << "step";

  std::vector<EncodeItem> items;
  for (int k = 0; k < 6; ++k) {
    auto c = Control();
    for (auto& v : c->pixels) v = static_cast<uint16_t>((v + 97 * k) % 4096);
    c->expression[0] += static_cast<float>(k);
    items.push_back(EncodeItem{c, {static_cast<uint64_t>(k)}});
  }
  auto together = backend.Encode(items);
  ASSERT_TRUE(together.ok()) << together.status();
  auto alone = backend.Encode({items[4]});
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_TRUE(torch::equal(together->image[4], alone->image[0])) << "encode";
  EXPECT_TRUE(torch::equal(together->gene[4], alone->gene[0])) << "encode";
}

// --controls: every DMSO site of a prepared dataset is encoded at load; a bank reference gives
// exactly what sending the same site's pixels and expression as control.data gives.
TEST_F(ModelBackendTest, ControlBankMatchesSendingTheSameControl) {
  const std::string root =
      cellflux::testing::UniqueTempDir(::testing::TempDir(), "cellflux_server_bank");
  std::filesystem::remove_all(root);
  auto data_dir = cellflux::testing::MakeTinyPreparedDataset(root);
  ASSERT_TRUE(data_dir.ok()) << data_dir.status();
  auto manifest = data::LoadManifest(*data_dir, /*load_expression=*/false);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  std::vector<std::string> genes(manifest->gene_ids.begin(), manifest->gene_ids.begin() + kGenes);
  const std::string ckpt = root + "/ckpt";
  WriteTinyCheckpoint(ckpt, genes);

  ModelBackendOptions o;
  o.checkpoint_dir = ckpt;
  o.controls_dir = *data_dir;
  auto backend = LoadModelBackend(o);
  ASSERT_TRUE(backend.ok()) << backend.status();
  ControlBankReader::Options ro;
  ro.dir = *data_dir;
  ro.image_size = 64;
  ro.channel_names = (*backend)->info().channel_names;
  ro.gene_ids = genes;
  auto reader = ControlBankReader::Open(ro);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_EQ((*backend)->info().controls, (*reader)->keys());

  const size_t pick = (*reader)->size() / 2;
  auto bank = std::make_shared<ControlInput>();
  bank->bank_key = (*reader)->keys()[pick];
  auto sent = (*reader)->Read(pick);
  ASSERT_TRUE(sent.ok()) << sent.status();
  auto data = std::make_shared<ControlInput>(sent->input);
  std::vector<std::unique_ptr<PredictTask>> tasks;
  tasks.push_back(Task(2, 3, 21, 4, 1.5, bank));
  tasks.push_back(Task(2, 3, 21, 4, 1.5, data));
  auto r = Run(*backend, std::move(tasks));
  ASSERT_TRUE(r[0].ok()) << r[0].status();
  ASSERT_TRUE(r[1].ok()) << r[1].status();
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ(r[0]->samples[k].pixels, r[1]->samples[k].pixels) << "sample " << k;
    EXPECT_EQ(r[0]->samples[k].expression, r[1]->samples[k].expression) << "sample " << k;
  }

  // options.return_control reads the bank entry back: the same pixels and expression.
  auto echoed = (*backend)->BankControlInput((*reader)->keys()[pick]);
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  EXPECT_EQ(echoed->pixels, sent->input.pixels);
  EXPECT_EQ(echoed->expression, sent->input.expression);
  EXPECT_EQ((*backend)->BankControlInput(ControlKey{"no-plate", "a01", 1}).status().code(),
            absl::StatusCode::kNotFound);

  // A key the bank does not hold fails the task (validation normally stops it earlier).
  auto missing = std::make_shared<ControlInput>();
  missing->bank_key = ControlKey{"no-plate", "a01", 1};
  std::vector<std::unique_ptr<PredictTask>> bad;
  bad.push_back(Task(1, 2, 1, 0, 1.0, missing));
  auto b = Run(*backend, std::move(bad));
  EXPECT_FALSE(b[0].ok());

  // The bank must cover the model's genes: the default test checkpoint's probes are not there.
  o.checkpoint_dir = *dir_;
  auto wrong = LoadModelBackend(o);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument) << wrong.status();
  EXPECT_NE(wrong.status().message().find("p0_at"), std::string::npos) << wrong.status();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace cellflux::server
