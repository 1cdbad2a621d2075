#include "common/flow/ema.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "gtest/gtest.h"

namespace cellflux {
namespace {

struct TinyImpl : torch::nn::Module {
  TinyImpl() {
    fc1 = register_module("fc1", torch::nn::Linear(3, 4));
    fc2 = register_module("fc2", torch::nn::Linear(4, 2));
    register_buffer("fixed", torch::ones({2}));
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Tiny);

// Sets every parameter to `value` (a stand-in for an optimizer step).
void Fill(Tiny& m, float value) {
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.fill_(value);
}

TEST(EmaTest, StartsAsCopyAndTracksNames) {
  torch::manual_seed(0);
  Tiny m;
  Ema ema(*m, 0.9);
  TensorMap s = ema.state();
  ASSERT_EQ(s.size(), 4u);  // fc1/fc2 weight+bias; buffers are not tracked
  EXPECT_TRUE(torch::equal(s.at("fc1.weight"), m->fc1->weight));
  EXPECT_FALSE(s.at("fc1.weight").requires_grad());
  // A copy, not an alias.
  Fill(m, 5.0f);
  EXPECT_FALSE(torch::equal(ema.state().at("fc1.weight"), m->fc1->weight));
}

TEST(EmaTest, UpdatesMatchClosedForm) {
  torch::manual_seed(1);
  Tiny m;
  const double d = 0.9;
  torch::Tensor w0 = m->fc1->weight.detach().clone();
  Ema ema(*m, d);
  // k updates with parameters p_j = j: s_k = d^k·s_0 + Σ_j (1 − d)·d^(k−j)·p_j.
  const int k = 5;
  double sum = 0;
  for (int j = 1; j <= k; ++j) {
    Fill(m, static_cast<float>(j));
    ema.Update(*m);
    sum += (1 - d) * std::pow(d, k - j) * j;
  }
  EXPECT_EQ(ema.num_updates(), k);
  torch::Tensor expected = std::pow(d, k) * w0 + sum;
  EXPECT_TRUE(torch::allclose(ema.state().at("fc1.weight"), expected, 1e-5, 1e-6));
  // Constant parameters: s_k = d^k·s_0 + (1 − d^k)·p.
  torch::Tensor b0 = ema.state().at("fc2.bias").clone();
  Fill(m, -2.0f);
  for (int j = 0; j < 3; ++j) ema.Update(*m);
  torch::Tensor expected_b = std::pow(d, 3) * b0 + (1 - std::pow(d, 3)) * -2.0;
  EXPECT_TRUE(torch::allclose(ema.state().at("fc2.bias"), expected_b, 1e-5, 1e-6));
}

TEST(EmaTest, UpdateDoesNotTouchGradOrModel) {
  Tiny m;
  Ema ema(*m, 0.5);
  torch::Tensor before = m->fc1->weight.detach().clone();
  torch::Tensor loss = m->fc2->forward(m->fc1->forward(torch::ones({1, 3}))).sum();
  loss.backward();
  ema.Update(*m);
  EXPECT_TRUE(torch::equal(m->fc1->weight, before));
  EXPECT_FALSE(ema.state().at("fc1.weight").requires_grad());
}

TEST(EmaTest, CopyToWritesShadowsIntoModule) {
  torch::manual_seed(2);
  Tiny m;
  Ema ema(*m, 0.5);
  Fill(m, 1.0f);
  ema.Update(*m);
  Tiny target;
  {
    torch::NoGradGuard no_grad;
    target->named_buffers()["fixed"].fill_(7.0f);
  }
  ema.CopyTo(*target);
  for (const auto& [name, shadow] : ema.state()) {
    EXPECT_TRUE(torch::equal(target->named_parameters()[name], shadow)) << name;
  }
  EXPECT_EQ(target->named_buffers()["fixed"][0].item<float>(), 7.0f);  // buffers untouched
  EXPECT_TRUE(target->fc1->weight.requires_grad());
}

TEST(EmaTest, StateRoundTripsThroughSafetensors) {
  torch::manual_seed(3);
  Tiny m;
  Ema ema(*m, 0.99);
  Fill(m, 3.0f);
  ema.Update(*m);
  const std::string path =
      (std::filesystem::temp_directory_path() / "cellflux_ema_test.safetensors").string();
  ASSERT_TRUE(SaveSafetensors(path, ema.state()).ok());
  auto loaded = LoadSafetensors(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  std::filesystem::remove(path);

  Tiny other;
  Ema resumed(*other, 0.99);
  ASSERT_TRUE(resumed.LoadState(*loaded).ok());
  for (const auto& [name, shadow] : ema.state()) {
    EXPECT_TRUE(torch::equal(resumed.state().at(name), shadow)) << name;
  }
  // Further updates continue identically.
  ema.Update(*m);
  resumed.Update(*m);
  EXPECT_TRUE(torch::equal(resumed.state().at("fc1.weight"), ema.state().at("fc1.weight")));
}

TEST(EmaTest, LoadStateRejectsMismatchWithNames) {
  Tiny m;
  Ema ema(*m, 0.9);
  TensorMap bad = ema.state();
  bad.erase("fc2.bias");
  bad["fc1.weight"] = torch::zeros({5, 5});
  bad["extra.weight"] = torch::zeros({1});
  torch::Tensor before = ema.state().at("fc1.weight").clone();
  absl::Status s = ema.LoadState(bad);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(s.message());
  EXPECT_NE(msg.find("fc2.bias"), std::string::npos) << msg;
  EXPECT_NE(msg.find("extra.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fc1.weight (expected [4, 3], got [5, 5])"), std::string::npos) << msg;
  EXPECT_TRUE(torch::equal(ema.state().at("fc1.weight"), before));
}

TEST(EmaTest, UpdateWithDifferentModuleThrows) {
  Tiny m;
  Ema ema(*m, 0.9);
  torch::nn::Linear other(3, 4);
  EXPECT_THROW(ema.Update(*other), c10::Error);
}

}  // namespace
}  // namespace cellflux
