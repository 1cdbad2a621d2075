// AutoencoderKL and CellPaintingVae against the plain-PyTorch diffusers reimplementation in
// tests/models/golden/vae_reference.py (tolerance 1e-5 absolute on float32 outputs).
#include "common/models/vae.h"

#include <torch/torch.h>

#include <string>

#include "absl/strings/match.h"
#include "common/models/config.h"
#include "common/torch/tensors.h"
#include "common/util/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/models/golden_util.h"

namespace cellflux {
namespace {

using ::testing::HasSubstr;

using testing::kGoldenDir;
using testing::MaxAbsDiff;
constexpr double kTol = 1e-5;

VaeConfig GoldenConfig() {
  absl::StatusOr<std::string> text = ReadFile(std::string(kGoldenDir) + "vae_config.json");
  EXPECT_TRUE(text.ok()) << text.status();
  absl::StatusOr<VaeConfig> config = VaeConfig::FromJson(nlohmann::json::parse(*text));
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

AutoencoderKL LoadedVae(const std::string& weights_file) {
  AutoencoderKL vae(GoldenConfig());
  vae->eval();
  absl::Status status = LoadVaeWeights(vae, testing::LoadGolden(weights_file), weights_file);
  EXPECT_TRUE(status.ok()) << status;
  return vae;
}

void ExpectMatchesGolden(AutoencoderKL& vae) {
  torch::NoGradGuard no_grad;
  TensorMap io = testing::LoadGolden("vae_io.safetensors");
  VaePosterior posterior = vae->Encode(io.at("x"));
  EXPECT_LT(MaxAbsDiff(posterior.mean, io.at("mean")), kTol);
  EXPECT_LT(MaxAbsDiff(posterior.logvar, io.at("logvar")), kTol);
  EXPECT_LT(MaxAbsDiff(KlDivergence(posterior.mean, posterior.logvar), io.at("kl")), 1e-4);
  torch::Tensor decoded = vae->Decode(io.at("sample"));
  EXPECT_EQ(decoded.sizes(), (std::vector<int64_t>{2, 3, 16, 16}));
  EXPECT_LT(MaxAbsDiff(decoded, io.at("decoded")), kTol);
}

TEST(AutoencoderKLTest, MatchesReferenceWithCurrentAttentionNames) {
  AutoencoderKL vae = LoadedVae("vae_weights.safetensors");
  ExpectMatchesGolden(vae);
}

TEST(AutoencoderKLTest, MatchesReferenceWithOldConvShapedAttentionNames) {
  TensorMap old = testing::LoadGolden("vae_weights_old.safetensors");
  ASSERT_TRUE(old.count("encoder.mid_block.attentions.0.query.weight"));
  EXPECT_EQ(old.at("encoder.mid_block.attentions.0.proj_attn.weight").dim(), 4);
  AutoencoderKL vae = LoadedVae("vae_weights_old.safetensors");
  ExpectMatchesGolden(vae);
}

TEST(AutoencoderKLTest, LoadListsMissingExtraAndMisshapedNames) {
  TensorMap weights = testing::LoadGolden("vae_weights.safetensors");
  ASSERT_EQ(weights.erase("decoder.up_blocks.2.resnets.0.conv_shortcut.weight"), 1u);
  weights["encoder.mid_block.attentions.0.bogus.weight"] = torch::zeros({16, 16});
  weights["quant_conv.bias"] = torch::zeros({3});
  AutoencoderKL vae(GoldenConfig());
  absl::Status status = LoadVaeWeights(vae, weights, "bad.safetensors");
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("bad.safetensors"));
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("missing 1 [decoder.up_blocks.2.resnets.0.conv_shortcut.weight]"));
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("encoder.mid_block.attentions.0.bogus.weight"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("quant_conv.bias (file [3], model [8])"));
}

TEST(AutoencoderKLTest, PosteriorSampleUsesGeneratorNoise) {
  AutoencoderKL vae = LoadedVae("vae_weights.safetensors");
  torch::NoGradGuard no_grad;
  TensorMap io = testing::LoadGolden("vae_io.safetensors");
  VaePosterior posterior = vae->Encode(io.at("x"));
  at::Generator gen = at::detail::createCPUGenerator(/*seed_in=*/7);
  torch::Tensor sample = posterior.Sample(gen);
  at::Generator same = at::detail::createCPUGenerator(/*seed_in=*/7);
  torch::Tensor eps =
      torch::randn(posterior.mean.sizes(), same, torch::TensorOptions().dtype(torch::kFloat32));
  EXPECT_LT(MaxAbsDiff(sample, posterior.mean + torch::exp(0.5 * posterior.logvar) * eps), 1e-6);
  EXPECT_GT(MaxAbsDiff(sample, posterior.mean), 1e-3);
}

TEST(AutoencoderKLTest, LogvarIsClampedLikeDiffusers) {
  AutoencoderKL vae(GoldenConfig());
  torch::NoGradGuard no_grad;
  // A huge bias on the logvar half of quant_conv pushes logvar past the upper clamp.
  TensorMap state = StateDict(*vae);
  state.at("quant_conv.bias").slice(0, 4, 8).fill_(1e4);
  state.at("quant_conv.bias").slice(0, 0, 4).fill_(0);
  VaePosterior posterior = vae->Encode(torch::zeros({1, 3, 16, 16}));
  EXPECT_EQ(posterior.logvar.max().item<double>(), 20.0);
  state.at("quant_conv.bias").slice(0, 4, 8).fill_(-1e4);
  posterior = vae->Encode(torch::zeros({1, 3, 16, 16}));
  EXPECT_EQ(posterior.logvar.min().item<double>(), -30.0);
}

TEST(AutoencoderKLTest, KlDivergenceIsZeroForStandardNormal) {
  torch::Tensor mean = torch::zeros({3, 4, 2, 2});
  torch::Tensor logvar = torch::zeros({3, 4, 2, 2});
  EXPECT_LT(KlDivergence(mean, logvar).abs().max().item<double>(), 1e-7);
  mean[1].fill_(1.0);  // 16 elements each contribute 0.5·1²
  torch::Tensor kl = KlDivergence(mean, logvar);
  EXPECT_NEAR(kl[1].item<double>(), 8.0, 1e-6);
  EXPECT_NEAR(kl[0].item<double>(), 0.0, 1e-7);
}

// LDM's weighting: per sample Σ_pixels err + w · Σ_latents KL, over the pixels per sample. The
// stage used to add w · KL-sum to a per-pixel *mean* error, 12 (here) to 12,288 (3×64×64) times the
// KL's weight in the SD VAE's objective.
TEST(AutoencoderKLTest, TrainingLossWeightsTheKlAsLatentDiffusionDoes) {
  torch::Tensor x = torch::zeros({2, 3, 2, 2});  // 12 pixels per sample
  torch::Tensor rec = torch::zeros({2, 3, 2, 2});
  rec[0][1][0][0] = 2.0;   // sample 0: squared error 4, absolute error 2
  rec[1][2][1][1] = -1.0;  // sample 1: squared error 1, absolute error 1
  torch::Tensor mean = torch::zeros({2, 4, 1, 1});
  torch::Tensor logvar = torch::zeros({2, 4, 1, 1});
  mean[1].fill_(1.0);  // sample 1: KL 4 · 0.5 = 2
  const double w = 0.5;
  // ((4 + w·0) + (1 + w·2)) / 2 samples / 12 pixels
  EXPECT_NEAR(VaeTrainingLoss(rec, x, mean, logvar, w, /*l1=*/false).item<double>(),
              (4.0 + 1.0 + w * 2.0) / 2.0 / 12.0, 1e-7);
  EXPECT_NEAR(VaeTrainingLoss(rec, x, mean, logvar, w, /*l1=*/true).item<double>(),
              (2.0 + 1.0 + w * 2.0) / 2.0 / 12.0, 1e-7);
  // A perfect reconstruction leaves the KL over the pixels, not the KL itself.
  EXPECT_NEAR(VaeTrainingLoss(x, x, mean, logvar, w, /*l1=*/false).item<double>(),
              w * 2.0 / 2.0 / 12.0, 1e-7);
}

TEST(AutoencoderKLTest, DefaultConfigHasDiffusersNamesAndSdParameterCount) {
  AutoencoderKL vae{VaeConfig{}};
  TensorMap state = StateDict(*vae);
  for (const char* name :
       {"encoder.conv_in.weight", "encoder.down_blocks.0.resnets.0.norm1.weight",
        "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
        "encoder.down_blocks.2.downsamplers.0.conv.weight",
        "encoder.mid_block.attentions.0.group_norm.weight",
        "encoder.mid_block.attentions.0.to_out.0.bias", "encoder.conv_norm_out.bias",
        "quant_conv.weight", "post_quant_conv.weight",
        "decoder.up_blocks.0.upsamplers.0.conv.weight",
        "decoder.up_blocks.2.resnets.0.conv_shortcut.weight",
        "decoder.up_blocks.3.resnets.2.conv2.weight", "decoder.conv_out.weight"}) {
    EXPECT_TRUE(state.count(name)) << name;
  }
  EXPECT_FALSE(state.count("encoder.down_blocks.3.downsamplers.0.conv.weight"));
  EXPECT_FALSE(state.count("decoder.up_blocks.3.upsamplers.0.conv.weight"));
  EXPECT_FALSE(state.count("decoder.up_blocks.3.resnets.3.conv1.weight"));
  EXPECT_EQ(state.at("encoder.conv_out.weight").size(0), 8);
  int64_t params = 0;
  for (const auto& p : vae->parameters()) params += p.numel();
  // stabilityai/sd-vae-ft-mse: 83,653,863 parameters (vae_reference.py --count agrees).
  EXPECT_EQ(params, 83653863);
}

TEST(AutoencoderKLTest, MidBlockAttentionIsOptional) {
  VaeConfig config = GoldenConfig();
  config.mid_block_attention = false;
  AutoencoderKL vae(config);
  for (const auto& [name, tensor] : StateDict(*vae))
    EXPECT_FALSE(absl::StrContains(name, "attentions")) << name;
  torch::NoGradGuard no_grad;
  EXPECT_EQ(vae->Decode(vae->Encode(torch::zeros({1, 3, 8, 8})).mean).sizes(),
            (std::vector<int64_t>{1, 3, 8, 8}));
}

CellPaintingVae LoadedCellPaintingVae() {
  CellPaintingVae vae(GoldenConfig());
  vae->eval();
  absl::Status status =
      LoadVaeWeights(vae->autoencoder(), testing::LoadGolden("vae_weights.safetensors"), "golden");
  EXPECT_TRUE(status.ok()) << status;
  return vae;
}

TEST(CellPaintingVaeTest, MatchesReference) {
  CellPaintingVae vae = LoadedCellPaintingVae();
  torch::NoGradGuard no_grad;
  TensorMap io = testing::LoadGolden("vae_io.safetensors");
  torch::Tensor latent = vae->Encode(io.at("cp_x"));
  EXPECT_EQ(latent.sizes(), (std::vector<int64_t>{1, 20, 4, 4}));
  EXPECT_LT(MaxAbsDiff(latent, io.at("cp_latent")), kTol);
  torch::Tensor decoded = vae->Decode(io.at("cp_latent"));
  EXPECT_EQ(decoded.sizes(), (std::vector<int64_t>{1, 5, 16, 16}));
  EXPECT_LT(MaxAbsDiff(decoded, io.at("cp_decoded")), kTol);
}

TEST(CellPaintingVaeTest, ChannelLayoutPutsChannelCInLatentBlockC) {
  CellPaintingVae vae = LoadedCellPaintingVae();
  torch::NoGradGuard no_grad;
  const double sf = vae->config().scaling_factor;
  torch::Tensor x = torch::zeros({2, 5, 16, 16});
  torch::Tensor pattern = torch::rand({2, 16, 16}) * 2 - 1;
  x.select(1, 2).copy_(pattern);
  torch::Tensor latent = vae->Encode(x);  // [2, 20, 4, 4]
  torch::Tensor zero_latent =
      vae->autoencoder()->Encode(torch::zeros({1, 3, 16, 16})).mean * sf;  // [1, 4, 4, 4]
  torch::Tensor pattern_latent =
      vae->autoencoder()->Encode(pattern.unsqueeze(1).expand({2, 3, 16, 16}).contiguous()).mean *
      sf;
  for (int c = 0; c < 5; ++c) {
    torch::Tensor block = latent.slice(1, 4 * c, 4 * c + 4);
    torch::Tensor expected = c == 2 ? pattern_latent : zero_latent.expand({2, 4, 4, 4});
    EXPECT_LT(MaxAbsDiff(block, expected), kTol) << "channel " << c;
  }
  EXPECT_GT(MaxAbsDiff(latent.slice(1, 8, 12), zero_latent.expand({2, 4, 4, 4})), 1e-3);
}

TEST(CellPaintingVaeTest, ChunkingDoesNotChangeResults) {
  CellPaintingVae vae = LoadedCellPaintingVae();
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::rand({2, 5, 16, 16}) * 2 - 1;
  torch::Tensor whole = vae->Encode(x);
  torch::Tensor chunked = vae->Encode(x, std::nullopt, /*max_batch=*/3);
  EXPECT_LT(MaxAbsDiff(whole, chunked),
            1e-5);  // batch size changes the conv algorithm: float32 reassociation
  torch::Tensor decoded = vae->Decode(whole);
  EXPECT_EQ(decoded.sizes(), x.sizes());
  EXPECT_LT(MaxAbsDiff(decoded, vae->Decode(whole, /*max_batch=*/4)), 1e-5);
}

// The server decodes whatever rows finished together; a sample must come out bit-identical
// whatever its batchmates. With the tiny model's 16x16 latents LibTorch's conv gives other last
// bits for a one-image batch, and chunking 2 samples x 5 channels by 9 used to leave the last
// channel of the second sample alone in a call.
TEST(CellPaintingVaeTest, SampleBitsDoNotDependOnBatchmatesOrChunking) {
  absl::StatusOr<ModelConfig> config = ModelConfig::Load("configs/tiny.json");
  ASSERT_TRUE(config.ok()) << config.status();
  torch::manual_seed(3);
  CellPaintingVae vae(config->vae);
  vae->eval();
  c10::InferenceMode guard;
  torch::Tensor x = torch::rand({2, 5, 64, 64}) * 2 - 1;  // [N, C, S, S]
  torch::Tensor both = vae->Encode(x, std::nullopt, /*max_batch=*/9);
  torch::Tensor second = vae->Encode(x.narrow(0, 1, 1), std::nullopt, /*max_batch=*/9);
  EXPECT_TRUE(torch::equal(both.narrow(0, 1, 1), second));
  torch::Tensor decoded = vae->Decode(both, /*max_batch=*/9);
  EXPECT_TRUE(torch::equal(decoded.narrow(0, 1, 1), vae->Decode(second, /*max_batch=*/9)));
  EXPECT_EQ(WholeSampleChunk(9, 5), 5);
  EXPECT_EQ(WholeSampleChunk(3, 5), 5);  // at least one whole sample
  EXPECT_EQ(WholeSampleChunk(16, 5), 15);
  EXPECT_EQ(WholeSampleChunk(0, 5), 0);
}

TEST(CellPaintingVaeTest, GeneratorSamplesDeterministically) {
  CellPaintingVae vae = LoadedCellPaintingVae();
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::rand({1, 5, 16, 16}) * 2 - 1;
  torch::Tensor a = vae->Encode(x, at::detail::createCPUGenerator(11));
  torch::Tensor b = vae->Encode(x, at::detail::createCPUGenerator(11));
  torch::Tensor c = vae->Encode(x, at::detail::createCPUGenerator(12));
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_GT(MaxAbsDiff(a, c), 1e-4);
  EXPECT_GT(MaxAbsDiff(a, vae->Encode(x)), 1e-4);
}

TEST(CellPaintingVaeTest, SavedAutoencoderStateDictHasPlainDiffusersNames) {
  CellPaintingVae vae = LoadedCellPaintingVae();
  const std::string path = ::testing::TempDir() + "/image_vae.safetensors";
  ASSERT_TRUE(SaveSafetensors(path, StateDict(*vae->autoencoder())).ok());
  absl::StatusOr<TensorMap> saved = LoadSafetensors(path);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_TRUE(saved->count("encoder.conv_in.weight"));
  for (const auto& [name, tensor] : *saved)
    EXPECT_FALSE(absl::StartsWith(name, "autoencoder.")) << name;
  CellPaintingVae reloaded(GoldenConfig());
  reloaded->eval();
  ASSERT_TRUE(LoadVaeWeights(reloaded->autoencoder(), *saved, path).ok());
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::rand({1, 5, 16, 16}) * 2 - 1;
  EXPECT_TRUE(torch::equal(vae->Encode(x), reloaded->Encode(x)));
}

TEST(CellPaintingVaeTest, RejectsBadShapes) {
  CellPaintingVae vae(GoldenConfig());
  torch::NoGradGuard no_grad;
  EXPECT_THROW(vae->Decode(torch::zeros({1, 7, 4, 4})), c10::Error);
  EXPECT_THROW(vae->Encode(torch::zeros({1, 5, 10, 10})), c10::Error);
  absl::Status status = TorchCall("decode", [&] { vae->Decode(torch::zeros({1, 7, 4, 4})); });
  EXPECT_THAT(std::string(status.message()), HasSubstr("expected [N, C·4, h, w]"));
}

}  // namespace
}  // namespace cellflux
