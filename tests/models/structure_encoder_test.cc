// The structure encoder (issue 18, sit.condition = structure / id+structure): the condition comes
// from the compound's fingerprint and dose, so a compound outside the vocabulary can be
// registered and conditioned on; the null label stays the CFG null condition.
#include <torch/torch.h>

#include "common/models/cellflux_model.h"
#include "common/models/config.h"
#include "common/models/sit.h"
#include "gtest/gtest.h"
#include "tests/testing/small_model_config.h"

namespace cellflux {
namespace {

ModelConfig StructureConfig(const std::string& condition) {
  ModelConfig c = cellflux::testing::SmallModelConfig();
  c.sit.condition = condition;
  c.sit.fingerprint_bits = 64;
  return c;
}

// Random weights everywhere (the reference init zeroes the heads, so every condition would give
// a zero velocity), fixed vocabulary fingerprints.
CellFluxModel RandomStructureModel(const std::string& condition) {
  torch::manual_seed(3);
  CellFluxModel model(StructureConfig(condition));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->sit()->parameters()) {
      if (p.requires_grad()) p.normal_(0.0, 0.2);
    }
  }
  std::vector<std::vector<int>> bits = {{1, 5, 9}, {2, 5, 40}, {7}, {}};
  EXPECT_TRUE(
      model->sit()->structure_embedder->SetVocabularyStructures(bits, {10.0, 1.0, NAN, 3.0}).ok());
  model->eval();
  return model;
}

JointLatent Velocity(CellFluxModel& model, const std::vector<int64_t>& labels) {
  torch::manual_seed(11);
  const int64_t n = static_cast<int64_t>(labels.size());
  JointLatent z{torch::randn({1, 20, 8, 8}).expand({n, 20, 8, 8}).contiguous(),
                torch::randn({1, 8}).expand({n, 8}).contiguous()};
  c10::InferenceMode guard;
  return model->Velocity(z, torch::full({n}, 0.3), torch::tensor(labels, torch::kInt64));
}

TEST(StructureEncoderTest, ConfigValidatesAndRoundTripsTheCondition) {
  ModelConfig c = StructureConfig("structure");
  ASSERT_TRUE(c.Validate().ok());
  auto back = ModelConfig::FromJson(c.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->sit.condition, "structure");
  EXPECT_EQ(back->sit.fingerprint_bits, 64);
  c.sit.condition = "smiles";
  absl::Status bad = c.Validate();
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("sit.condition"), std::string::npos) << bad;
  EXPECT_NE(bad.message().find("'smiles'"), std::string::npos) << bad;
  // An id model's config JSON does not mention the encoder (model ids of old checkpoints hold).
  EXPECT_FALSE(cellflux::testing::SmallModelConfig().sit.ToJson().contains("condition"));
}

TEST(StructureEncoderTest, ParameterNamesPerCondition) {
  auto names = [](const std::string& condition) {
    CellFluxModel m(StructureConfig(condition));
    std::set<std::string> out;
    for (const auto& item : m->sit()->named_parameters()) out.insert(item.key());
    return out;
  };
  const auto id = names("id"), st = names("structure"), both = names("id+structure");
  EXPECT_TRUE(id.count("y_embedder.embedding_table.weight"));
  EXPECT_FALSE(id.count("structure_embedder.fingerprints"));
  EXPECT_FALSE(st.count("y_embedder.embedding_table.weight"));
  for (const char* n : {"structure_embedder.fingerprints", "structure_embedder.log_doses",
                        "structure_embedder.null_embedding", "structure_embedder.mlp.0.weight",
                        "structure_embedder.dose_mlp.2.bias"}) {
    EXPECT_TRUE(st.count(n)) << n;
    EXPECT_TRUE(both.count(n)) << n;
  }
  EXPECT_TRUE(both.count("y_embedder.embedding_table.weight"));
}

TEST(StructureEncoderTest, TheConditionFollowsTheFingerprintAndDose) {
  CellFluxModel model = RandomStructureModel("structure");
  JointLatent v = Velocity(model, {0, 1, 4});
  EXPECT_FALSE(torch::allclose(v.image[0], v.image[1])) << "two structures, one velocity";
  EXPECT_FALSE(torch::allclose(v.image[0], v.image[2])) << "structure = null condition";
  // A registered compound with vocabulary row 0's bits and dose is row 0 exactly; another dose of
  // it is not.
  auto same = model->sit()->structure_embedder->SetExtraStructure(0, {1, 5, 9}, 10.0);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(*same, 5);  // V + 1 + slot
  auto other_dose = model->sit()->structure_embedder->SetExtraStructure(1, {1, 5, 9}, 0.1);
  ASSERT_TRUE(other_dose.ok());
  // One row per call: equal inputs give equal bits only at the same batch shape.
  JointLatent w0 = Velocity(model, {0}), w5 = Velocity(model, {5}), w6 = Velocity(model, {6});
  EXPECT_TRUE(torch::equal(w0.image, w5.image));
  EXPECT_TRUE(torch::equal(w0.gene, w5.gene));
  EXPECT_FALSE(torch::allclose(w0.image, w6.image)) << "the dose is ignored";
  // Overwriting a slot changes what its label means; the other slots keep theirs.
  ASSERT_TRUE(model->sit()->structure_embedder->SetExtraStructure(0, {2, 5, 40}, 1.0).ok());
  EXPECT_TRUE(torch::equal(Velocity(model, {1}).image, Velocity(model, {5}).image));
  EXPECT_TRUE(torch::equal(Velocity(model, {6}).image, w6.image));
  EXPECT_EQ(model->sit()->structure_embedder->extra_rows(), 2);
}

