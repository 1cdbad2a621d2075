// common/models/attention.h: the hand-written and the fused attention kernel against a float64
// reference computation and against each other, alone and inside the SiT and the VAE. On
// LibTorch 1.13 the fused kernel is ATen's private _scaled_dot_product_attention; on >= 2.0 it is
// at::scaled_dot_product_attention (flash / memory-efficient / cuDNN on CUDA: the device script
// runs the same comparison there, scripts/device/gpu_bench.sh).
#include "common/models/attention.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>

#include "common/models/sit.h"
#include "common/models/vae.h"
#include "gtest/gtest.h"
#include "tests/models/golden_util.h"

namespace cellflux {
namespace {

using testing::MaxAbsDiff;

// softmax(q kᵀ/√d) v in float64, written out with plain ops.
torch::Tensor Reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  torch::Tensor q64 = q.to(torch::kFloat64), k64 = k.to(torch::kFloat64);
  torch::Tensor scores = torch::matmul(q64, k64.transpose(-1, -2)) / std::sqrt(q.size(-1));
  torch::Tensor e = (scores - std::get<0>(scores.max(-1, /*keepdim=*/true))).exp();
  return torch::matmul(e / e.sum(-1, /*keepdim=*/true), v.to(torch::kFloat64));
}

TEST(AttentionTest, BothKernelsMatchTheReferenceInFloat32) {
  torch::manual_seed(0);
  // [B, H, L, d] with L not a multiple of anything, and a non-contiguous (transposed) layout.
  torch::Tensor q = torch::randn({2, 3, 17, 8}), k = torch::randn({2, 3, 17, 8});
  torch::Tensor v = torch::randn({2, 17, 3, 8}).transpose(1, 2);
  torch::Tensor ref = Reference(q, k, v);
  for (AttentionKernel kernel :
       {AttentionKernel::kMath, AttentionKernel::kFused, AttentionKernel::kDefault}) {
    torch::Tensor out = ScaledDotProductAttention(q, k, v, kernel);
    EXPECT_EQ(out.scalar_type(), torch::kFloat32);
    EXPECT_LT(MaxAbsDiff(out, ref), 1e-6) << AttentionKernelName(kernel);
  }
  EXPECT_LT(MaxAbsDiff(ScaledDotProductAttention(q, k, v, AttentionKernel::kMath),
                       ScaledDotProductAttention(q, k, v, AttentionKernel::kFused)),
            1e-6);
}

TEST(AttentionTest, BothKernelsRunInBfloat16) {
  torch::manual_seed(1);
  torch::Tensor q = torch::randn({2, 2, 33, 16}), k = torch::randn({2, 2, 33, 16});
  torch::Tensor v = torch::randn({2, 2, 33, 16});
  torch::Tensor ref = Reference(q, k, v);
  for (AttentionKernel kernel : {AttentionKernel::kMath, AttentionKernel::kFused}) {
    torch::Tensor out = ScaledDotProductAttention(q.to(torch::kBFloat16), k.to(torch::kBFloat16),
                                                  v.to(torch::kBFloat16), kernel);
    EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
    // bfloat16 keeps 8 significant bits: ~4e-3 relative per rounding, outputs of size ~1.
    EXPECT_LT(MaxAbsDiff(out, ref), 3e-2) << AttentionKernelName(kernel);
  }
}

TEST(AttentionTest, DefaultIsFusedFromLibTorch2) {
  EXPECT_EQ(FusedAttentionIsDefault(), TORCH_VERSION_MAJOR >= 2);
}

TEST(AttentionTest, ParseAndNames) {
  for (AttentionKernel k :
       {AttentionKernel::kDefault, AttentionKernel::kMath, AttentionKernel::kFused}) {
    auto parsed = ParseAttentionKernel(AttentionKernelName(k));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, k);
  }
  auto bad = ParseAttentionKernel("flash");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'flash'"), std::string::npos) << bad.status();
}

TEST(AttentionTest, BadShapesThrow) {
  torch::Tensor x = torch::randn({2, 5, 8});
  EXPECT_THROW(ScaledDotProductAttention(x, x, x, AttentionKernel::kMath), c10::Error);
}

SiTConfig SmallSiT() {
  SiTConfig c;
  c.input_size = 8;
  c.patch_size = 2;
  c.in_channels = 4;
  c.hidden_size = 32;
  c.depth = 2;
  c.num_heads = 4;
  c.num_classes = 5;
  c.gene_latent_dim = 6;
  c.gene_tokens = 2;
  return c;
}

// Reference init zeroes adaLN and the heads (every block is the identity): give every parameter
// some weight so attention actually shapes the output.
void Randomise(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters()) p.normal_(0.0, 0.1);
}

TEST(AttentionTest, SiTOutputsAgreeAcrossKernels) {
  torch::manual_seed(2);
  SiT sit(SmallSiT());
  Randomise(*sit);
  sit->eval();
  EXPECT_EQ(SetAttentionKernel(*sit, AttentionKernel::kMath), 2);  // one per block
  torch::Tensor x = torch::randn({3, 4, 8, 8}), t = torch::rand({3});
  torch::Tensor y = torch::tensor({0, 3, 5}, torch::kInt64), g = torch::randn({3, 6});
  c10::InferenceMode guard;
  SiTOutput math = sit->forward(x, t, y, g);
  SetAttentionKernel(*sit, AttentionKernel::kFused);
  SiTOutput fused = sit->forward(x, t, y, g);
  EXPECT_GT(math.image.abs().max().item<double>(), 1e-2);  // not a trivially zero output
  EXPECT_LT(MaxAbsDiff(math.image, fused.image), 1e-5);
  EXPECT_LT(MaxAbsDiff(math.gene, fused.gene), 1e-5);
}

TEST(AttentionTest, VaeOutputsAgreeAcrossKernels) {
  torch::manual_seed(3);
  VaeConfig c;
  c.block_out_channels = {8, 16};
  c.layers_per_block = 1;
  c.norm_num_groups = 4;
  AutoencoderKL vae(c);
  Randomise(*vae);
  vae->eval();
  EXPECT_EQ(SetAttentionKernel(*vae, AttentionKernel::kMath), 2);  // encoder and decoder mid-block
  torch::Tensor x = torch::rand({2, 3, 16, 16}) * 2 - 1;
  torch::Tensor z = torch::randn({2, 4, 8, 8});
  c10::InferenceMode guard;
  VaePosterior math = vae->Encode(x);
  torch::Tensor math_decoded = vae->Decode(z);
  SetAttentionKernel(*vae, AttentionKernel::kFused);
  VaePosterior fused = vae->Encode(x);
  EXPECT_LT(MaxAbsDiff(math.mean, fused.mean), 1e-5);
  EXPECT_LT(MaxAbsDiff(math.logvar, fused.logvar), 1e-5);
  EXPECT_LT(MaxAbsDiff(math_decoded, vae->Decode(z)), 1e-5);
}

}  // namespace
}  // namespace cellflux
