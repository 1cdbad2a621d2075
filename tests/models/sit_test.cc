// Tests for common/models/sit: golden outputs against the plain-PyTorch reference
// (tests/models/golden/sit_reference.py, float64 truth, float32 here, tolerance 1e-5), shapes and
// sizes, reference initialisation, condition drop, and weight-name reporting.
#include "common/models/sit.h"

#include <torch/torch.h>

#include <string>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/models/golden_util.h"

namespace cellflux {
namespace {

using ::testing::HasSubstr;

using testing::kGoldenDir;
using testing::MaxAbsDiff;
constexpr double kTolerance = 1e-5;

// The config sit_reference.py uses (it also records it in the files' metadata).
SiTConfig GoldenConfig(bool gene) {
  SiTConfig c;
  c.input_size = 8;
  c.patch_size = 2;
  c.in_channels = 4;
  c.hidden_size = 32;
  c.depth = 2;
  c.num_heads = 4;
  c.mlp_ratio = 4.0;
  c.num_classes = 5;
  c.learn_sigma = !gene;
  if (gene) {
    c.gene_latent_dim = 6;
    c.gene_tokens = 3;
  }
  return c;
}

SiTConfig TinyConfig() {
  SiTConfig c = GoldenConfig(/*gene=*/false);
  c.learn_sigma = false;
  return c;
}

TEST(SiTGoldenTest, PlainLearnSigmaMatchesReference) {
  SiT model(GoldenConfig(/*gene=*/false));
  TensorMap weights = testing::LoadGolden("sit_plain_weights.safetensors");
  TensorMap io = testing::LoadGolden("sit_plain_io.safetensors");
  ASSERT_FALSE(weights.empty());
  ASSERT_FALSE(io.empty());
  // The fixed sin-cos position embedding is computed here, not taken from the file.
  EXPECT_LT(MaxAbsDiff(model->pos_embed, weights.at("pos_embed")), 1e-6);
  ASSERT_TRUE(LoadSiTWeights(model, weights, "sit_plain_weights").ok());
  EXPECT_EQ(model->final_layer->linear->weight.size(0), 2 * 2 * 8);  // learn_sigma: 2·C outputs

  torch::NoGradGuard no_grad;
  SiTOutput out = model->forward(io.at("x"), io.at("t"), io.at("y"));
  ASSERT_EQ(out.image.sizes(), io.at("v_image").sizes());
  EXPECT_FALSE(out.gene.defined());
  EXPECT_GT(io.at("v_image").abs().mean().item<double>(), 0.1);  // a non-trivial target
  EXPECT_LT(MaxAbsDiff(out.image, io.at("v_image")), kTolerance);
}

TEST(SiTGoldenTest, GeneTokensMatchReference) {
  SiT model(GoldenConfig(/*gene=*/true));
  TensorMap weights = testing::LoadGolden("sit_gene_weights.safetensors");
  TensorMap io = testing::LoadGolden("sit_gene_io.safetensors");
  ASSERT_FALSE(weights.empty());
  ASSERT_FALSE(io.empty());
  ASSERT_TRUE(LoadSiTWeights(model, weights, "sit_gene_weights").ok());

  torch::NoGradGuard no_grad;
  SiTOutput out = model->forward(io.at("x"), io.at("t"), io.at("y"), io.at("gene"));
  ASSERT_EQ(out.image.sizes(), io.at("v_image").sizes());
  ASSERT_TRUE(out.gene.defined());
  ASSERT_EQ(out.gene.sizes(), io.at("v_gene").sizes());
  EXPECT_GT(io.at("v_gene").abs().mean().item<double>(), 0.1);
  EXPECT_LT(MaxAbsDiff(out.image, io.at("v_image")), kTolerance);
  EXPECT_LT(MaxAbsDiff(out.gene, io.at("v_gene")), kTolerance);
}

TEST(SiTGoldenTest, InferenceModeAndBatchSlicesAgree) {
  // Per-sample t: a row's output must not depend on the other rows of the batch.
  SiT model(GoldenConfig(/*gene=*/true));
  ASSERT_TRUE(LoadSiTWeights(model, testing::LoadGolden("sit_gene_weights.safetensors"), "w").ok());
  TensorMap io = testing::LoadGolden("sit_gene_io.safetensors");
  c10::InferenceMode guard;
  SiTOutput all = model->forward(io.at("x"), io.at("t"), io.at("y"), io.at("gene"));
  SiTOutput one = model->forward(io.at("x").narrow(0, 1, 1), io.at("t").narrow(0, 1, 1),
                                 io.at("y").narrow(0, 1, 1), io.at("gene").narrow(0, 1, 1));
  EXPECT_LT(MaxAbsDiff(one.image, all.image.narrow(0, 1, 1)), 1e-5);
  EXPECT_LT(MaxAbsDiff(one.gene, all.gene.narrow(0, 1, 1)), 1e-5);
}

TEST(SiTWeightsTest, LearnSigmaFileLoadsIntoVelocityOnlyModel) {
  TensorMap weights = testing::LoadGolden("sit_plain_weights.safetensors");
  TensorMap io = testing::LoadGolden("sit_plain_io.safetensors");
  SiT model(TinyConfig());  // learn_sigma = false
  absl::Status s = LoadSiTWeights(model, weights, "sit_plain_weights");
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(model->final_layer->linear->weight.size(0), 2 * 2 * 4);
  torch::NoGradGuard no_grad;
  SiTOutput out = model->forward(io.at("x"), io.at("t"), io.at("y"));
  EXPECT_LT(MaxAbsDiff(out.image, io.at("v_image")), kTolerance);
}

TEST(SiTWeightsTest, MissingAndExtraNamesAreReported) {
  TensorMap weights = testing::LoadGolden("sit_plain_weights.safetensors");
  ASSERT_FALSE(weights.empty());
  weights.erase("blocks.1.attn.qkv.weight");
  weights["blocks.7.attn.qkv.weight"] = torch::zeros({3});
  SiT model(GoldenConfig(/*gene=*/false));
  absl::Status s = LoadSiTWeights(model, weights, "broken.safetensors");
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("broken.safetensors"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("missing 1 [blocks.1.attn.qkv.weight]"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("unexpected 1 [blocks.7.attn.qkv.weight]"));
}

TEST(SiTWeightsTest, ImageOnlyFileIntoGeneModelListsGeneNames) {
  SiTConfig config = GoldenConfig(/*gene=*/true);
  config.learn_sigma = true;  // same image head as the plain file
  SiT model(config);
  absl::Status s =
      LoadSiTWeights(model, testing::LoadGolden("sit_plain_weights.safetensors"), "plain");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("gene_embedder.weight"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("gene_pos_embed"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("gene_final_layer.linear.weight"));
}

TEST(SiTWeightsTest, StateDictHasReferenceNames) {
  SiT model(GoldenConfig(/*gene=*/false));
  TensorMap own = StateDict(*model);
  TensorMap file = testing::LoadGolden("sit_plain_weights.safetensors");
  ASSERT_EQ(own.size(), file.size());
  for (const auto& [name, tensor] : file) {
    ASSERT_TRUE(own.count(name)) << name;
    EXPECT_EQ(own.at(name).sizes(), tensor.sizes()) << name;
  }
  EXPECT_FALSE(model->pos_embed.requires_grad());
}

TEST(SiTTest, NullRowExistsAndIsUsable) {
  SiT model(TinyConfig());
  EXPECT_EQ(model->null_label(), 5);
  EXPECT_EQ(model->y_embedder->embedding_table->weight.size(0), 6);
  torch::NoGradGuard no_grad;
  SiTOutput out = model->forward(torch::randn({2, 4, 8, 8}), torch::rand({2}),
                                 torch::full({2}, model->null_label(), torch::kInt64));
  EXPECT_EQ(out.image.sizes(), (std::vector<int64_t>{2, 4, 8, 8}));
}

TEST(SiTTest, ReferenceInitialisation) {
  SiTConfig config = GoldenConfig(/*gene=*/true);
  config.depth = 3;
  SiT model(config);
  // adaLN-Zero: heads and modulations start at zero, so the initial velocity is exactly zero.
  for (const auto& [name, t] : StateDict(*model)) {
    const bool zero = absl::StrContains(name, "adaLN_modulation") ||
                      absl::StartsWith(name, "final_layer.") ||
                      absl::StartsWith(name, "gene_final_layer.") || absl::EndsWith(name, ".bias");
    if (zero) {
      EXPECT_EQ(t.abs().max().item<double>(), 0.0) << name;
    } else {
      EXPECT_GT(t.abs().max().item<double>(), 0.0) << name;
    }
  }
  const double y_std = model->y_embedder->embedding_table->weight.std().item<double>();
  EXPECT_NEAR(y_std, 0.02, 0.005);
  // xavier-uniform bound for qkv: sqrt(6 / (D + 3D)).
  const double bound = std::sqrt(6.0 / (32 + 96));
  const double qkv_max =
      model->blocks->ptr<SiTBlockImpl>(0)->attn->qkv->weight.abs().max().item<double>();
  EXPECT_LE(qkv_max, bound);
  EXPECT_GT(qkv_max, 0.8 * bound);
  torch::NoGradGuard no_grad;
  SiTOutput out = model->forward(torch::randn({2, 4, 8, 8}), torch::rand({2}),
                                 torch::tensor({0, 5}), torch::randn({2, 6}));
  EXPECT_EQ(out.image.abs().max().item<double>(), 0.0);
  EXPECT_EQ(out.gene.abs().max().item<double>(), 0.0);
}

TEST(SiTTest, PositionEmbeddingLayout) {
  // dim 8, grid 3: first half encodes the column, second half the row; [sin | cos] per half.
  torch::Tensor pe = SinCos2dPositionEmbedding(8, 3);
  ASSERT_EQ(pe.sizes(), (std::vector<int64_t>{9, 8}));
  const int64_t token = 1 * 3 + 2;                                         // row 1, column 2
  EXPECT_NEAR(pe[token][0].item<double>(), std::sin(2.0), 1e-12);          // col, ω0 = 1
  EXPECT_NEAR(pe[token][1].item<double>(), std::sin(2.0 / 100.0), 1e-12);  // col, ω1 = 10000^(-1/2)
  EXPECT_NEAR(pe[token][2].item<double>(), std::cos(2.0), 1e-12);
  EXPECT_NEAR(pe[token][4].item<double>(), std::sin(1.0), 1e-12);  // row
  EXPECT_NEAR(pe[token][7].item<double>(), std::cos(1.0 / 100.0), 1e-12);
}

TEST(SiTTest, TimestepEmbeddingIsCosThenSin) {
  torch::Tensor e = TimestepFrequencyEmbedding(torch::tensor({0.5f}), 6);
  ASSERT_EQ(e.sizes(), (std::vector<int64_t>{1, 6}));
  const double f1 = std::exp(-std::log(10000.0) / 3.0);
  EXPECT_NEAR(e[0][0].item<double>(), std::cos(0.5), 1e-6);
  EXPECT_NEAR(e[0][1].item<double>(), std::cos(0.5 * f1), 1e-6);
  EXPECT_NEAR(e[0][3].item<double>(), std::sin(0.5), 1e-6);
}

TEST(SiTTest, NamedSizesAndPatches) {
  struct Want {
    const char* size;
    int depth, hidden, heads;
  };
  for (Want w : {Want{"S", 12, 384, 6}, Want{"B", 12, 768, 12}, Want{"L", 24, 1024, 16},
                 Want{"XL", 28, 1152, 16}}) {
    absl::StatusOr<SiTConfig> c = SiTConfig::FromSize(w.size, 2);
    ASSERT_TRUE(c.ok()) << w.size;
    EXPECT_EQ(c->depth, w.depth) << w.size;
    EXPECT_EQ(c->hidden_size, w.hidden) << w.size;
    EXPECT_EQ(c->num_heads, w.heads) << w.size;
  }
  EXPECT_FALSE(SiTConfig::FromSize("M", 2).ok());
  // Construct S (depth cut to 1 to keep the test fast) at every patch size: token counts and the
  // patch conv follow the patch size, output shape equals input shape.
  for (int patch : {2, 4, 8}) {
    absl::StatusOr<SiTConfig> c = SiTConfig::FromSize("S", patch);
    ASSERT_TRUE(c.ok());
    c->input_size = 16;
    c->in_channels = 4;
    c->depth = 1;
    c->num_classes = 3;
    SiT model(*c);
    EXPECT_EQ(model->num_patches(), (16 / patch) * (16 / patch));
    EXPECT_EQ(model->pos_embed.sizes(), (std::vector<int64_t>{1, model->num_patches(), 384}));
    EXPECT_EQ(model->x_embedder->proj->weight.sizes(),
              (std::vector<int64_t>{384, 4, patch, patch}));
    torch::NoGradGuard no_grad;
    SiTOutput out =
        model->forward(torch::randn({2, 4, 16, 16}), torch::rand({2}), torch::tensor({0, 3}));
    EXPECT_EQ(out.image.sizes(), (std::vector<int64_t>{2, 4, 16, 16}));
  }
}

TEST(SiTTest, SiTS2ParameterCountMatchesReference) {
  // Reference SiT-S/2 (32×32×4 input, 1000 classes, learn_sigma): ≈33M trainable parameters.
  absl::StatusOr<SiTConfig> c = SiTConfig::FromSize("S", 2);
  ASSERT_TRUE(c.ok());
  c->in_channels = 4;
  c->learn_sigma = true;
  SiT model(*c);
  int64_t trainable = 0;
  for (const auto& p : model->parameters()) {
    if (p.requires_grad()) trainable += p.numel();
  }
  // Hand count: patch 4·2·2·384+384, t-MLP 256·384+384+384²+384, table 1001·384,
  // 12 blocks × (qkv 384·1152+1152, proj 384²+384, fc1 384·1536+1536, fc2 1536·384+384, ada 384·2304+2304),
  // final (ada 384·768+768, linear 384·32+32).
  const int64_t d = 384;
  const int64_t block =
      d * 3 * d + 3 * d + d * d + d + d * 4 * d + 4 * d + 4 * d * d + d + d * 6 * d + 6 * d;
  const int64_t want = (16 * d + d) + (256 * d + d + d * d + d) + 1001 * d + 12 * block +
                       (d * 2 * d + 2 * d) + (d * 32 + 32);
  EXPECT_EQ(trainable, want);
}

TEST(SiTTest, WrongShapesThrowWithNames) {
  SiT model(GoldenConfig(/*gene=*/true));
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 4, 8, 8});
  auto t = torch::rand({2});
  auto y = torch::tensor({0, 1});
  try {
    model->forward(x, t, y);  // gene missing
    ADD_FAILURE() << "expected a throw";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what_without_backtrace(), HasSubstr("gene must be [2, 6]"));
  }
  try {
    model->forward(torch::randn({2, 3, 8, 8}), t, y, torch::randn({2, 6}));
    ADD_FAILURE() << "expected a throw";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what_without_backtrace(), HasSubstr("x must be [N, 4, 8, 8]"));
  }
}

TEST(DropConditionsTest, RateAndDeterminism) {
  const int64_t n = 20000;
  torch::Tensor y = torch::arange(n, torch::kInt64) % 7;
  auto gen_a = at::detail::createCPUGenerator(42);
  auto gen_b = at::detail::createCPUGenerator(42);
  torch::Tensor a = DropConditions(y, 0.1, 7, gen_a);
  torch::Tensor b = DropConditions(y, 0.1, 7, gen_b);
  EXPECT_TRUE(torch::equal(a, b));
  const double rate = (a == 7).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(rate, 0.1, 0.01);  // 4σ ≈ 0.0085 for n = 20000
  // Kept labels are unchanged.
  torch::Tensor kept = a != 7;
  EXPECT_TRUE(torch::equal(a.masked_select(kept), y.masked_select(kept)));
  // The next draw from the same generator differs; p = 0 and p = 1 are exact.
  EXPECT_FALSE(torch::equal(DropConditions(y, 0.1, 7, gen_a), a));
  EXPECT_TRUE(torch::equal(DropConditions(y, 0.0, 7, gen_a), y));
  EXPECT_TRUE((DropConditions(y, 1.0, 7, gen_a) == 7).all().item<bool>());
}

}  // namespace
}  // namespace cellflux
