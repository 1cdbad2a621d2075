// Issue 18: a structure model saved and loaded gives identical outputs; its checkpoint carries the
// vocabulary's fingerprints (in the weights) beside their SMILES (the vocabulary).
#include <torch/torch.h>

#include <filesystem>

#include "common/checkpoint/checkpoint.h"
#include "common/checkpoint/model_bundle.h"
#include "gtest/gtest.h"
#include "tests/testing/small_model_config.h"

namespace cellflux {
namespace {

TEST(StructureCheckpointTest, SavedAndLoadedStructureModelGivesIdenticalVelocities) {
  ModelConfig config = cellflux::testing::SmallModelConfig();
  config.sit.condition = "structure";
  config.sit.fingerprint_bits = 128;
  torch::manual_seed(5);
  CellFluxModel model(config);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->sit()->parameters()) {
      if (p.requires_grad()) p.normal_(0.0, 0.2);
    }
  }
  ASSERT_TRUE(model->sit()
                  ->structure_embedder
                  ->SetVocabularyStructures({{1, 2}, {3, 100}, {7}, {}}, {10, 5, 2.5, NAN})
                  .ok());
  std::vector<PerturbationEntry> vocab = {{"BRD-A", 10, "c1ccccc1O", "a"},
                                          {"BRD-B", 5, "c1ccncc1", "b"},
                                          {"BRD-C", 2.5, "CCO", "c"},
                                          {"BRD-D", NAN, "", "d"}};
  std::vector<GeneEntry> genes;
  for (int g = 0; g < config.gene_ae.num_genes; ++g) genes.push_back({"p" + std::to_string(g), ""});
  CheckpointBundle bundle = BundleFromModel(model, vocab, genes, 7);
  const std::string dir = (std::filesystem::path(::testing::TempDir()) / "structure_ckpt").string();
  ASSERT_TRUE(WriteCheckpoint(dir, bundle).ok());
  auto loaded = LoadCheckpointModel(dir, torch::kCPU, Precision::kFp32);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->metadata.config.sit.condition, "structure");
  EXPECT_EQ(loaded->metadata.perturbations[1].smiles, "c1ccncc1");
  EXPECT_TRUE(torch::equal(loaded->model->sit()->structure_embedder->fingerprints,
                           model->sit()->structure_embedder->fingerprints));

  model->eval();
  torch::manual_seed(9);
  JointLatent z{torch::randn({5, 20, 8, 8}), torch::randn({5, 8})};
  torch::Tensor t = torch::rand({5});
  torch::Tensor y = torch::tensor({0, 1, 2, 3, 4}, torch::kInt64);
  c10::InferenceMode guard;
  JointLatent a = model->Velocity(z, t, y);
  JointLatent b = loaded->model->Velocity(z, t, y);
  EXPECT_TRUE(torch::equal(a.image, b.image));
  EXPECT_TRUE(torch::equal(a.gene, b.gene));
  EXPECT_GT(a.image.abs().max().item<double>(), 0.0);
}

}  // namespace
}  // namespace cellflux