TEST(StructureEncoderTest, IdPlusStructureGivesUnseenCompoundsTheNullIdRow) {
  CellFluxModel model = RandomStructureModel("id+structure");
  auto label = model->sit()->structure_embedder->SetExtraStructure(0, {1, 5, 9}, 10.0);
  ASSERT_TRUE(label.ok());
  // Same structure as row 0 but no id embedding: not row 0, not the null condition.
  JointLatent v = Velocity(model, {0, *label, 4});
  EXPECT_FALSE(torch::allclose(v.image[0], v.image[1]));
  EXPECT_FALSE(torch::allclose(v.image[1], v.image[2]));
  // By hand: t + y_emb(null) + s_emb(label).
  c10::InferenceMode guard;
  auto& sit = model->sit();
  torch::Tensor y = torch::tensor({*label}, torch::kInt64);
  torch::Tensor c = sit->t_embedder->forward(torch::full({1}, 0.3)) +
                    sit->y_embedder->forward(torch::tensor({4}, torch::kInt64)) +
                    sit->structure_embedder->forward(y);
  torch::Tensor c_row0 = sit->t_embedder->forward(torch::full({1}, 0.3)) +
                         sit->y_embedder->forward(torch::tensor({0}, torch::kInt64)) +
                         sit->structure_embedder->forward(torch::tensor({0}, torch::kInt64));
  EXPECT_FALSE(torch::allclose(c, c_row0));
  EXPECT_TRUE(torch::allclose(sit->structure_embedder->forward(y),
                              sit->structure_embedder->forward(torch::tensor({0}, torch::kInt64))));
}

TEST(StructureEncoderTest, TheNullLabelIgnoresEveryFingerprint) {
  CellFluxModel model = RandomStructureModel("structure");
  c10::InferenceMode guard;
  torch::Tensor null = model->sit()->structure_embedder->forward(torch::tensor({4}, torch::kInt64));
  EXPECT_TRUE(torch::equal(null[0], model->sit()->structure_embedder->null_embedding[0]));
}

TEST(StructureEncoderTest, BadInputsNameWhatIsWrong) {
  CellFluxModel model(StructureConfig("structure"));
  auto& enc = model->sit()->structure_embedder;
  absl::Status rows = enc->SetVocabularyStructures({{1}}, {1.0});
  EXPECT_NE(rows.message().find("expected 4 vocabulary fingerprints"), std::string::npos) << rows;
  absl::Status bit = enc->SetVocabularyStructures({{1}, {64}, {}, {}}, {1, 1, 1, 1});
  EXPECT_NE(bit.message().find("vocabulary row 1: fingerprint bit 64 is outside [0, 64)"),
            std::string::npos)
      << bit;
  auto slot = enc->SetExtraStructure(3, {1}, 1.0);
  EXPECT_FALSE(slot.ok());
  EXPECT_NE(slot.status().message().find("structure slot 3 is outside [0, 0]"), std::string::npos)
      << slot.status();
}

// sit.fingerprint_dropout: bits are dropped in training only; sampling stays deterministic and
// equal to the undropped embedding; the value round-trips and is validated.
TEST(StructureEncoderTest, FingerprintDropoutActsInTrainingOnly) {
  ModelConfig c = StructureConfig("structure");
  c.sit.fingerprint_dropout = 0.5;
  ASSERT_TRUE(c.Validate().ok());
  auto back = ModelConfig::FromJson(c.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_DOUBLE_EQ(back->sit.fingerprint_dropout, 0.5);
  EXPECT_FALSE(StructureConfig("structure").sit.ToJson().contains("fingerprint_dropout"));
  c.sit.fingerprint_dropout = 1.0;
  absl::Status bad = c.Validate();
  EXPECT_NE(bad.message().find("sit.fingerprint_dropout"), std::string::npos) << bad;

  torch::manual_seed(5);
  StructureEmbedder with(/*num_classes=*/2, /*bits=*/64, /*hidden_size=*/8, /*bit_dropout=*/0.5);
  torch::manual_seed(5);
  StructureEmbedder without(/*num_classes=*/2, /*bits=*/64, /*hidden_size=*/8);
  std::vector<int> many;
  for (int b = 0; b < 64; b += 2) many.push_back(b);
  for (StructureEmbedder* e : {&with, &without}) {
    ASSERT_TRUE((*e)->SetVocabularyStructures({many, {1, 3}}, {1.0, 1.0}).ok());
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor y = torch::tensor({0}, torch::kInt64);
  with->eval();
  without->eval();
  EXPECT_TRUE(torch::equal(with->forward(y), without->forward(y)));
  EXPECT_TRUE(torch::equal(with->forward(y), with->forward(y)));
  with->train();
  without->train();
  EXPECT_TRUE(torch::equal(without->forward(y), without->forward(y)));  // no dropout configured
  torch::manual_seed(1);
  const torch::Tensor a = with->forward(y);
  const torch::Tensor b = with->forward(y);
  EXPECT_FALSE(torch::equal(a, b));  // another draw of the 32 set bits
  EXPECT_FALSE(torch::equal(a, without->forward(y)));
}

}  // namespace
}  // namespace cellflux
